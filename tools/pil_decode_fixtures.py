#!/usr/bin/env python3
"""Writes the JPEG decode fixtures: small JPEGs saved by Pillow in the variants a data set holds (4:2:0, 4:2:2
and 4:4:4 chroma, progressive, grey, Adobe CMYK), each beside the RGB pixels torchvision's loader gets from it,
PIL.Image.open(f).convert("RGB"), as raw (H, W, 3) bytes. tests/test_decode_vs_pil.cpp decodes each .jpg and
must match the .rgb exactly. Sizes are odd so partial blocks and edge upsampling are covered.

    python3 tools/pil_decode_fixtures.py [--out tests/fixtures/pil_decode]
"""
import argparse
import os

import numpy as np
from PIL import Image, features


def picture(w, h, seed):
    """Gradients, a hard-edged disc and grain: smooth and sharp content for the IDCT and the upsampler."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([40 + 170 * x / w, 200 - 150 * y / h, 128 + 90 * np.sin(0.4 * x + 0.3 * y)], axis=-1)
    img[(x - 0.6 * w) ** 2 + (y - 0.4 * h) ** 2 < 0.08 * w * h] = (230, 40, 70)
    img += rng.integers(-20, 21, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def write_rgb(folder, name, pil):
    """An RGB image's bytes, (H, W, 3), as <folder>/<name>.rgb."""
    np.asarray(pil, dtype=np.uint8).tofile(os.path.join(folder, name + ".rgb"))


def save_beside_rgb(path, img, fmt, **opts):
    """Saves `img` with Pillow as `fmt`, then writes what torchvision's loader gets back from that file,
    PIL.Image.open(path).convert("RGB"), beside it as raw (H, W, 3) bytes with the extension .rgb; returns them."""
    img.save(path, fmt, **opts)
    with Image.open(path) as f:
        pixels = np.asarray(f.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    pixels.tofile(os.path.splitext(path)[0] + ".rgb")
    return pixels


def write_cases(folder, lines):
    """<folder>/cases.txt, one line per case."""
    with open(os.path.join(folder, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def picture_fixtures(default_out):
    """The start of the fixtures made from the 83x61 picture on Pillow 13: parses --out (default_out), refuses
    an older Pillow (they hold Pillow 13's resize), writes <out>/picture.rgb; returns (out, picture)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=default_out)
    out = ap.parse_args().out
    if int(Image.__version__.split(".")[0]) < 13:
        raise SystemExit(f"Pillow {Image.__version__}: the fixtures hold Pillow 13's resize; pip install 'pillow>=13'")
    os.makedirs(out, exist_ok=True)
    pil = picture(83, 61, 4)
    write_rgb(out, "picture", pil)
    return out, pil


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/pil_decode")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if not features.check_feature("libjpeg_turbo"):
        raise SystemExit("this Pillow is not built on libjpeg-turbo; the fixtures would not be Pillow's usual pixels")
    rgb = picture(41, 29, 1)
    variants = {
        "rgb420_q90": (rgb, dict(quality=90, subsampling=2)),
        "rgb422_q75": (rgb, dict(quality=75, subsampling=1)),
        "rgb444_q95": (rgb, dict(quality=95, subsampling=0)),
        "rgb420_progressive": (picture(67, 45, 2), dict(quality=85, subsampling=2, progressive=True)),
        "grey_q90": (rgb.convert("L"), dict(quality=90)),
        "cmyk_adobe_q90": (rgb.convert("CMYK"), dict(quality=90)),
        # convert("CMYK") leaves K at 0; this one has real black ink, for the K term of cmyk2rgb
        "cmyk_black_adobe_q90": (Image.merge("CMYK", rgb.split() + (picture(41, 29, 3).convert("L"),)),
                                 dict(quality=90)),
    }
    for name, (img, opts) in variants.items():
        path = os.path.join(args.out, name + ".jpg")
        pixels = save_beside_rgb(path, img, "JPEG", **opts)
        print(f"{name}: {pixels.shape[1]}x{pixels.shape[0]}, {os.path.getsize(path)} bytes")
    print("Pillow", Image.__version__, "libjpeg-turbo", features.version("libjpeg_turbo"))


if __name__ == "__main__":
    main()
