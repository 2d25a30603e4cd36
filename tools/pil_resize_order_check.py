#!/usr/bin/env python3
"""Checks which pass the installed Pillow runs first when it resizes, against the rule the engine follows
(src/data/augment_crop.cpp, pil_resizes_y_first): Pillow 13 resizes along y first when out_h < in_h and
in_h - out_h > 2 (in_w - out_w); every Pillow up to 12 along x first.

For random shapes it resizes a noise image with Pillow (bilinear, as torchvision's PIL path does) and with
both pass orders written here in numpy (PIL's triangle filter, its fixed point 1 = 2^22, each pass rounded to
a byte), keeps the shapes where the two orders give different bytes, and counts where the rule names the
order Pillow took. It also prints the boundary along out_h for one input size.

    python3 tools/pil_resize_order_check.py [--shapes 1500] [--seed 3]
"""
import argparse
import random

import numpy as np
from PIL import Image

BITS = 22


def taps(n_in, n_out):
    """(n_out, n_in) fixed-point weights of PIL's bilinear filter for one axis (antialiased when shrinking)."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    w = np.zeros((n_out, n_in), dtype=np.int64)
    for k in range(n_out):
        centre = (k + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        f = [max(0.0, 1.0 - abs((j - centre + 0.5) * (1.0 / support))) for j in range(lo, hi)]  # as PIL
        total = sum(f)
        for j, v in zip(range(lo, hi), f):
            v = v / total if total else v
            w[k, j] = int(v * (1 << BITS) - 0.5) if v < 0 else int(v * (1 << BITS) + 0.5)
    return w


def one_pass(img, w, axis):
    """One pass of PIL's: fixed-point sums along `axis` (0: y, 1: x) rounded and clamped to bytes."""
    acc = np.einsum("hwc,oh->owc" if axis == 0 else "hwc,ow->hoc", img.astype(np.int64), w) + (1 << (BITS - 1))
    return np.clip(acc >> BITS, 0, 255)


def resize(img, out_w, out_h, y_first):
    wx, wy = taps(img.shape[1], out_w), taps(img.shape[0], out_h)
    if y_first:
        return one_pass(one_pass(img, wy, 0), wx, 1)
    return one_pass(one_pass(img, wx, 1), wy, 0)


def pillow_order(rng, in_w, in_h, out_w, out_h):
    """'x' or 'y': the order whose bytes equal Pillow's resize; None if both (or neither) do."""
    img = rng.integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(img).resize((out_w, out_h), Image.BILINEAR)).astype(np.int64)
    x_ok = (resize(img, out_w, out_h, False) == pil).all()
    y_ok = (resize(img, out_w, out_h, True) == pil).all()
    return "x" if x_ok and not y_ok else "y" if y_ok and not x_ok else None


def rule_says_y_first(in_w, in_h, out_w, out_h):
    return out_h < in_h and in_h - out_h > 2 * (in_w - out_w)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    shapes, rng = random.Random(args.seed), np.random.default_rng(args.seed)
    seen = {"x": 0, "y": 0}
    wrong = []
    for _ in range(args.shapes):
        in_w, in_h, out_w, out_h = (shapes.randint(2, 400), shapes.randint(2, 400), shapes.randint(2, 260),
                                    shapes.randint(2, 260))
        if in_w == out_w or in_h == out_h:
            continue
        order = pillow_order(rng, in_w, in_h, out_w, out_h)
        if order is None:
            continue
        seen[order] += 1
        if (order == "y") != rule_says_y_first(in_w, in_h, out_w, out_h):
            wrong.append((in_w, in_h, out_w, out_h, order))
    print(f"Pillow {Image.__version__}: {seen['x']} shapes along x first, {seen['y']} along y first "
          f"(of those where the orders differ); the rule is wrong on {len(wrong)}: {wrong[:10]}")
    in_w, in_h = 120, 200
    line = []
    for out_w in range(27, 120, 7):
        last_y = max((h for h in range(2, in_h) if pillow_order(rng, in_w, in_h, out_w, h) == "y"), default=None)
        line.append(f"{out_w}:{last_y}")
    print(f"{in_w}x{in_h} (w x h): the largest out_h Pillow resizes along y first, per out_w: " + " ".join(line))
    print("  (the rule: in_h - out_h > 2 (in_w - out_w), i.e. out_h <= 2 out_w - 41)")


if __name__ == "__main__":
    main()
