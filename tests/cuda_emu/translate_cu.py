#!/usr/bin/env python3
"""Rewrites a .cu file for the CUDA emulator (tests/cuda_emu) so that it compiles as C++ against the emulator's
stand-in headers. Two things change:

- kernel launches:
    name<T, V><<<grid, block, smem, stream>>>(a, b);
  ->
    ::cuda_emu::launch(name<T, V>, ::cuda_emu::LaunchConfig(grid, block, smem, stream), a, b);
- each __shared__ declaration is followed, on the same line, by a call that fills the array with 0xFF bytes
  (NaN, or -1) once per block, so that a kernel reading shared memory it has not written sees garbage, as on
  the device, and not what the previous block or launch left there:
    __shared__ float a[8], b[8];
  ->
    __shared__ float a[8], b[8]; ::cuda_emu::fresh_shared(&a, sizeof(a)); ::cuda_emu::fresh_shared(&b, sizeof(b));

Everything else is copied as it is, newlines included, and a #line directive keeps compiler messages pointing
at the original file and line.

usage: translate_cu.py IN.cu OUT.cpp
"""
import re
import sys


def skip_literal(src, i):
    """i at a quote: index just past the closing quote."""
    q = src[i]
    i += 1
    while src[i] != q:
        i += 2 if src[i] == "\\" else 1
    return i + 1


def match_forward(src, i, open_ch, close_ch):
    """i at open_ch: index of the matching close_ch (brackets and literals inside are skipped)."""
    depth = 0
    while i < len(src):
        ch = src[i]
        if ch in "\"'":
            i = skip_literal(src, i)
            continue
        if ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError("unbalanced %s" % open_ch)


def kernel_start(src, end):
    """The start of the kernel expression that ends just before `end` (a name, qualified or not, with optional
    template arguments)."""
    i = end
    while src[i - 1].isspace():
        i -= 1
    if src[i - 1] == ">":  # template arguments: walk back to the matching '<'
        depth = 0
        while True:
            i -= 1
            if src[i] == ">":
                depth += 1
            elif src[i] == "<":
                depth -= 1
                if depth == 0:
                    break
    while i > 0 and (src[i - 1].isalnum() or src[i - 1] in "_:"):
        i -= 1
    return i


def split_top_level(text, sep):
    """text split at `sep` where no bracket is open."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def poison_shared(src):
    out, pos = [], 0
    for m in re.finditer(r"\b__shared__\b", src):
        if m.start() < pos:
            continue
        end = src.index(";", m.end())
        decl = src[m.end():end]
        names = []
        for i, d in enumerate(split_top_level(decl, ",")):
            d = d.split("[")[0].split("=")[0].strip()
            names.append(re.findall(r"[A-Za-z_]\w*", d)[-1])  # the declarator's name ends the part before '['
        out.append(src[pos:end + 1])
        out.append("".join(" ::cuda_emu::fresh_shared(&%s, sizeof(%s));" % (n, n) for n in names))
        pos = end + 1
    out.append(src[pos:])
    return "".join(out)


def translate(src):
    out, pos = [], 0
    while True:
        at = src.find("<<<", pos)
        if at < 0:
            out.append(src[pos:])
            return "".join(out)
        start = kernel_start(src, at)
        kernel = src[start:at].strip()
        cfg_end = src.index(">>>", at)
        config = src[at + 3:cfg_end]
        p = cfg_end + 3
        while src[p].isspace():
            p += 1
        if src[p] != "(":
            raise ValueError("launch of %s: expected '(' after >>>" % kernel)
        close = match_forward(src, p, "(", ")")
        args = src[p + 1:close]
        sep = ", " if args.strip() else ""
        out.append(src[pos:start])
        out.append("::cuda_emu::launch(%s, ::cuda_emu::LaunchConfig(%s)%s%s)" % (kernel, config, sep, args))
        pos = close + 1


def main():
    src_path, out_path = sys.argv[1], sys.argv[2]
    with open(src_path) as f:
        src = f.read()
    with open(out_path, "w") as f:
        f.write('#line 1 "%s"\n' % src_path)
        f.write(poison_shared(translate(src)))


if __name__ == "__main__":
    main()
