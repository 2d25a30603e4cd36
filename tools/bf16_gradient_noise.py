#!/usr/bin/env python3
"""How far bf16 autocast moves the gradient of one MoCo step, in PyTorch, on the networks the GPU step tests use.

For each configuration the PyTorch twin's encoders (tools/torch_twin.py) run one MoCo v2 step three times from
the same weights and inputs: in float64 (the reference), in float32, and in float32 under bf16 autocast. It
prints the relative L2 distance of each gradient from the float64 one. The gpu tests' bf16 bounds
(tests/gpu/test_gpu_moco_step.cpp) are set against these numbers: a bf16 GPU step cannot be held closer to the
CPU's float32 step than PyTorch's own bf16 step is to its float64 one.

usage: python3 tools/bf16_gradient_noise.py
"""
import copy
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_twin  # noqa: E402

# (depth, width, small stem, image size, batch, BN groups, feature dim): the tests' networks, then a full-width one
CONFIGS = [
    (18, 8, True, 16, 32, 4, 32),   # Fp32GradientIsTight / Bf16StepTracksTheCpuStep
    (50, 4, False, 64, 8, 2, 16),   # Fp32StepMatchesTheCpuStep (tiny_v2)
    (50, 64, False, 64, 32, 1, 128),
]


def step_gradient(enc_q, enc_k, queue, xq, xk, perm, t, dtype=None, autocast=False):
    """The query encoder's gradient (flat, float64) and the loss of one MoCo step; the encoders are copied."""
    q_enc, k_enc = copy.deepcopy(enc_q), copy.deepcopy(enc_k)
    if dtype is not None:
        q_enc.to(dtype), k_enc.to(dtype)
        xq, xk, queue = xq.to(dtype), xk.to(dtype), queue.to(dtype)
    q_enc.train(), k_enc.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        q = F.normalize(q_enc(xq), dim=1)
        with torch.no_grad():
            k_shuffled = F.normalize(k_enc(xk[perm]), dim=1)
            k = torch.empty_like(k_shuffled)
            k[perm] = k_shuffled
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t().to(q.dtype)], 1) / t
        loss = F.cross_entropy(logits.float(), torch.zeros(len(q), dtype=torch.long))
    loss.backward()
    return loss.item(), torch.cat([p.grad.double().flatten() for p in q_enc.parameters()])


def main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for depth, width, small, size, n, groups, dim in CONFIGS:
        enc_q = torch_twin.ResNet(depth=depth, width=width, small_stem=small, head="mlp", out_dim=dim, bn_groups=groups)
        enc_k = copy.deepcopy(enc_q)
        queue = F.normalize(torch.randn(512, dim), dim=1)  # (K, C)
        protos = torch.randn(8, 3, size, size)  # two noisy views of 8 prototypes, as the tests' images
        xq = protos[torch.arange(n) % 8] + 0.3 * torch.randn(n, 3, size, size)
        xk = protos[torch.arange(n) % 8] + 0.3 * torch.randn(n, 3, size, size)
        perm = torch.randperm(n)
        l64, g64 = step_gradient(enc_q, enc_k, queue, xq, xk, perm, 0.2, dtype=torch.float64)
        l32, g32 = step_gradient(enc_q, enc_k, queue, xq, xk, perm, 0.2)
        lbf, gbf = step_gradient(enc_q, enc_k, queue, xq, xk, perm, 0.2, autocast=True)
        rel = lambda g: ((g - g64).norm() / g64.norm()).item()
        print(f"resnet{depth} width {width} {'small' if small else 'imagenet'} stem {size} px, batch {n}, "
              f"BN groups {groups}: loss f64 {l64:.6f} f32 {l32:.6f} bf16 {lbf:.6f}; "
              f"gradient relative L2 vs f64: f32 {rel(g32):.2e}, bf16 autocast {rel(gbf):.2e}")


if __name__ == "__main__":
    main()
