#!/usr/bin/env python3
"""Writes the blur fixtures: what the authors' GaussianBlur (ImageFilter.GaussianBlur(radius=sigma) on the PIL
view) makes of two pictures at several sigmas. tests/test_augment.cpp blurs the same bytes with gaussian_blur
and must give Pillow's bytes (both run six box passes in fixed point and round to 8 bits after each).

    python3 tools/pil_blur_fixtures.py [--out tests/fixtures/pil_blur]

Files: picture.rgb (61, 83, 3), tiny.rgb (3, 5, 3) and thin.rgb (7, 2, 3) bytes, the inputs; cases.txt, one line per case:
name input sigma; <name>.rgb, the blurred input's bytes.
"""
import argparse
import os

from PIL import Image, ImageFilter

from pil_decode_fixtures import picture, write_cases, write_rgb  # picture: gradients, a hard-edged disc, grain

# sigma 0.1 and 2.0 are the ends of the MoCo v2 draw; 1.37 has a box radius with a large fraction; 4.0 is wider
# than the recipe's. The tiny and thin inputs are narrower than the boxes, so the edge repeats across them.
CASES = {
    "picture_0_1": ("picture", 0.1),
    "picture_0_5": ("picture", 0.5),
    "picture_1_0": ("picture", 1.0),
    "picture_1_37": ("picture", 1.37),
    "picture_2_0": ("picture", 2.0),
    "picture_4_0": ("picture", 4.0),
    "tiny_2_0": ("tiny", 2.0),
    "thin_2_0": ("thin", 2.0),
    "thin_4_0": ("thin", 4.0),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/pil_blur")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    pictures = {"picture": picture(83, 61, 4)}
    pictures["tiny"] = pictures["picture"].crop((10, 20, 15, 23))  # (left, top, right, bottom): 5 x 3
    pictures["thin"] = pictures["picture"].crop((40, 30, 42, 37))  # 2 x 7: narrower than a box of radius 1
    for name, pil in pictures.items():
        write_rgb(args.out, name, pil)
    lines = []
    for name, (source, sigma) in CASES.items():
        write_rgb(args.out, name, pictures[source].filter(ImageFilter.GaussianBlur(radius=sigma)))
        lines.append(f"{name} {source} {sigma}")
    write_cases(args.out, lines)
    print(f"{len(CASES)} cases; Pillow {Image.__version__}")


if __name__ == "__main__":
    main()
