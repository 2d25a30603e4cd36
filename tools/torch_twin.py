#!/usr/bin/env python3
"""PyTorch twin of the moco engine: an independent implementation of the MoCo step (SPEC section 1) that
writes golden fixtures for the C++ tests.

Written from the paper's algorithm, not from the authors' code. The ResNet here is defined from torchvision's
topology with a width multiplier (torchvision cannot scale its base width), and its key names are checked
against torchvision itself.

    python3 tools/torch_twin.py fixtures [--out tests/fixtures]
    python3 tools/torch_twin.py bench --arch resnet18 --width 16 --image-size 32 -b 256 --moco-k 4096

Fixture file format (little-endian), read by tests/fixture.h:
    b"MOCOFIX\\0"  u32 version  u32 count
    count x { u32 name_len, name, u8 dtype (0 f32, 1 f64, 4 i64), u32 ndim, i64 dims[ndim], raw data }
"""
import argparse
import copy
import json
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

MAGIC = b"MOCOFIX\0"
VERSION = 1
DTYPES = {torch.float32: 0, torch.float64: 1, torch.int64: 4}


def write_fixture(path, tensors):
    """tensors: dict name -> tensor (f32, f64 or i64)."""
    with open(path + ".tmp", "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<II", VERSION, len(tensors)))
        for name, t in tensors.items():
            t = t.detach().contiguous().cpu()
            if t.dtype not in DTYPES:
                raise TypeError(f"{name}: unsupported dtype {t.dtype}")
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb)
            f.write(struct.pack("<BI", DTYPES[t.dtype], t.dim()))
            f.write(struct.pack(f"<{t.dim()}q", *t.shape))
            f.write(t.numpy().tobytes())
    os.replace(path + ".tmp", path)
    print(f"wrote {path} ({len(tensors)} tensors, {os.path.getsize(path)} bytes)")


# ----------------------------------------------------------------------------- model
_relu_inputs = None  # a list while relu_margin() records the inputs of every ReLU


def relu(x):
    if _relu_inputs is not None:
        _relu_inputs.append(x.detach())
    return F.relu(x)


def relu_margin(net, x):
    """The smallest |input| of any ReLU in a forward of `net` on `x`, relative to that input's largest entry.
    A ReLU input this close to zero can change sign under float32 rounding, and then its gradient jumps by
    the whole upstream value: a kink, not a rounding error, that no tolerance should have to cover."""
    global _relu_inputs
    _relu_inputs = []
    with torch.no_grad():
        net(x)
    margin = min((v.abs().min() / v.abs().max()).item() for v in _relu_inputs)
    _relu_inputs = None
    return margin


class ReLU(nn.Module):
    def forward(self, x):
        return relu(x)


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose train-mode statistics are computed per contiguous group of N/groups samples, as if
    each group were on its own rank. The running statistics become the mean over groups of what each group's
    own update would give."""

    def __init__(self, c, groups=1):
        super().__init__(c)
        self.groups = groups

    def forward(self, x):
        if not self.training or self.groups == 1:
            return super().forward(x)
        outs, means, vars_ = [], [], []
        for chunk in x.chunk(self.groups, dim=0):
            rm, rv = self.running_mean.clone(), self.running_var.clone()
            outs.append(F.batch_norm(chunk, rm, rv, self.weight, self.bias, True, self.momentum, self.eps))
            means.append(rm)
            vars_.append(rv)
        with torch.no_grad():
            self.running_mean.copy_(torch.stack(means).mean(0))
            self.running_var.copy_(torch.stack(vars_).mean(0))
            self.num_batches_tracked += 1
        return torch.cat(outs, 0)


class Block(nn.Module):
    def __init__(self, bottleneck, inplanes, planes, stride, groups):
        super().__init__()
        exp = 4 if bottleneck else 1
        self.bottleneck = bottleneck
        out = planes * exp
        bn = lambda c: SplitBatchNorm2d(c, groups)
        if bottleneck:
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = bn(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = bn(planes)
            self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
            self.bn3 = bn(out)
        else:
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = bn(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = bn(planes)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), bn(out))

    def forward(self, x):
        h = relu(self.bn1(self.conv1(x)))
        if self.bottleneck:
            h = relu(self.bn2(self.conv2(h)))
            h = self.bn3(self.conv3(h))
        else:
            h = self.bn2(self.conv2(h))
        return relu(h + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    def __init__(self, depth=50, width=64, small_stem=False, head="none", out_dim=128, bn_groups=1):
        super().__init__()
        depths = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}[depth]
        bottleneck = depth >= 50
        if small_stem:
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = SplitBatchNorm2d(width, bn_groups)
        self.small_stem = small_stem
        inplanes = width
        for s in range(4):
            blocks = []
            for b in range(depths[s]):
                blk = Block(bottleneck, inplanes, width << s, 2 if (s > 0 and b == 0) else 1, bn_groups)
                inplanes = (width << s) * (4 if bottleneck else 1)
                blocks.append(blk)
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        feat = inplanes
        if head == "linear":
            self.fc = nn.Linear(feat, out_dim)
        elif head == "mlp":
            self.fc = nn.Sequential(nn.Linear(feat, feat), ReLU(), nn.Linear(feat, out_dim))
        else:
            self.fc = None
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = relu(self.bn1(self.conv1(x)))
        if not self.small_stem:
            x = F.max_pool2d(x, 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x) if self.fc is not None else x


# ----------------------------------------------------------------------------- MoCo step
class MocoTwin:
    def __init__(self, enc_kwargs, K, m, T, lr, momentum=0.9, wd=1e-4):
        self.q = ResNet(**enc_kwargs)
        self.k = ResNet(**enc_kwargs)
        for pk, pq in zip(self.k.parameters(), self.q.parameters()):
            pk.data.copy_(pq.data)
            pk.requires_grad = False
        self.m, self.T = m, T
        dim = enc_kwargs["out_dim"]
        self.queue = F.normalize(torch.randn(K, dim), dim=1)  # (K, C)
        self.ptr = 0
        self.opt = torch.optim.SGD(self.q.parameters(), lr=lr, momentum=momentum, weight_decay=wd)

    def to(self, dtype):
        """Converts encoders, queue and SGD momentum buffers to `dtype`, keeping the optimizer's references."""
        self.q.to(dtype)
        self.k.to(dtype)
        self.queue = self.queue.to(dtype)
        for st in self.opt.state.values():
            if st.get("momentum_buffer") is not None:
                st["momentum_buffer"] = st["momentum_buffer"].to(dtype)
        return self

    def step(self, xq, xk, perm):
        self.q.train()
        self.k.train()
        q = F.normalize(self.q(xq), dim=1)
        with torch.no_grad():
            for pk, pq in zip(self.k.parameters(), self.q.parameters()):
                pk.mul_(self.m).add_(pq.detach(), alpha=1 - self.m)
            k_shuffled = F.normalize(self.k(xk[perm]), dim=1)
            k = torch.empty_like(k_shuffled)
            k[perm] = k_shuffled
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.t()], 1) / self.T
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        with torch.no_grad():  # enqueue with wrap-around
            n, K = len(k), len(self.queue)
            idx = (torch.arange(n, device=k.device) + self.ptr) % K
            self.queue[idx] = k.to(self.queue.dtype)  # under autocast k may be bf16
            self.ptr = (self.ptr + n) % K
        return loss.item()


def state(prefix, model):
    return {prefix + k: v.clone() for k, v in model.state_dict().items()}


def moco_state(prefix, twin, dtype=None):
    """Everything a MoCo step reads and writes: both encoders, SGD momentum buffers, queue and pointer.
    Floating tensors are converted to `dtype` when given."""
    t = state(prefix + "q.", twin.q)
    t.update(state(prefix + "k.", twin.k))
    for name, p in twin.q.named_parameters():
        buf = twin.opt.state.get(p, {}).get("momentum_buffer")
        t[prefix + "sgd." + name] = buf.clone() if buf is not None else torch.zeros_like(p)
    t[prefix + "queue"] = twin.queue.clone()
    t[prefix + "queue_ptr"] = torch.tensor([twin.ptr], dtype=torch.int64)
    if dtype is not None:
        t = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in t.items()}
    return t


def moco_fixture(head, out):
    """Five MoCo steps, run in float64 (the reference) with the state before every step and after the last.

    Before each recorded step the twin's state is rounded to float32, the precision the engine loads it in,
    so the reference is exactly "one float64 step from the recorded state". Each step is also run in float32
    by PyTorch from the same state, and the largest error of that float32 step is stored per tensor
    ("stateS.err32.KEY"). The C++ test runs each step in float32 and must be about as close to float64 as
    PyTorch's own float32 step is (tests/tolerances.h): a measured yardstick per tensor and per step, because
    how much float32 rounding is amplified differs from tensor to tensor (BN parameters of narrow layers see
    heavy cancellation)."""
    torch.manual_seed(10 if head == "linear" else 20)
    N, H, steps = 8, 16, 5
    # small stem: BN groups see at least 2x2 positions x 4 samples in layer4
    enc = dict(depth=50, width=2, small_stem=True, head=head, out_dim=16, bn_groups=2)
    cfg = dict(K=20, m=0.9, T=0.07 if head == "linear" else 0.2, lr=0.03)
    twin = MocoTwin(enc, cfg["K"], cfg["m"], cfg["T"], cfg["lr"]).to(torch.float64)
    t = {}
    t["config.ints"] = torch.tensor([enc["depth"], enc["width"], int(enc["small_stem"]), enc["out_dim"], enc["bn_groups"],
                                     cfg["K"], N, H, steps], dtype=torch.int64)
    t["config.floats"] = torch.tensor([cfg["m"], cfg["T"], cfg["lr"], 0.9, 1e-4], dtype=torch.float64)
    # Two unrecorded warm-up steps fill the queue with real keys. With a random queue and a fresh network the
    # positive logit dominates (loss ~0.02), and the gradient is a tiny difference that float32 cannot resolve
    # (PyTorch's own float32 step is then off by more than 100% in some tensors). The recorded steps start at
    # ptr 16 of K 20, so the first recorded enqueue wraps around.
    def two_views():  # two noisy views of one image each
        base = torch.randn(N, 3, 1, 1) + torch.randn(N, 3, H, H)
        return base + 0.3 * torch.randn(N, 3, H, H), base + 0.3 * torch.randn(N, 3, H, H)

    for _ in range(2):
        xq, xk = two_views()
        twin.step(xq.double(), xk.double(), torch.randperm(N))
    losses, loss_err32 = [], []
    for s in range(steps):
        twin.to(torch.float32).to(torch.float64)  # the reference starts from exactly the recorded state
        t.update(moco_state(f"state{s}.", twin, torch.float32))
        xq, xk = two_views()
        perm = torch.randperm(N)
        t[f"step{s}.x_q"], t[f"step{s}.x_k"], t[f"step{s}.perm"] = xq, xk, perm
        twin32 = copy.deepcopy(twin).to(torch.float32)
        loss32 = twin32.step(xq, xk, perm)
        losses.append(twin.step(xq.double(), xk.double(), perm))
        loss_err32.append(abs(loss32 - losses[-1]))
        ref, got32 = moco_state("", twin), moco_state("", twin32)
        for key, v in ref.items():
            if v.dtype == torch.float64:
                t[f"state{s + 1}.err32.{key}"] = (got32[key].double() - v).abs().max().reshape(1)
    t.update(moco_state(f"state{steps}.", twin, torch.float32))
    t["losses"] = torch.tensor(losses, dtype=torch.float64)
    t["losses.err32"] = torch.tensor(loss_err32, dtype=torch.float64)
    write_fixture(os.path.join(out, f"moco_steps_{'v1' if head == 'linear' else 'v2'}.bin"), t)


def resnet_fixture(out, depth, small_stem, n, h, name):
    """A tiny ResNet with an fc head: one train-mode forward and backward, in float64 (the reference, stored
    rounded to float32), plus the largest error of PyTorch's own float32 run of the same net per tensor
    ("err32.KEY"), the yardstick the C++ test measures itself against (see moco_fixture)."""
    for seed in range(3, 100):  # the first seed whose ReLU inputs all keep clear of the kink
        torch.manual_seed(seed)
        net32 = ResNet(depth=depth, width=4, small_stem=small_stem, head="linear", out_dim=10)
        net = copy.deepcopy(net32).double()
        x = torch.randn(n, 3, h, h)
        if relu_margin(copy.deepcopy(net), x.double()) > 5e-6:
            break
    t = state("init.", net32)
    dy = torch.randn(n, 10)
    y, y32 = net(x.double()), net32(x)
    y.backward(dy.double())
    y32.backward(dy)
    ref = {"y": y.detach()}
    got = {"y": y32.detach()}
    for (pname, p), p32 in zip(net.named_parameters(), net32.parameters()):
        ref["grad." + pname], got["grad." + pname] = p.grad, p32.grad
    ref.update(state("after.", net))
    got.update(state("after.", net32))
    t["x"], t["dy"] = x, dy
    for key, v in ref.items():
        t[key] = v.float() if v.is_floating_point() else v
        if v.is_floating_point():
            t["err32." + key] = (got[key].double() - v).abs().max().reshape(1)
    write_fixture(os.path.join(out, name), t)


def ops_fixture(out):
    """Per-op inputs, outputs and gradients in float64, from PyTorch's own operators."""
    torch.manual_seed(5)
    d = torch.float64
    t = {}

    def grads(y, inputs, name):
        dy = torch.randn_like(y)
        g = torch.autograd.grad(y, inputs, dy)
        t[name + ".dy"] = dy
        return g

    x = torch.randn(2, 3, 9, 7, dtype=d, requires_grad=True)
    w = torch.randn(5, 3, 3, 3, dtype=d, requires_grad=True)
    y = F.conv2d(x, w, stride=2, padding=1)
    gx, gw = grads(y, [x, w], "conv")
    t.update({"conv.x": x, "conv.w": w, "conv.y": y, "conv.dx": gx, "conv.dw": gw})

    x = torch.randn(4, 3, 5, 5, dtype=d, requires_grad=True)
    g = torch.randn(3, dtype=d, requires_grad=True)
    b = torch.randn(3, dtype=d, requires_grad=True)
    rm, rv = torch.randn(3, dtype=d), torch.rand(3, dtype=d) + 0.5
    t.update({"bn.x": x, "bn.gamma": g, "bn.beta": b, "bn.rm0": rm.clone(), "bn.rv0": rv.clone()})
    y = F.batch_norm(x, rm, rv, g, b, training=True, momentum=0.1, eps=1e-5)
    gx, gg, gb = grads(y, [x, g, b], "bn_train")
    t.update({"bn_train.y": y, "bn_train.dx": gx, "bn_train.dgamma": gg, "bn_train.dbeta": gb, "bn_train.rm": rm, "bn_train.rv": rv})
    y = F.batch_norm(x, rm, rv, g, b, training=False, eps=1e-5)
    gx, gg, gb = grads(y, [x, g, b], "bn_eval")
    t.update({"bn_eval.y": y, "bn_eval.dx": gx, "bn_eval.dgamma": gg, "bn_eval.dbeta": gb})

    x = torch.randn(2, 3, 7, 6, dtype=d, requires_grad=True)
    y = F.max_pool2d(x, 3, 2, 1)
    (gx,) = grads(y, [x], "maxpool")
    t.update({"maxpool.x": x, "maxpool.y": y, "maxpool.dx": gx})
    y = F.adaptive_avg_pool2d(x, 1).flatten(1)
    (gx,) = grads(y, [x], "avgpool")
    t.update({"avgpool.y": y, "avgpool.dx": gx})
    y = F.relu(x)
    (gx,) = grads(y, [x], "relu")
    t.update({"relu.y": y, "relu.dx": gx})

    x = torch.randn(3, 6, dtype=d, requires_grad=True)
    w = torch.randn(4, 6, dtype=d, requires_grad=True)
    b = torch.randn(4, dtype=d, requires_grad=True)
    y = F.linear(x, w, b)
    gx, gw, gb = grads(y, [x, w, b], "linear")
    t.update({"linear.x": x, "linear.w": w, "linear.b": b, "linear.y": y, "linear.dx": gx, "linear.dw": gw, "linear.db": gb})

    y = F.normalize(x, dim=1)
    (gx,) = grads(y, [x], "l2norm")
    t.update({"l2norm.y": y, "l2norm.dx": gx})

    # contrastive loss: q = normalize(feat); logits = [q.k, q.queue^T] / T; CE(label 0)
    feat = torch.randn(4, 8, dtype=d, requires_grad=True)
    k = F.normalize(torch.randn(4, 8, dtype=d), dim=1)
    queue = F.normalize(torch.randn(11, 8, dtype=d), dim=1)
    T = 0.07
    q = F.normalize(feat, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], 1) / T
    loss = F.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    (gfeat,) = torch.autograd.grad(loss, [feat])
    t.update({"xent.feat": feat, "xent.k": k, "xent.queue": queue, "xent.logits": logits, "xent.loss": loss.reshape(1),
              "xent.dfeat": gfeat})

    # EMA and two SGD steps (torch.optim.SGD)
    pq, pk = torch.randn(10, dtype=d), torch.randn(10, dtype=d)
    t.update({"ema.q": pq, "ema.k0": pk.clone(), "ema.k": pk * 0.99 + pq * 0.01})
    p = torch.randn(10, dtype=d, requires_grad=True)
    t["sgd.p0"] = p.detach().clone()
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-2)
    for s in range(2):
        gr = torch.randn(10, dtype=d)
        t[f"sgd.g{s}"] = gr
        p.grad = gr.clone()
        opt.step()
    t["sgd.p2"] = p.detach().clone()
    write_fixture(os.path.join(out, "ops.bin"), {k_: v.detach() for k_, v in t.items()})


def torchvision_keys(out):
    """torchvision's own ResNet-50 and ResNet-18 state_dict keys and shapes, one line each."""
    import torchvision

    for name, ctor in [("resnet50", torchvision.models.resnet50), ("resnet18", torchvision.models.resnet18)]:
        sd = ctor(weights=None).state_dict()
        path = os.path.join(out, f"torchvision_{name}_keys.txt")
        with open(path, "w") as f:
            for k, v in sd.items():
                f.write(k + " " + " ".join(str(s) for s in v.shape) + "\n")
        print(f"wrote {path} ({len(sd)} keys)")


# ----------------------------------------------------------------------------- peer benchmark
class FastSplitBatchNorm2d(nn.BatchNorm2d):
    """Split-BN in one batch_norm call: (N, C, H, W) viewed as (N/G, G*C, H, W), so group g holds the samples
    with index = g mod G (the fixtures' SplitBatchNorm2d uses contiguous groups; the cost is the same, and
    this is the fastest way PyTorch can do it). Running statistics are averaged over the groups."""

    def __init__(self, c, groups):
        super().__init__(c)
        self.groups = groups

    def forward(self, x):
        if not self.training or self.groups == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        g = self.groups
        rm, rv = self.running_mean.repeat(g), self.running_var.repeat(g)
        y = F.batch_norm(x.reshape(n // g, c * g, h, w), rm, rv, self.weight.repeat(g), self.bias.repeat(g), True,
                         self.momentum, self.eps)
        with torch.no_grad():
            self.running_mean.copy_(rm.view(g, c).mean(0))
            self.running_var.copy_(rv.view(g, c).mean(0))
        return y.reshape(n, c, h, w)  # reshape: a channels_last input is not viewable


def bench(a):
    """Times whole MoCo steps of the twin on synthetic input, the configuration of `moco bench`. On a GPU
    (--device cuda) it is the peer of the engine's GPU step: eager fp32, or with --amp (bf16 autocast),
    --channels-last and --compile (torch.compile of both encoders), and it reports peak memory."""
    import contextlib
    import time

    torch.set_num_threads(a.threads)
    global SplitBatchNorm2d
    SplitBatchNorm2d = FastSplitBatchNorm2d  # the model below is built with the one-call split-BN
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: PyTorch sees no CUDA device")
    # As the authors' main_moco.py does: cuDNN times its algorithms per shape (our engine does the same with
    # cudnnFind), so both sides run their measured-fastest convolutions.
    torch.backends.cudnn.benchmark = True
    depth = int(a.arch.replace("resnet", ""))
    small = a.image_size <= 64 if a.stem == "auto" else a.stem == "small"
    enc = dict(depth=depth, width=a.width, small_stem=small, head="mlp" if a.mlp else "linear", out_dim=a.moco_dim,
               bn_groups=a.bn_splits)
    twin = MocoTwin(enc, a.moco_k, 0.999, 0.2 if a.mlp else 0.07, 0.03)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    twin.q.to(dev, memory_format=fmt)
    twin.k.to(dev, memory_format=fmt)
    twin.queue = twin.queue.to(dev)
    if a.compile:
        twin.q, twin.k = torch.compile(twin.q), torch.compile(twin.k)
    g = torch.Generator().manual_seed(1)
    xq = torch.randn(a.batch_size, 3, a.image_size, a.image_size, generator=g)
    xk = (xq + 0.3 * torch.randn(xq.shape, generator=g)).to(dev, memory_format=fmt)
    xq = xq.to(dev, memory_format=fmt)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16) if a.amp else contextlib.nullcontext()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(a.warmup + a.steps):
        perm = torch.randperm(a.batch_size, generator=g).to(dev)
        sync()
        t0 = time.perf_counter()
        with amp:
            twin.step(xq, xk, perm)  # its loss.item() waits for the device
        sync()
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    med = times[len(times) // 2]
    mode = "+".join(m for m, on in [("bf16-autocast", a.amp), ("channels-last", a.channels_last),
                                     ("compile", a.compile)] if on) or "eager-fp32"
    print(f"torch twin bench: resnet{depth}{'-small-stem' if small else ''}-w{a.width}{'+mlp' if a.mlp else ''}, "
          f"batch {a.batch_size} at {a.image_size} px, K {a.moco_k}, device {dev.type}, {mode}, "
          f"torch {torch.__version__}, {a.threads} threads")
    print(f"step_ms_median {med:.1f}  step_ms_min {times[0]:.1f}  img_per_s {a.batch_size * 1000 / med:.1f}  "
          f"({a.steps} timed steps)")
    if dev.type == "cuda":
        print(f"peak_memory_mib {torch.cuda.max_memory_allocated() / 2**20:.1f}")
    if a.jsonl:
        # the field names of `moco bench --jsonl`, so that the two files join on the configuration
        rec = dict(bench="torch_step", date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), device=dev.type,
                   arch=a.arch, width=a.width, image_size=a.image_size, batch=a.batch_size, k=a.moco_k,
                   dim=a.moco_dim, head="mlp" if a.mlp else "fc", bn_splits=a.bn_splits, steps=a.steps,
                   warmup=a.warmup, threads=a.threads, mode=mode, precision="bf16" if a.amp else "fp32",
                   torch=torch.__version__,
                   img_per_s=a.batch_size * 1000 / med, step_ms=med, step_ms_min=times[0], timed_steps=len(times))
        if dev.type == "cuda":
            rec["device_name"] = torch.cuda.get_device_name()
            # the peak of what PyTorch's allocator handed out: moco's `total_mib` is its categories' sum instead,
            # so the name differs
            rec["peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        with open(a.jsonl, "a") as f:
            f.write(json.dumps(rec) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["fixtures", "bench"])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--stem", default="auto")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("-b", "--batch-size", type=int, default=256)
    ap.add_argument("--moco-k", type=int, default=65536)
    ap.add_argument("--moco-dim", type=int, default=128)
    ap.add_argument("--mlp", action="store_true")
    ap.add_argument("--bn-splits", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu", help="cpu or cuda (bench)")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (bench)")
    ap.add_argument("--channels-last", action="store_true", help="NHWC memory format (bench)")
    ap.add_argument("--compile", action="store_true", help="torch.compile both encoders (bench)")
    ap.add_argument("--jsonl", default="", help="append the numbers to this file as one JSON object (bench), "
                    "with the field names of `moco bench --jsonl`")
    a = ap.parse_args()
    if a.what == "bench":
        bench(a)
        return
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)  # deterministic summation order
    ops_fixture(a.out)
    resnet_fixture(a.out, 18, True, 4, 12, "resnet18_tiny.bin")
    resnet_fixture(a.out, 50, False, 8, 32, "resnet50_tiny.bin")  # bottlenecks, 7x7 stem and max-pool
    moco_fixture("linear", a.out)
    moco_fixture("mlp", a.out)
    torchvision_keys(a.out)


if __name__ == "__main__":
    main()
