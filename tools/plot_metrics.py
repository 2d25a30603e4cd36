#!/usr/bin/env python3
"""Plots a run's metrics.jsonl: training loss (and the (K+1)-way Acc@1) per step, and the kNN top-1 per
epoch when the run logged it, into one PNG.

    python3 tools/plot_metrics.py runs/moco/metrics.jsonl [-o curves.png]

Needs matplotlib (pip install matplotlib)."""
import argparse
import sys

import jsonl  # tools/jsonl.py


def read(path):
    records, knn = [], []
    for _, r in jsonl.records(path):
        if "loss" in r:
            records.append(r)
        elif r.get("event") == "knn":
            knn.append(r)
    return records, knn


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics", help="metrics.jsonl written by moco train")
    ap.add_argument("-o", "--out", default=None, help="output PNG (default: next to the metrics file)")
    ap.add_argument("--smooth", type=int, default=20, help="moving-average window over steps")
    a = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_metrics.py needs matplotlib: pip install matplotlib")
    records, knn = read(a.metrics)
    if not records:
        sys.exit(f"{a.metrics} has no step records (lines with a \"loss\")")
    steps = [r["step"] for r in records]
    loss = [r["loss"] for r in records]
    w = max(1, min(a.smooth, len(loss)))
    smooth = [sum(loss[max(0, i - w + 1):i + 1]) / (i + 1 - max(0, i - w + 1)) for i in range(len(loss))]
    fig, axes = plt.subplots(1, 2 if knn else 1, figsize=(12 if knn else 6, 4), squeeze=False)
    ax = axes[0][0]
    ax.plot(steps, loss, color="0.8", lw=0.8, label="loss")
    ax.plot(steps, smooth, color="C0", lw=1.5, label=f"loss, mean of {w}")
    ax.set_xlabel("step")
    ax.set_ylabel("InfoNCE loss")
    ax.set_title("MoCo training loss")
    ax.legend()
    if knn:
        ax = axes[0][1]
        ax.plot([r["epoch"] for r in knn], [r["knn_top1"] for r in knn], "o-", color="C1")
        ax.set_xlabel("epoch")
        ax.set_ylabel("kNN top-1 (%)")
        ax.set_title("kNN monitor")
    fig.tight_layout()
    out = a.out or a.metrics.rsplit(".", 1)[0] + ".png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
