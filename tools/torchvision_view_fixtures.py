#!/usr/bin/env python3
"""Writes the whole-view fixtures: what the authors' augmentation makes of one picture, with every random
decision given, through torchvision's own functional ops on PIL images (the ops main_moco.py's transforms
call) and ToTensor + Normalize. tests/test_augment.cpp builds the same decisions as ViewParams, runs
apply_view, and must give the same float32 values, bit for bit.

The stages of each recipe, in order (SPEC section 3):
- v2: RandomResizedCrop, ColorJitter (p 0.8), RandomGrayscale (p 0.2), GaussianBlur (p 0.5, the authors'
  class: ImageFilter.GaussianBlur(radius=sigma)), RandomHorizontalFlip;
- v1: RandomResizedCrop, RandomGrayscale, ColorJitter, RandomHorizontalFlip;
- small: RandomResizedCrop, RandomHorizontalFlip, ColorJitter, RandomGrayscale;
- lincls_train: RandomResizedCrop, RandomHorizontalFlip;
- eval at S <= 64: the whole picture resized to S x S; above: Resize(round(S 256 / 224)) of the shorter side
  and CenterCrop(S), the authors' Resize(256) + CenterCrop(224) at S = 224.
ColorJitter applies its four ops in a drawn order; `order` lists them as torchvision's fn_idx does
(0 brightness, 1 contrast, 2 saturation, 3 hue).

    python3 tools/torchvision_view_fixtures.py [--out tests/fixtures/torchvision_view]   (needs Pillow 13)

Files: picture.rgb, (61, 83, 3) bytes; cases.txt, one line per case: name recipe size top left h w jitter
o0 o1 o2 o3 brightness contrast saturation hue gray blur sigma flip (factors and sigma as float32, the
precision the engine draws them in); <name>.f32, the view, (3, size, size) float32, little-endian.
"""
import os

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as F
from PIL import Image, ImageFilter

from pil_decode_fixtures import picture_fixtures, write_cases

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
STAGES = {
    "v2": ["jitter", "gray", "blur", "flip"],
    "v1": ["gray", "jitter", "flip"],
    "small": ["flip", "jitter", "gray"],
    "lincls_train": ["flip"],
    "eval": [],
}

# name: recipe, size, crop box (top, left, h, w), jitter (order, factors) or None, gray, blur sigma or None, flip
CASES = {
    "v2_every_stage": ("v2", 32, (5, 7, 50, 60), ([2, 0, 3, 1], (1.21, 0.73, 1.33, -0.07)), False, 1.37, True),
    "v2_tall_gray_blur": ("v2", 32, (0, 20, 61, 40), None, True, 0.41, False),  # Pillow 13: along y first
    "v2_jitter_gray": ("v2", 32, (10, 0, 30, 45), ([3, 1, 0, 2], (0.66, 1.38, 0.61, 0.093)), True, None, True),
    "v2_wide_blur": ("v2", 40, (20, 0, 41, 83), ([1, 3, 2, 0], (0.8, 1.1, 0.95, 0.5)), False, 1.95, False),
    "v1_gray_then_jitter": ("v1", 32, (2, 3, 40, 40), ([0, 1, 2, 3], (1.1, 0.9, 1.2, 0.3)), True, None, False),
    "small_flip_jitter": ("small", 32, (0, 0, 61, 83), ([3, 2, 1, 0], (0.7, 1.3, 0.0, -0.4)), False, None, True),
    "lincls_train_flip": ("lincls_train", 32, (11, 13, 20, 25), None, False, None, True),
    "eval_whole_picture": ("eval", 32, (0, 0, 61, 83), None, False, None, False),
    "eval_center_crop_96": ("eval", 96, (0, 0, 61, 83), None, False, None, False),  # Resize(110), CenterCrop(96)
}


def f32(x):
    return float(np.float32(x))


def view(pil, recipe, size, box, jitter, gray, sigma, flip):
    top, left, h, w = box
    if recipe == "eval" and size <= 64:
        img = F.resize(pil, [size, size], interpolation=F.InterpolationMode.BILINEAR)
    elif recipe == "eval":
        img = F.resize(pil, round(size * 256 / 224), interpolation=F.InterpolationMode.BILINEAR)
        img = F.center_crop(img, [size, size])
    else:
        img = F.resized_crop(pil, top, left, h, w, [size, size], interpolation=F.InterpolationMode.BILINEAR)
    for stage in STAGES[recipe]:
        if stage == "jitter" and jitter is not None:
            order, (b, c, s, hue) = jitter
            for op in order:
                if op == 0:
                    img = F.adjust_brightness(img, f32(b))
                elif op == 1:
                    img = F.adjust_contrast(img, f32(c))
                elif op == 2:
                    img = F.adjust_saturation(img, f32(s))
                else:
                    img = F.adjust_hue(img, f32(hue))
        elif stage == "gray" and gray:
            img = F.rgb_to_grayscale(img, num_output_channels=3)
        elif stage == "blur" and sigma is not None:
            img = img.filter(ImageFilter.GaussianBlur(radius=f32(sigma)))
        elif stage == "flip" and flip:
            img = F.hflip(img)
    return F.normalize(F.to_tensor(img), MEAN, STD)


def main():
    out, pil = picture_fixtures("tests/fixtures/torchvision_view")
    lines = []
    for name, (recipe, size, box, jitter, gray, sigma, flip) in CASES.items():
        t = view(pil, recipe, size, box, jitter, gray, sigma, flip)
        assert t.dtype == torch.float32 and tuple(t.shape) == (3, size, size)
        t.numpy().astype("<f4").tofile(os.path.join(out, name + ".f32"))
        order, factors = jitter if jitter is not None else ([0, 1, 2, 3], (1.0, 1.0, 1.0, 0.0))
        fields = [name, recipe, size, *box, int(jitter is not None), *order]
        fields += [f"{f32(x):.9g}" for x in factors]
        fields += [int(gray), int(sigma is not None), f"{f32(sigma or 0.0):.9g}", int(flip)]
        lines.append(" ".join(str(x) for x in fields))
    write_cases(out, lines)
    print(f"{len(CASES)} views of an 83x61 picture; torch {torch.__version__}, torchvision "
          f"{torchvision.__version__}, Pillow {Image.__version__}")


if __name__ == "__main__":
    main()
