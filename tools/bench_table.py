#!/usr/bin/env python3
"""The ratio table of `moco bench --jsonl` and `tools/torch_twin.py bench --jsonl` records: one markdown row
per configuration moco timed, beside each PyTorch mode timed at the same configuration (device, arch, width,
image size, batch, K, dim, head), with img/s and peak memory and their ratios.

    python3 tools/bench_table.py steps.jsonl [more.jsonl ...]

Records of a configuration timed more than once: the last one counts (a file collects several calls).
Memory: moco's total_mib (its categories' sum) against PyTorch's peak_allocated_mib, where both exist."""
import argparse
import sys

import jsonl  # tools/jsonl.py

KEY = ("device", "arch", "width", "image_size", "batch", "k", "dim", "head")


def read(paths):
    ours, peers = {}, {}
    for path in paths:
        for n, r in jsonl.records(path):
            missing = [k for k in KEY + ("bench", "img_per_s") if k not in r]
            if missing:
                sys.exit(f"{path}:{n}: no {', '.join(missing)}: not a bench record")
            key = tuple(r[k] for k in KEY)
            if r["bench"] == "moco_step":
                ours[key] = r
            elif r["bench"] == "torch_step":
                peers.setdefault(key, {})[r.get("mode", "?")] = r
    return ours, peers


def rows(ours, peers):
    out = ["| config | moco img/s | peer | peer img/s | speed ratio | moco MiB | peer MiB | memory ratio |",
           "|---|---|---|---|---|---|---|---|"]
    for key, r in ours.items():
        config = f"{r['arch']} w{r['width']} {r['image_size']}px b{r['batch']} K{r['k']} {r['head']} ({r['device']})"
        mine_mib = r.get("total_mib")
        for mode, p in sorted(peers.get(key, {"-": None}).items()):
            if p is None:
                out.append(f"| {config} | {r['img_per_s']:.1f} | none | | | "
                           f"{'' if mine_mib is None else f'{mine_mib:.1f}'} | | |")
                continue
            peer_mib = p.get("peak_allocated_mib")
            mem = (f"{mine_mib:.1f} | {peer_mib:.1f} | {mine_mib / peer_mib:.2f}x"
                   if mine_mib is not None and peer_mib else
                   f"{'' if mine_mib is None else f'{mine_mib:.1f}'} | "
                   f"{'' if peer_mib is None else f'{peer_mib:.1f}'} | ")
            out.append(f"| {config} | {r['img_per_s']:.1f} | {mode} | {p['img_per_s']:.1f} | "
                       f"{r['img_per_s'] / p['img_per_s']:.2f}x | {mem} |")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("jsonl", nargs="+", help="files of bench records")
    a = ap.parse_args()
    ours, peers = read(a.jsonl)
    if not ours:
        sys.exit("no moco_step records: run `moco bench ... --jsonl FILE` first")
    print("\n".join(rows(ours, peers)))


if __name__ == "__main__":
    main()
