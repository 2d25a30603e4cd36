#!/usr/bin/env bash
# SIGTERM (a scheduler's preemption) and SIGINT (Ctrl-C) during `moco train`: the run ends after the step in
# progress with exit 128 + the signal, a message naming the signal and the checkpoint, and a checkpoint of that
# very step (here none is due on its own: --save-every-steps is larger than the run), from which --resume logs
# exactly the losses of an uninterrupted run, bit for bit.
#   stop_on_signal.sh <moco binary>                  one process: SIGTERM, then SIGINT
#   stop_on_signal.sh <moco binary> <mpiexec> <W>    W CPU ranks, of which only the last is sent SIGTERM: every
#                                                    rank stops after the same step (they vote after each one)
# MOCO_TEST_DEVICE=cuda runs the single-process SIGTERM case on the GPU (exit 77 without one). With it,
# MOCO_TEST_LAUNCH=multiprocessing-distributed starts every run through `moco train --multiprocessing-distributed`
# (one rank per visible GPU) and signals that parent, which passes the signal on to its ranks.
# Uses Fashion-MNIST where it is installed, else the small ImageFolder of the GPU scripts (python3).
set -euo pipefail
moco=$1
mpiexec=${2:-}
w=${3:-1}
dir=$(mktemp -d)
pid=0
# pid 0 would name the whole process group (the test runner too): only a started run is killed
trap '{ [ "$pid" -gt 0 ] && kill -9 $pid; } 2>/dev/null || true; rm -rf "$dir"' EXIT
source "$(dirname "$0")/train_data.sh" "$dir/data"  # Fashion-MNIST, else a small ImageFolder
steps=14
args=(train "${data[@]}" --width 4 -b 32 --bn-splits 4 --moco-k 256 --epochs 10 --max-steps $steps
      --save-every-steps 1000 -j 2 --seed 5)
sigs="TERM INT"
if [ "${MOCO_TEST_DEVICE:-cpu}" = cuda ]; then
  source "$(dirname "$0")/gpu_probe.sh" "$moco" "$dir/probe.log"
  # smaller and shorter on the device (the emulator runs its kernels thread by thread)
  steps=8
  gpus=1  # ranks: one, or one per visible GPU under --multiprocessing-distributed, each of 32 images
  if [ "${MOCO_TEST_LAUNCH:-}" = multiprocessing-distributed ]; then
    gpus=$("$moco" info | grep -c '^device [0-9]*:' || true)
    [ "${gpus:-0}" -ge 1 ] || gpus=1
  fi
  args=(train "${data[@]}" --width 2 --image-size 16 -b $((32 * gpus)) --bn-splits 4 --moco-k $((256 * gpus))
        --epochs 10 --max-steps $steps --save-every-steps 1000 -j 2 --seed 5 --device cuda)
  sigs=TERM
  if [ "${MOCO_TEST_LAUNCH:-}" = multiprocessing-distributed ]; then args+=(--multiprocessing-distributed); fi
fi
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
if [ "${MOCO_TEST_LAUNCH:-}" = multiprocessing-distributed ]; then
  started=$(grep -o "multiprocessing-distributed: node 0 of 1 starts ranks [0-9]* to [0-9]* of [0-9]*" "$dir/a.err" ||
            true)
  [ -n "$started" ] || { echo "FAIL: the run did not start its ranks itself"; cat "$dir/a.err"; exit 1; }
  echo "ok: $started"
fi
# on the GPU the signalled runs take the first run's cuDNN plans (a search picks by timing, which can differ
# between processes); their resumes find their own beside the checkpoint
[ "${MOCO_TEST_DEVICE:-cpu}" = cuda ] && export MOCO_CONV_PLANS=$dir/a
[ -n "$mpiexec" ] && sigs=TERM
for sig in $sigs; do
  out=$dir/$sig
  "${launch[@]}" "${args[@]}" --out "$out" 2>"$out.err" &
  pid=$!
  for _ in $(seq 1 15000); do  # the signal lands mid-run: once the 3rd step is logged
    n=$(grep -c '"loss"' "$out/metrics.jsonl" 2>/dev/null || true)
    [ "${n:-0}" -ge 3 ] && break
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
  MOCO_CONV_PLANS= "${launch[@]}" "${args[@]}" --out "$out" --resume "$out/checkpoint.mocockpt" 2>"$out.resume.err" ||
    { echo "FAIL: the resume after SIG$sig failed"; cat "$out.resume.err"; failed=1; continue; }
  if [ "$(losses "$dir/a" | wc -l)" -eq $steps ] && diff <(losses "$dir/a") <(losses "$out") >/dev/null; then
    echo "ok: resumed after SIG$sig $(grep -o 'at epoch [0-9]*, step [0-9]*' "$out.resume.err"), the same $steps losses bit for bit"
  else
    echo "FAIL: the losses after resuming from SIG$sig differ"; failed=1
  fi
done
exit $failed
