# A small ImageFolder for the GPU end-to-end scripts (gpu_train.sh, gpu_train_mpirun.sh): random 40x40 PNGs
# of four classes whose brightness sets the class, 64 train and 32 val images, so no data set needs to be
# installed on the GPU machine.
#   python3 write_test_images.py ROOT
import os
import sys

import numpy as np
from PIL import Image

root = sys.argv[1]
rng = np.random.default_rng(0)
for split, count in (("train", 64), ("val", 32)):
    for c in range(4):
        os.makedirs(f"{root}/{split}/class{c}", exist_ok=True)
        for i in range(count // 4):
            base = np.zeros((40, 40, 3)) + 60 * c  # the class sets the brightness
            img = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(f"{root}/{split}/class{c}/{i}.png")
