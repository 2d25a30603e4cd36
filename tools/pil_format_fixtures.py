#!/usr/bin/env python3
"""Writes the decode fixtures of the formats other than JPEG that torchvision's ImageFolder takes: binary PGM
and PPM, and WebP lossy and lossless, with and without alpha (and an animated WebP, which is refused). Each
file is saved by Pillow beside the RGB pixels torchvision's loader gets from it, PIL.Image.open(f).convert("RGB"),
as raw (H, W, 3) bytes. tests/test_decode_formats.cpp decodes each file and must match the .rgb exactly. Sizes
are odd, so lossy WebP's 2x2 chroma blocks and its upsampling meet the edges.

    python3 tools/pil_format_fixtures.py [--out tests/fixtures/pil_formats]
"""
import argparse
import os

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
    print("Pillow", Image.__version__, "libwebp", features.version("webp"))


if __name__ == "__main__":
    main()
