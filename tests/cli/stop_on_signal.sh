#!/usr/bin/env bash
# SIGTERM (a scheduler's preemption) and SIGINT (Ctrl-C) during `moco train`: the run ends after the step in
# progress with exit 128 + the signal, a message naming the signal and the checkpoint, and a checkpoint of that
# very step (here none is due on its own: --save-every-steps is larger than the run), from which --resume logs
# exactly the losses of an uninterrupted run, bit for bit.
#   stop_on_signal.sh <moco binary>                  one process: SIGTERM, then SIGINT
#   stop_on_signal.sh <moco binary> <mpiexec> <W>    W CPU ranks, of which only the last is sent SIGTERM: every
#                                                    rank stops after the same step (they vote after each one)
# Uses Fashion-MNIST (tools/setup.sh installs it); exits 77 (skipped) when it is not installed.
set -euo pipefail
moco=$1
mpiexec=${2:-}
w=${3:-1}
root=${MOCO_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
[ -f "$root/train-images-idx3-ubyte.gz" ] || { echo "Fashion-MNIST not installed at $root: skipped"; exit 77; }
dir=$(mktemp -d)
pid=0
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
steps=14
args=(train --width 4 -b 32 --bn-splits 4 --moco-k 256 --epochs 2 --max-steps $steps --save-every-steps 1000 -j 2
      --seed 5)
launch=("$moco")
[ -n "$mpiexec" ] && launch=("$mpiexec" -n "$w" "$moco")
losses() { grep -o '"step": [0-9]*, "epoch": [0-9]*, "loss": [^,]*' "$1/metrics.jsonl"; }
failed=0

# The process to signal: moco itself, or under mpiexec the last rank (found by its Open MPI rank variable).
target() {
  [ -z "$mpiexec" ] && { echo $pid; return; }
  local p
  for p in $(pgrep -P $pid); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$((w - 1))" && { echo $p; return; }
  done
}

"${launch[@]}" "${args[@]}" --out "$dir/a" 2>"$dir/a.err"
sigs="TERM INT"
[ -n "$mpiexec" ] && sigs=TERM
for sig in $sigs; do
  out=$dir/$sig
  "${launch[@]}" "${args[@]}" --out "$out" 2>"$out.err" &
  pid=$!
  for _ in $(seq 1 1500); do  # the signal lands mid-run: once the 4th step is logged
    n=$(grep -c '"loss"' "$out/metrics.jsonl" 2>/dev/null || true)
    [ "${n:-0}" -ge 4 ] && break
    sleep 0.02
  done
  victim=$(target)
  [ -n "$victim" ] || { echo "FAIL: no process to signal"; failed=1; continue; }
  kill -s $sig "$victim"
  rc=0
  wait $pid || rc=$?
  want=$(( 128 + $(kill -l $sig) ))
  logged=$(grep -c '"loss"' "$out/metrics.jsonl")
  msg=$(grep -E "stopped by (SIG$sig|a signal to another rank)" "$out.err" || true)
  # one process exits 128 + the signal; mpiexec reports its ranks' failure its own way (non-zero)
  rc_ok=$([ -n "$mpiexec" ] && [ $rc -ne 0 ] || [ $rc -eq $want ] && echo 1 || echo 0)
  if [ "$rc_ok" = 1 ] && [ -n "$msg" ] && [ "$logged" -lt $steps ] &&
     grep -qE "\"event\": ?\"stopped\", \"step\": $logged," "$out/metrics.jsonl"; then
    echo "ok: SIG$sig -> exit $rc after step $logged: $msg"
  else
    echo "FAIL: SIG$sig -> exit $rc (wanted $want), $logged of $steps steps logged, message: ${msg:-<none>}"
    cat "$out.err"; failed=1; continue
  fi
  "${launch[@]}" "${args[@]}" --out "$out" --resume "$out/checkpoint.mocockpt" 2>"$out.resume.err" ||
    { echo "FAIL: the resume after SIG$sig failed"; cat "$out.resume.err"; failed=1; continue; }
  if diff <(losses "$dir/a") <(losses "$out") >/dev/null; then
    echo "ok: resumed after SIG$sig $(grep -o 'at epoch [0-9]*, step [0-9]*' "$out.resume.err"), the same $steps losses bit for bit"
  else
    echo "FAIL: the losses after resuming from SIG$sig differ"; failed=1
  fi
done
exit $failed
