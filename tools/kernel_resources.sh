#!/usr/bin/env bash
# What each CUDA kernel of kernels/ costs the device per thread and per block, from ptxas (-Xptxas -v) for the
# build's architecture: registers, static shared memory, spills. Fails on a spill or on static shared memory
# above the 48 KiB a block may have without opting in, the two ways a kernel can slow down or fail to launch
# that the CUDA emulator cannot show. Needs nvcc and a configured CUDA build folder (its compile commands).
#   bash tools/kernel_resources.sh [BUILD_DIR]     (default: build-device, else build)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-}
[ -n "$build" ] || { [ -f "$repo/build-device/compile_commands.json" ] && build=$repo/build-device || build=$repo/build; }
[ -f "$build/compile_commands.json" ] || { echo "no compile_commands.json in $build: configure a CUDA build first" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$build/compile_commands.json" "$work" <<'PY'
import json, re, subprocess, sys
commands, work = sys.argv[1], sys.argv[2]
rows, failed = [], False
for c in json.load(open(commands)):
    if not c["file"].endswith(".cu") or "/kernels/" not in c["file"]:
        continue
    cmd = re.sub(r"-o \S+", "-o " + work + "/k.o", c["command"]).replace(" -c ", " -Xptxas -v -c ")
    out = subprocess.run(cmd, shell=True, cwd=c["directory"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("nvcc failed on " + c["file"] + ":\n" + out.stderr)
    name = None
    for line in out.stderr.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for '(\w+)'", line)
        if m:
            name, arch = m.group(1), m.group(2)
            spill = 0
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and name:
            spill = int(m.group(1)) + int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m and name:
            smem = re.search(r"(\d+) bytes smem", line)
            rows.append((int(m.group(1)), int(smem.group(1)) if smem else 0, spill, arch, name, c["file"].split("/")[-1]))
            name = None
names = subprocess.run(["c++filt"], input="\n".join(r[4] for r in rows), capture_output=True, text=True).stdout.splitlines()
print(f"{'regs':>4} {'smem B':>7} {'spill B':>7}  arch     file / kernel")
for (regs, smem, spill, arch, _, f), n in sorted(zip(rows, names), reverse=True):
    n = re.sub(r"moco::kernels::\(anonymous namespace\)::", "", n)
    flag = ""
    if spill:
        flag, failed = "  <- spills", True
    if smem > 48 * 1024:
        flag, failed = "  <- static shared memory above 48 KiB", True
    print(f"{regs:>4} {smem:>7} {spill:>7}  {arch:<8} {f}: {n[:110]}{flag}")
print(f"{len(rows)} kernels; most registers {max(r[0] for r in rows)}, most static shared memory "
      f"{max(r[1] for r in rows)} B, spills {sum(r[2] for r in rows)} B")
sys.exit(1 if failed else 0)
PY
