# Sourced by the CLI test scripts that train on the GPU: a one-step `moco bench --device cuda` first. The
# script skips (exit 77) only where the probe says there is no GPU to run on (no device, or a build without
# the CUDA backend); a probe that fails for any other reason fails the test, so a broken GPU path can not
# pass as a skip (on the emulator, where a device is always there, it never skips).
#   source "$(dirname "$0")/gpu_probe.sh" "$moco" "$dir/probe.log"
if ! "$1" bench --device cuda --steps 1 --warmup 1 -a resnet18 --width 2 --image-size 16 -b 4 --moco-k 16 \
    >"$2" 2>&1; then
  if grep -qE "no usable CUDA device|has no CUDA backend" "$2"; then
    echo "no usable GPU: skipped ($(tail -1 "$2"))"; exit 77
  fi
  echo "FAIL: the GPU probe (moco bench --device cuda) failed, and not for want of a GPU:"; tail -20 "$2"; exit 1
fi
