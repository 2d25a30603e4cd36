#!/usr/bin/env python3
"""Converts a moco backbone export (safetensors, torchvision names) into the pickle that detectron2 loads
as MODEL.WEIGHTS for its ResNet backbone. Needs numpy only: the safetensors file is read by the small
validating reader below.

    python3 tools/convert_detectron2.py resnet50.safetensors resnet50_d2.pkl

Renaming (detectron2's conventions for torchvision-style ResNets):
    conv1.weight, bn1.*              -> stem.conv1.weight, stem.conv1.norm.*
    layer1..layer4                   -> res2..res5
    bn1, bn2, bn3 inside a block     -> conv1.norm, conv2.norm, conv3.norm
    downsample.0 / downsample.1      -> shortcut / shortcut.norm
The head (fc.*) and the num_batches_tracked counters have no place in detectron2's backbone (its frozen BN
keeps no counter) and are left out. The pickle holds {"model": {name: numpy array}, "__author__": "moco",
"matching_heuristics": True}; the last flag lets detectron2 match the names to its own modules.
"""
import argparse
import json
import math
import os
import pickle
import re
import struct
import sys

import numpy as np

MAX_HEADER = 100_000_000
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
          "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?", "BF16": "<u2"}


def read_safetensors(path):
    """{name: numpy array} from a safetensors file, checked as strictly as the C++ reader (SPEC 7).
    BF16 is widened to float32, since numpy has no bfloat16."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: {len(blob)} bytes, too short for the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER:
        raise ValueError(f"{path}: header length {n} exceeds the limit of {MAX_HEADER}")
    if n > len(blob) - 8:
        raise ValueError(f"{path}: header length {n} runs past the end of the file ({len(blob)} bytes)")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise ValueError(f"{path}: duplicate names {sorted(dup)}")
        return dict(pairs)

    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: bad JSON header: {e}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is a JSON {type(header).__name__}, expected an object")
    header.pop("__metadata__", None)
    data = memoryview(blob)[8 + n:]

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    entries = []  # (begin, end, name, dtype, shape), checked one by one, then in file order
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{path}: tensor {name!r} must be an object with dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}")
        if not isinstance(shape, list) or not all(is_int(d) for d in shape):
            raise ValueError(f"{path}: tensor {name!r} has invalid shape {shape!r}")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(is_int(o) for o in offsets):
            raise ValueError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        nbytes = math.prod(shape) * np.dtype(DTYPES[dtype]).itemsize
        if end - begin != nbytes:
            raise ValueError(f"{path}: tensor {name!r} spans {end - begin} bytes, {dtype} {shape} needs {nbytes}")
        entries.append((begin, end, name, dtype, shape))

    end_of_previous = 0
    out = {}
    for begin, end, name, dtype, shape in sorted(entries):
        if begin != end_of_previous or end > len(data):
            raise ValueError(f"{path}: tensor {name!r} at [{begin}, {end}] does not follow the previous tensor "
                             f"(ends at {end_of_previous}) inside the {len(data)}-byte data section")
        end_of_previous = end
        a = np.frombuffer(data[begin:end], dtype=DTYPES[dtype]).reshape(shape)
        if dtype == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = a.copy()
    if end_of_previous != len(data):
        raise ValueError(f"{path}: {len(data) - end_of_previous} trailing bytes after the last tensor")
    return out


def detectron2_name(name):
    """detectron2's key for a torchvision backbone key, or None when detectron2 has no use for it."""
    if name.startswith("fc.") or name.endswith("num_batches_tracked"):
        return None
    if not name.startswith("layer"):
        name = "stem." + name  # conv1, bn1
    name = re.sub(r"^layer(\d)", lambda m: f"res{int(m.group(1)) + 1}", name)
    name = re.sub(r"\bbn(\d)\b", r"conv\1.norm", name)
    name = name.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
    return name


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", help="backbone .safetensors from moco's export")
    ap.add_argument("output", help="detectron2 .pkl to write")
    args = ap.parse_args()

    try:
        tensors = read_safetensors(args.export)
    except (OSError, ValueError) as e:
        sys.exit(f"convert_detectron2: {e}")
    if "conv1.weight" not in tensors:
        sys.exit(f"convert_detectron2: {args.export} has no conv1.weight; is it a ResNet export?")
    model, dropped = {}, []
    for name, value in tensors.items():
        new = detectron2_name(name)
        if new is None:
            dropped.append(name)
        else:
            model[new] = value
    obj = {"model": model, "__author__": "moco", "matching_heuristics": True}
    tmp = args.output + ".tmp"  # atomic like the C++ writer: never a half-written pickle under the final name
    try:
        with open(tmp, "wb") as f:
            pickle.dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, args.output)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    print(f"{args.output}: {len(model)} tensors for detectron2 "
          f"({sum(v.size for v in model.values()):,} values); left out {len(dropped)} "
          f"({sum(n.endswith('num_batches_tracked') for n in dropped)} num_batches_tracked, "
          f"{sum(n.startswith('fc.') for n in dropped)} head)")


if __name__ == "__main__":
    main()
