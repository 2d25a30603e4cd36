#!/usr/bin/env bash
# A run killed with SIGKILL at a random step and resumed from its last checkpoint logs exactly the losses of
# an uninterrupted run, bit for bit (the CPU path is deterministic and every draw is keyed by its position).
#   resume_after_sigkill.sh <moco binary>
# Uses Fashion-MNIST (tools/setup.sh installs it); exits 77 (skipped) when it is not installed.
set -euo pipefail
moco=$1
root=${MOCO_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
[ -f "$root/train-images-idx3-ubyte.gz" ] || { echo "Fashion-MNIST not installed at $root: skipped"; exit 77; }
dir=$(mktemp -d)
# pid 0 would name the whole process group (the test runner too): only a started run is killed
trap '{ [ "$pid" -gt 0 ] && kill -9 $pid; } 2>/dev/null || true; rm -rf "$dir"' EXIT
pid=0
steps=14
# a small, fast configuration: every flag that shapes the run is the same for all three runs
args=(train --width 4 -b 32 --bn-splits 4 --moco-k 256 --epochs 2 --max-steps $steps --save-every-steps 1 -j 2 --seed 5)
run() { "$moco" "${args[@]}" "$@"; }
losses() { grep -o '"step": [0-9]*, "epoch": [0-9]*, "loss": [^,]*' "$1/metrics.jsonl"; }

run --out "$dir/a" 2>"$dir/a.err"
# kill the second run at a random step between 3 and steps-3, right after it logs that step
kill_at=$(( 3 + RANDOM % (steps - 5) ))
"$moco" "${args[@]}" --out "$dir/b" 2>"$dir/b.err" &  # not through run(): $! must be moco itself, not a subshell
pid=$!
for _ in $(seq 1 600); do
  n=$(grep -c '"loss"' "$dir/b/metrics.jsonl" 2>/dev/null || true)
  [ "${n:-0}" -ge "$kill_at" ] && break
  sleep 0.05
done
kill -9 $pid
wait $pid 2>/dev/null || true
killed=$(grep -c '"loss"' "$dir/b/metrics.jsonl" || true)
echo "killed at step $killed"
# the kill must have cut the run short, or the resume below would test nothing
[ "${killed:-0}" -ge 1 ] && [ "${killed:-0}" -lt $steps ] ||
  { echo "FAIL: the run was not killed mid-way (it logged ${killed:-no} steps of $steps)"; exit 1; }
run --out "$dir/b" --resume "$dir/b/checkpoint.mocockpt" 2>"$dir/b2.err"
grep resumed "$dir/b2.err"
a=$(losses "$dir/a") && b=$(losses "$dir/b") || { echo "FAIL: a log has no losses"; exit 1; }
[ "$(printf '%s\n' "$a" | wc -l)" -eq $steps ] || { echo "FAIL: the uninterrupted run logged $(printf '%s\n' "$a" | wc -l) of $steps steps"; exit 1; }
if [ "$a" = "$b" ]; then
  echo "resumed run logged the same $steps losses, bit for bit"
else
  echo "FAIL: losses differ after resume"; diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") | head; exit 1
fi
