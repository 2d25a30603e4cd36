#!/usr/bin/env python3
"""Writes the decode fixtures of the formats other than JPEG that torchvision's ImageFolder takes: binary PGM
and PPM; WebP lossy and lossless, with and without alpha (and an animated WebP, which is refused); TIFF in
Pillow's compressions and modes, and two layouts Pillow reads but does not write, written here; and PNG's
variants (16-bit grey, palette, bilevel, alpha) and BMP's. Each
file is saved by Pillow beside the RGB pixels torchvision's loader gets from it, PIL.Image.open(f).convert("RGB"),
as raw (H, W, 3) bytes. tests/test_decode_formats.cpp decodes each file and must match the .rgb exactly. Sizes
are odd, so lossy WebP's 2x2 chroma blocks and its upsampling meet the edges.

    python3 tools/pil_format_fixtures.py [--out tests/fixtures/pil_formats]
"""
import argparse
import os
import struct
import zlib

import numpy as np
from PIL import Image, features

from pil_decode_fixtures import picture, save_beside_rgb


def with_alpha(rgb, seed):
    """RGBA: `rgb` under an alpha ramp with a fully transparent corner, whose colours lossless WebP may rewrite
    (Pillow saves with exact=False) but both decoders then read the same stored values."""
    w, h = rgb.size
    y, x = np.mgrid[0:h, 0:w]
    alpha = np.clip(255 * x / w + 40 * np.sin(0.5 * y + seed), 0, 255).astype(np.uint8)
    alpha[: h // 3, : w // 3] = 0
    return Image.merge("RGBA", rgb.split() + (Image.fromarray(alpha, "L"),))


def grey16(rgb):
    """16-bit grey (mode I;16) whose values run from 0 to about 600: below, at and above 255."""
    values = np.asarray(rgb.convert("L"), dtype=np.uint16) * 12 // 5
    return Image.fromarray(values.astype(np.uint16))


def rgb16(rgb):
    """16-bit RGB (H, W, 3): each 8-bit value v as 257 v plus a low byte that differs per channel, so that a
    reader keeping the low byte instead of the high one shows."""
    wide = np.asarray(rgb, dtype=np.int32) * 257 - np.arange(3, dtype=np.int32) * 40
    return np.clip(wide, 0, 65535).astype(np.uint16)


def plain_tiff(path, pixels, photometric, extra=()):
    """An uncompressed little-endian TIFF of 8- or 16-bit samples (H, W, S) (by pixels' dtype), one strip,
    written field by field: the layouts Pillow reads but does not write (MinIsWhite grey, associated alpha,
    16-bit RGB)."""
    h, w, spp = pixels.shape
    bits = 16 if pixels.dtype == np.uint16 else 8
    data = pixels.astype("<u2" if bits == 16 else np.uint8).tobytes()
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, spp, None), (259, 3, 1, 1), (262, 3, 1, photometric),
               (273, 4, 1, None), (277, 3, 1, spp), (278, 4, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    if extra:
        entries.append((338, 3, len(extra), extra[0]))
    ifd_size = 2 + 12 * len(entries) + 4
    bits_at = 8 + ifd_size                                  # the BitsPerSample array, when it holds over 2
    data_at = bits_at + (2 * spp if spp > 2 else 0)
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        if tag == 258:
            value = bits_at if spp > 2 else (bits | (bits << 16 if spp == 2 else 0))
        elif tag == 273:
            value = data_at
        out += struct.pack("<HHII", tag, kind, count, value)
    out += struct.pack("<I", 0)
    if spp > 2:
        out += struct.pack(f"<{spp}H", *([bits] * spp))
    out += data
    with open(path, "wb") as f:
        f.write(out)


def short_palette_png(path, w, h):
    """An indexed PNG whose PLTE holds 3 colours while its pixels use every index 0..255: Pillow shows the
    missing entries black."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes((x * 7 + y * 31) % 256 for x in range(w)) for y in range(h))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)) +
           chunk(b"PLTE", bytes([200, 30, 40, 20, 160, 60, 250, 250, 10])) + chunk(b"IDAT", zlib.compress(rows)) +
           chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


def short_palette_bmp(path, w, h, os2=False):
    """An 8-bit BMP with 5 colours in use (biClrUsed; or an OS/2 header's 5-entry palette) while its pixels
    use every index 0..255."""
    colours = [(30, 20, 10), (60, 50, 40), (0, 200, 100), (255, 255, 0), (9, 99, 199)]
    entry = 3 if os2 else 4
    palette = b"".join(bytes([b, g, r] + ([] if os2 else [0])) for r, g, b in colours)
    stride = (w + 3) // 4 * 4
    pixels = b"".join(bytes((x * 5 + y * 17) % 256 for x in range(w)) + b"\x00" * (stride - w) for y in range(h))
    if os2:
        header = struct.pack("<IHHHH", 12, w, h, 1, 8)
    else:
        header = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 8, 0, len(pixels), 2835, 2835, len(colours), 0)
    offset = 14 + len(header) + len(colours) * entry
    with open(path, "wb") as f:
        f.write(b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + header + palette + pixels)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/pil_formats")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if not features.check("webp"):
        raise SystemExit("this Pillow has no WebP support")
    rgb = picture(37, 23, 5)
    cases = {
        "ppm_p6.ppm": (rgb, "PPM", {}),
        "pgm_p5.pgm": (rgb.convert("L"), "PPM", {}),
        "webp_lossy_q80.webp": (rgb, "WEBP", dict(quality=80)),
        "webp_lossy_alpha_q70.webp": (with_alpha(rgb, 1), "WEBP", dict(quality=70)),
        "webp_lossless.webp": (rgb, "WEBP", dict(lossless=True)),
        "webp_lossless_alpha.webp": (with_alpha(rgb, 2), "WEBP", dict(lossless=True)),
        "webp_lossy_grey_q90.webp": (rgb.convert("L"), "WEBP", dict(quality=90)),
        "tiff_rgb_raw.tif": (rgb, "TIFF", {}),
        "tiff_rgb_lzw.tif": (rgb, "TIFF", dict(compression="tiff_lzw")),
        "tiff_rgb_deflate.tif": (rgb, "TIFF", dict(compression="tiff_adobe_deflate")),
        "tiff_rgb_packbits.tif": (rgb, "TIFF", dict(compression="packbits")),
        "tiff_grey_lzw.tif": (rgb.convert("L"), "TIFF", dict(compression="tiff_lzw")),
        "tiff_grey_alpha.tif": (with_alpha(rgb, 3).convert("LA"), "TIFF", {}),
        "tiff_palette.tif": (rgb.quantize(48), "TIFF", {}),
        "tiff_rgba.tif": (with_alpha(rgb, 4), "TIFF", dict(compression="tiff_lzw")),
        "tiff_cmyk.tif": (rgb.convert("CMYK"), "TIFF", {}),
        "tiff_bilevel_raw.tif": (rgb.convert("1"), "TIFF", {}),
        "tiff_bilevel_group4.tif": (rgb.convert("1"), "TIFF", dict(compression="group4")),
        "tiff_jpeg.tif": (rgb, "TIFF", dict(compression="jpeg")),  # RGB photometric, JPEG inside
        # the Orientation tag, which Pillow 13 applies to TIFF (and to no other format): all seven turns
        **{f"tiff_orientation{k}.tif": (rgb, "TIFF", dict(tiffinfo={274: k}, compression="tiff_lzw"))
           for k in range(2, 9)},
        # PNG's variants (stb_image decodes them): 16-bit grey, which Pillow clips to 255 rather than scales
        "png_grey16.png": (grey16(rgb), "PNG", {}),
        "tiff_grey16.tif": (grey16(rgb), "TIFF", dict(compression="tiff_lzw")),
        "png_palette.png": (rgb.quantize(40), "PNG", {}),
        "png_bilevel.png": (rgb.convert("1"), "PNG", {}),
        "png_grey_alpha.png": (with_alpha(rgb, 6).convert("LA"), "PNG", {}),
        "png_rgba.png": (with_alpha(rgb, 7), "PNG", {}),
        # BMP as Pillow writes it: 24-bit, 8-bit grey and palette, 1-bit, 32-bit with alpha
        "bmp_rgb.bmp": (rgb, "BMP", {}),
        "bmp_grey.bmp": (rgb.convert("L"), "BMP", {}),
        "bmp_palette.bmp": (rgb.quantize(30), "BMP", {}),
        "bmp_bilevel.bmp": (rgb.convert("1"), "BMP", {}),
        "bmp_rgba.bmp": (with_alpha(rgb, 8), "BMP", {}),
    }
    for name, (img, fmt, opts) in cases.items():
        path = os.path.join(args.out, name)
        pixels = save_beside_rgb(path, img, fmt, **opts)
        print(f"{name}: {pixels.shape[1]}x{pixels.shape[0]}, {os.path.getsize(path)} bytes")
    # two frames: refused (the decoder takes still images); no .rgb
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    path = os.path.join(args.out, "webp_animated.webp")
    frames[0].save(path, "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    print(f"webp_animated.webp: 2 frames, {os.path.getsize(path)} bytes")
    # palettes shorter than the indices the pixels use (stb would read past them), written by hand
    for name, write in [("png_short_palette.png", lambda p: short_palette_png(p, 37, 23)),
                        ("bmp_short_palette.bmp", lambda p: short_palette_bmp(p, 37, 23)),
                        ("bmp_os2_short_palette.bmp", lambda p: short_palette_bmp(p, 37, 23, os2=True))]:
        path = os.path.join(args.out, name)
        write(path)
        with Image.open(path) as f:
            np.asarray(f.convert("RGB"), dtype=np.uint8).tofile(os.path.splitext(path)[0] + ".rgb")
        print(f"{name}: written by hand, {os.path.getsize(path)} bytes")
    # layouts Pillow reads but does not write, with what Pillow reads from them
    premultiplied = np.asarray(with_alpha(rgb, 5), dtype=np.uint16)
    premultiplied[..., :3] = premultiplied[..., :3] * premultiplied[..., 3:] // 255
    for name, pixels, photometric, extra in [
            ("tiff_rgba_premultiplied.tif", premultiplied.astype(np.uint8), 2, (1,)),
            ("tiff_grey_min_is_white.tif", np.asarray(rgb.convert("L"))[..., None], 0, ()),
            ("tiff_rgb16.tif", rgb16(rgb), 2, ())]:
        path = os.path.join(args.out, name)
        plain_tiff(path, pixels, photometric, extra)
        with Image.open(path) as f:
            np.asarray(f.convert("RGB"), dtype=np.uint8).tofile(os.path.splitext(path)[0] + ".rgb")
        print(f"{name}: written field by field, {os.path.getsize(path)} bytes")
    print("Pillow", Image.__version__, "libwebp", features.version("webp"), "libtiff", features.version("libtiff"))


if __name__ == "__main__":
    main()
