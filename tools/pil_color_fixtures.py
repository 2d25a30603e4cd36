#!/usr/bin/env python3
"""Writes the colour fixtures: what torchvision's PIL path makes of 64 x 64 pixels for each colour op of the
recipes. tests/test_augment.cpp applies the engine's byte ops (src/data/augment_color.cpp) to the same pixels
and must give the same bytes.

The ops are written here as torchvision's functional_pil writes them, on Pillow:
- adjust_brightness, adjust_contrast, adjust_saturation: ImageEnhance.Brightness / Contrast / Color(img)
  .enhance(factor);
- adjust_hue: the hue band of convert("HSV") plus the factor times 255 as a byte (truncated, modulo 256), then
  convert back to RGB;
- rgb_to_grayscale with 3 output channels: convert("L"), the grey level in all three channels.

    python3 tools/pil_color_fixtures.py [--out tests/fixtures/pil_color]

Files: pixels.rgb, (64, 64, 3) bytes; cases.txt, one line per case: name op factor (factor as float32, the
precision the engine draws it in); <name>.rgb, the result's bytes.
"""
import argparse
import os

import numpy as np
from PIL import Image, ImageEnhance

from pil_decode_fixtures import write_cases, write_rgb

FACTORS = {
    "brightness": [0.0, 0.6, 0.93, 1.0, 1.37],
    "contrast": [0.0, 0.6, 1.0, 1.4],
    "saturation": [0.0, 0.6, 1.4, 2.0],
    "hue": [-0.5, -0.33, -0.1, -0.004, 0.0, 0.004, 0.1, 0.25, 0.5],
    "gray": [0.0],
}


def pixels(seed):
    """Random colours, then rows of greys, two channels tied, one channel at the extremes, and near-greys."""
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 256, size=(64, 64, 3), dtype=np.int64)
    px[0, :, :] = np.arange(64)[:, None] * 4 + np.array([0, 0, 0])  # greys
    px[1, :, 1] = px[1, :, 0]  # r == g
    px[2, :, 2] = px[2, :, 1]  # g == b
    px[3, :, 0] = px[3, :, 2]  # r == b
    px[4, :, :] = rng.choice([0, 255], size=(64, 3))  # the cube's corners
    px[5, :, :] = px[5, :, :1] + rng.integers(0, 2, size=(64, 3))  # a grey level apart by at most 1
    px[5] = np.clip(px[5], 0, 255)
    return Image.fromarray(px.astype(np.uint8), "RGB")


def apply(img, op, factor):
    if op == "brightness":
        return ImageEnhance.Brightness(img).enhance(factor)
    if op == "contrast":
        return ImageEnhance.Contrast(img).enhance(factor)
    if op == "saturation":
        return ImageEnhance.Color(img).enhance(factor)
    if op == "hue":
        h, s, v = img.convert("HSV").split()
        np_h = np.array(h, dtype=np.uint8)
        np_h += np.int32(factor * 255).astype(np.uint8)  # wraps around, as the byte addition there does
        return Image.merge("HSV", (Image.fromarray(np_h, "L"), s, v)).convert("RGB")
    grey = np.array(img.convert("L"))
    return Image.fromarray(np.dstack([grey, grey, grey]), "RGB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/pil_color")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    img = pixels(5)
    write_rgb(args.out, "pixels", img)
    lines = []
    for op, factors in FACTORS.items():
        for factor in factors:
            factor = float(np.float32(factor))  # the engine draws float32 factors
            name = op if op == "gray" else f"{op}_{factor:+.3f}".replace("+", "p").replace("-", "m").replace(".", "_")
            write_rgb(args.out, name, apply(img, op, factor))
            lines.append(f"{name} {op} {factor!r}")
    write_cases(args.out, lines)
    print(f"{len(lines)} cases; Pillow {Image.__version__}")


if __name__ == "__main__":
    main()
