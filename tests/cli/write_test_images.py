# A small ImageFolder for the end-to-end scripts (gpu_train.sh, gpu_train_mpirun.sh, train_data.sh): random
# 40x40 PNGs of four classes whose brightness sets the class, 64 train and 32 val images, so no data set needs
# to be installed. Standard library only (the PNG is written here: zlib-compressed RGB rows), so any python3
# runs it.
#   python3 write_test_images.py ROOT
import os
import random
import struct
import sys
import zlib

SIZE = 40


def png(width, height, rgb):
    """PNG bytes of 8-bit RGB pixels `rgb` (height rows of width * 3 bytes), filter 0 on every row."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + rgb[y * width * 3:(y + 1) * width * 3] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, colour type 2 (RGB)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


root = sys.argv[1]
rng = random.Random(0)
for split, count in (("train", 64), ("val", 32)):
    for c in range(4):
        os.makedirs(f"{root}/{split}/class{c}", exist_ok=True)
        for i in range(count // 4):
            # the class sets the brightness (60 per class), with noise of std 30
            pixels = bytes(min(255, max(0, int(60 * c + rng.gauss(0, 30)))) for _ in range(SIZE * SIZE * 3))
            with open(f"{root}/{split}/class{c}/{i}.png", "wb") as f:
                f.write(png(SIZE, SIZE, pixels))
