#!/usr/bin/env python3
"""The peer of bench/loader.cpp: torchvision's data path for MoCo v2 on the same ImageFolder, timed the same
way (two epochs, batch 32, two views per image, with 1 worker and with one per core), after one untimed epoch
that starts the worker processes.

The transform is the MoCo v2 augmentation as SPEC section 3 states it and the authors' main_moco.py builds it:
RandomResizedCrop(224, scale=(0.2, 1)), ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8, RandomGrayscale(0.2),
a PIL Gaussian blur with sigma in [0.1, 2] with p=0.5, RandomHorizontalFlip, ToTensor, Normalize, applied twice
per image (query and key). Images are read by torchvision's default loader (PIL, convert("RGB")).

    python3 tools/torchvision_loader_peer.py FOLDER
"""
import os
import random
import sys
import time

import torch
from PIL import ImageFilter
from torchvision import datasets, transforms


class PilGaussianBlur:
    """Blur with a standard deviation drawn from [lo, hi] (PIL's radius is the standard deviation)."""

    def __init__(self, lo=0.1, hi=2.0):
        self.lo, self.hi = lo, hi

    def __call__(self, img):
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.lo, self.hi)))


class TwoViews:
    def __init__(self, t):
        self.t = t

    def __call__(self, x):
        return [self.t(x), self.t(x)]


def rate(folder, workers, epochs=2, batch=32):
    aug = transforms.Compose([
        transforms.RandomResizedCrop(224, scale=(0.2, 1.0)),
        transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        transforms.RandomGrayscale(p=0.2),
        transforms.RandomApply([PilGaussianBlur()], p=0.5),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    data = datasets.ImageFolder(folder, TwoViews(aug))
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=True, prefetch_factor=2)
    for _ in loader:  # one untimed epoch: starts the worker processes, warms caches
        pass
    images = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for views, _labels in loader:
            assert len(views) == 2 and tuple(views[0].shape) == (batch, 3, 224, 224)
            images += batch
    return images / (time.perf_counter() - start)


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    torch.set_num_threads(1)
    cores = os.cpu_count() or 1
    print(f"torchvision loader: {sys.argv[1]}, MoCo v2 views at 224 px, batch 32, torch {torch.__version__}")
    for workers in sorted({1, cores}):
        ips = rate(sys.argv[1], workers)
        print(f"workers {workers:2d}: {ips:7.1f} images/s  ({ips / workers:6.1f} per worker; "
              f"{1000.0 * workers / ips:.2f} ms per image per worker)")


if __name__ == "__main__":
    main()
