#!/usr/bin/env python3
"""The peer of bench_knn_vote: the kNN monitor's scoring as a PyTorch user writes it (similarities by one
matmul, torch.topk, the exp(sim / t) votes scattered into their classes, argmax), at the same sizes and in
the same precision (fp32 matmul, TF32 off; votes in double). Run right after build/bench_knn_vote in the same
device call (tools/device-run.sh), so that the two times form a ratio.

    python3 tools/knn_peer.py [--device cuda] [--bank 1281167] [--dim 2048] [--rows 128] [--k 200]

It first checks its own vote against a plain loop on a small problem, then prints one line:
    torch knn bank=B D=D rows=R k=K: gemm G ms  topk+vote V ms  total T ms  (50000 queries: S s)
"""
import argparse
import statistics

import torch


def vote(sims, labels, k, t, classes):
    """sims (R, B), labels (B) -> predicted class (R): the k most similar vote exp(sim / t) for their class."""
    top, idx = sims.topk(k, dim=1)                          # (R, k) each
    w = (top.double() / t).exp()                           # (R, k)
    votes = torch.zeros(sims.shape[0], classes, dtype=torch.float64, device=sims.device)  # (R, classes)
    votes.scatter_add_(1, labels[idx], w)
    return votes.argmax(dim=1)                             # (R)


def check(device):
    g = torch.Generator().manual_seed(5)
    sims = torch.rand(7, 300, generator=g)                 # (7, 300) distinct values: no ties to break
    labels = torch.randint(0, 4, (300,), generator=g)      # (300)
    got = vote(sims.to(device), labels.to(device), 20, 0.1, 4).cpu()
    for r in range(7):
        order = sorted(range(300), key=lambda j: -float(sims[r, j]))[:20]
        v = [0.0] * 4
        for j in order:
            v[int(labels[j])] += torch.tensor(float(sims[r, j]) / 0.1, dtype=torch.float64).exp().item()
        if int(got[r]) != max(range(4), key=lambda c: v[c]):
            raise SystemExit(f"torch knn: row {r} votes {int(got[r])}, the plain loop {v}; refusing to time it")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--bank", type=int, default=1281167)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 as bench_knn_vote's cuBLAS GEMM
    dev = torch.device(a.device)
    check(dev)
    bank = torch.randn(a.bank, a.dim, device=dev)                  # (B, D)
    q = torch.randn(a.rows, a.dim, device=dev)                     # (R, D)
    labels = torch.randint(0, a.classes, (a.bank,), device=dev)    # (B)
    # similarities spread like a trained encoder's (as bench_knn_vote draws them) for the top-k and vote
    sims = (0.15 + 0.12 * torch.randn(a.rows, a.bank, device=dev)).clamp_(-0.3, 0.95)  # (R, B)

    def timed(fn):
        times = []
        for i in range(a.reps + 2):
            if dev.type == "cuda":
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                stop.record()
                torch.cuda.synchronize()
                ms = start.elapsed_time(stop)
            else:
                import time
                t0 = time.perf_counter()
                fn()
                ms = 1e3 * (time.perf_counter() - t0)
            if i >= 2:  # two warm-up runs
                times.append(ms)
        return statistics.median(times)

    gemm_ms = timed(lambda: q @ bank.T)
    vote_ms = timed(lambda: vote(sims, labels, a.k, 0.1, a.classes))
    total = gemm_ms + vote_ms
    print(f"torch {torch.__version__} knn bank={a.bank} D={a.dim} rows={a.rows} k={a.k}: gemm {gemm_ms:.3f} ms  "
          f"topk+vote {vote_ms:.3f} ms  total {total:.3f} ms  (50000 queries: {total * 50000 / a.rows / 1e3:.1f} s)")


if __name__ == "__main__":
    main()
