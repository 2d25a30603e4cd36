#!/usr/bin/env python3
"""Writes the resize fixtures: one small RGB picture and, for each case, the crop torchvision's PIL path makes
of it (F.resized_crop on a PIL image: crop the box, then resize it with PIL's bilinear filter, which is
antialiased when it shrinks). PIL resamples in two passes, each rounded to 8 bits. Every Pillow up to 12 runs
the horizontal pass first; Pillow 13 runs the vertical one first when the height shrinks by more than twice
as many pixels as the width. So each case is written twice: as Pillow 13's resize gives it, and as the two
passes in the horizontal-first order give it (two one-axis resizes, which every Pillow computes alike).
tests/test_augment.cpp resizes the same boxes with resize_bilinear in both orders (PillowResize) and must
give both exactly. Three cases go along y first in Pillow 13, and one sits just on the other side of that
boundary.

    python3 tools/pil_resize_fixtures.py [--out tests/fixtures/pil_resize]

Files: picture.rgb, (H, W, 3) bytes; cases.txt, one line per case: name top left h w out_h out_w (the box in
the picture, then the output size); <name>.rgb and <name>.hfirst.rgb, (out_h, out_w, 3) bytes.
"""
from PIL import Image

from pil_decode_fixtures import picture_fixtures, write_cases, write_rgb  # the picture: gradients, a disc, grain

# (top, left, h, w) of the box, then the output's (h, w): shrinking by 1.3 to 9 on both axes, shrinking one
# axis while growing the other, the whole picture, and a same-size copy.
CASES = {
    "shrink_2": ((0, 0, 61, 83), (30, 41)),
    "shrink_box_3": ((7, 5, 43, 65), (14, 21)),
    "shrink_9": ((0, 0, 61, 83), (7, 9)),
    "shrink_1_3": ((3, 11, 50, 67), (38, 51)),
    "shrink_rows_grow_columns": ((2, 3, 31, 37), (9, 50)),
    "grow_rows_shrink_columns": ((0, 0, 61, 83), (75, 20)),
    "same_size": ((4, 10, 51, 63), (51, 63)),
    "tall_rows_shrink_more": ((0, 10, 61, 40), (20, 20)),  # 41 > 2 x 20: along y first in Pillow 13
    "tall_at_the_boundary": ((0, 10, 61, 40), (21, 20)),  # 40 = 2 x 20: along x first
    "tall_shrink_both": ((0, 30, 61, 30), (8, 20)),  # 53 > 2 x 10: along y first
}


def main():
    out, pil = picture_fixtures("tests/fixtures/pil_resize")
    lines = []
    for name, ((top, left, h, w), (oh, ow)) in CASES.items():
        box = pil.crop((left, top, left + w, top + h))
        write_rgb(out, name, box.resize((ow, oh), Image.BILINEAR))
        write_rgb(out, name + ".hfirst", box.resize((ow, h), Image.BILINEAR).resize((ow, oh), Image.BILINEAR))
        lines.append(f"{name} {top} {left} {h} {w} {oh} {ow}")
    write_cases(out, lines)
    print(f"{len(CASES)} cases from an 83x61 picture; Pillow {Image.__version__}")


if __name__ == "__main__":
    main()
