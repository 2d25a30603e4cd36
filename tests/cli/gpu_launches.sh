#!/usr/bin/env bash
# `moco train --device cuda` on 2 GPU ranks, started each way a user starts them, must train the same steps:
#   - `moco train --multiprocessing-distributed` (the authors' flag: this program starts one rank per GPU);
#   - torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) with NCCL_COMM_ID, as
#     docs/distributed.md gives them, for two processes started here;
#   - srun's variables (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID) with NCCL_COMM_ID, likewise;
#   - the authors' two-node command line (--multiprocessing-distributed --world-size 2 --rank 0|1 --dist-url),
#     two "nodes" of one GPU each (on the emulator only);
#   - mpirun, where NCCL's id travels over MPI (when an mpiexec is given).
# Every launch but mpirun meets at NCCL_COMM_ID, so NCCL's own rendezvous starts their ranks' communicator. The
# losses logged must be the same bit for bit: the same shards, shuffle and all-reduce, whichever launcher.
#   gpu_launches.sh <moco binary> [mpiexec]      (needs 2 GPUs on the node; exit 77 without python3)
# On the CUDA emulator (ctest emu.cli.gpu_launches) the 2 ranks are 2 processes, each with its own emulated
# device (MOCO_EMU_DEVICES=2); their NCCL traffic goes over TCP at NCCL_COMM_ID, or over MPI under mpirun.
set -euo pipefail
moco=$1
mpiexec=${2:-}
dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
gpus=$("$moco" info 2>/dev/null | grep -c '^device [0-9]*:' || true)
[ "${gpus:-0}" -ge 2 ] || { echo "skip: 2 GPUs are needed, $moco sees ${gpus:-0}"; exit 77; }
# --multiprocessing-distributed starts a rank per visible GPU: exactly 2 of a larger node's
if [ "$gpus" -gt 2 ]; then export CUDA_VISIBLE_DEVICES=0,1; fi
# a rank whose partner failed waits this long (the emulated NCCL's join) rather than the test's whole limit
export MOCO_EMU_NCCL_JOIN_TIMEOUT_S=${MOCO_EMU_NCCL_JOIN_TIMEOUT_S:-60}
python3 "$(dirname "$0")/write_test_images.py" "$dir/data" ||
  { echo "python3 is needed to write the images: skipped"; exit 77; }
# cuDNN's algorithms are chosen by timing, process by process, and two algorithms may round apart (on the
# emulator only the stem's two forms do): the later launches take the first one's plans, rank by rank.
export MOCO_STEM_FORM=direct
# 64 images, 8 per rank and step: 4 steps
args=(train "$dir/data" --device cuda -a resnet18 --width 8 --image-size 32 --recipe small --bn-splits 1
      --moco-k 64 --moco-dim 16 --seed 3)
losses() { grep -o '"step": [0-9]*, "epoch": [0-9]*, "loss": [^,]*' "$1/metrics.jsonl"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
failed=0

# --multiprocessing-distributed: -b and -j are the node's, shared out among its 2 processes
"$moco" "${args[@]}" --epochs 1 -b 16 -j 2 --multiprocessing-distributed --out "$dir/mpd" 2>"$dir/mpd.err" ||
  { cat "$dir/mpd.err"; echo "FAIL: the --multiprocessing-distributed run failed"; exit 1; }
grep -q "NCCL over 2 ranks" "$dir/mpd.err" || { cat "$dir/mpd.err"; echo "FAIL: not NCCL over 2 ranks"; exit 1; }
[ "$(losses "$dir/mpd" | wc -l)" -eq 4 ] || { echo "FAIL: $(losses "$dir/mpd" | wc -l) steps logged, not 4"; exit 1; }
echo "ok: --multiprocessing-distributed trained 4 steps on 2 ranks; losses:" $(losses "$dir/mpd" | grep -o '[0-9.]*$')
for r in 0 1; do
  [ -s "$dir/mpd/conv_plans.rank$r.txt" ] || { echo "FAIL: rank $r kept no conv_plans.rank$r.txt"; exit 1; }
done
export MOCO_CONV_PLANS=$dir/mpd

# Two processes started here with one launcher's variables ($1: torchrun or srun), meeting at NCCL_COMM_ID.
two_ranks() {
  local kind=$1 out=$dir/$1 port nccl_port
  port=$(free_port)
  nccl_port=$(free_port)  # torchrun's own rendezvous holds MASTER_PORT; NCCL's needs another
  pids=()
  for r in 0 1; do
    if [ "$kind" = torchrun ]; then
      RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port NCCL_COMM_ID=127.0.0.1:$nccl_port \
        "$moco" "${args[@]}" --epochs 1 -b 8 -j 1 --out "$out" 2>"$out.rank$r.err" &
    else
      SLURM_PROCID=$r SLURM_STEP_NUM_TASKS=2 SLURM_LOCALID=$r SLURM_NTASKS=2 NCCL_COMM_ID=127.0.0.1:$port \
        "$moco" "${args[@]}" --epochs 1 -b 8 -j 1 --out "$out" 2>"$out.rank$r.err" &
    fi
    pids+=($!)
  done
  local rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  pids=()
  if [ $rc -ne 0 ]; then
    cat "$out".rank*.err
    echo "FAIL: a rank of the $kind-style launch failed"
    failed=1
    return
  fi
  grep -q "NCCL over 2 ranks" "$out.rank0.err" || { echo "FAIL: $kind: not NCCL over 2 ranks"; failed=1; return; }
  grep -q "convolution plans from $dir/mpd/conv_plans.rank0.txt" "$out.rank0.err" ||
    { echo "FAIL: $kind: the first launch's convolution plans were not taken"; failed=1; return; }
  if diff <(losses "$dir/mpd") <(losses "$out") >/dev/null; then
    echo "ok: the $kind-style launch logged the same 4 losses, bit for bit"
  else
    echo "FAIL: the $kind-style launch's losses differ:"; diff <(losses "$dir/mpd") <(losses "$out") || true; failed=1
  fi
}
two_ranks torchrun
two_ranks srun

# The authors' two-node command line, both "nodes" here with one GPU each: --world-size counts nodes, --rank
# is the node, --dist-url names node 0, and -b is each node's batch. On the emulator each node is given its
# own device count and host name (MOCO_EMU_DEVICES, MOCO_EMU_HOSTNAME); on a real node the two would share
# its GPUs, so this launch needs the emulator.
if "$moco" info 2>/dev/null | grep -q "CUDA kernel emulator"; then
  port=$(free_port)
  pids=()
  for node in 0 1; do
    MOCO_EMU_DEVICES=1 MOCO_EMU_HOSTNAME=node$node "$moco" "${args[@]}" --epochs 1 -b 8 -j 1 --multiprocessing-distributed \
      --world-size 2 --rank $node --dist-url tcp://127.0.0.1:$port --out "$dir/nodes" 2>"$dir/nodes.$node.err" &
    pids+=($!)
  done
  rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  pids=()
  if [ $rc -ne 0 ]; then
    cat "$dir"/nodes.*.err; echo "FAIL: a node of the two-node launch failed"; failed=1
  elif ! grep -q "node 1 of 2 starts ranks 1 to 1 of 2" "$dir/nodes.1.err"; then
    cat "$dir/nodes.1.err"; echo "FAIL: node 1 did not start rank 1 of 2"; failed=1
  elif diff <(losses "$dir/mpd") <(losses "$dir/nodes") >/dev/null; then
    echo "ok: two nodes of one GPU each (--world-size 2 --rank 0/1 --dist-url) logged the same 4 losses, bit for bit"
  else
    echo "FAIL: the two-node launch's losses differ:"; diff <(losses "$dir/mpd") <(losses "$dir/nodes") || true
    failed=1
  fi
fi

# A rank killed mid-run (as the out-of-memory killer would): the --multiprocessing-distributed parent says
# which and how, stops the other, and exits non-zero; any rank's error names a checkpoint only if one exists.
MOCO_COMM_TIMEOUT_S=30 "$moco" "${args[@]}" -b 16 -j 2 --multiprocessing-distributed --epochs 50 \
  --out "$dir/killed" 2>"$dir/killed.err" &
parent=$!
pids=($parent)
for _ in $(seq 600); do grep -q '"loss"' "$dir/killed/metrics.jsonl" 2>/dev/null && break; sleep 0.2; done
victim=$(pgrep -P $parent | tail -1)
[ -n "$victim" ] && kill -9 "$victim"
start=$(date +%s)
rc=0
wait $parent || rc=$?
pids=()
took=$(( $(date +%s) - start ))
if [ $rc -eq 0 ] || ! grep -q "local rank [0-9]* (pid $victim) was killed by SIGKILL" "$dir/killed.err"; then
  cat "$dir/killed.err"; echo "FAIL: a killed rank was not reported (exit $rc)"; failed=1
elif [ -e "$dir/killed/checkpoint.mocockpt" ] && grep -q "no checkpoint was written yet" "$dir/killed.err"; then
  echo "FAIL: an error says no checkpoint was written, but one was"; failed=1
elif [ ! -e "$dir/killed/checkpoint.mocockpt" ] && grep -q "last good checkpoint is" "$dir/killed.err"; then
  echo "FAIL: an error names a checkpoint that was never written"; failed=1
else
  echo "ok: a rank killed: the parent named it and ended the run in ${took}s (exit $rc)"
fi

if [ -n "$mpiexec" ]; then
  if "$mpiexec" -n 2 "$moco" "${args[@]}" --epochs 1 -b 8 -j 1 --out "$dir/mpirun" 2>"$dir/mpirun.err"; then
    if diff <(losses "$dir/mpd") <(losses "$dir/mpirun") >/dev/null; then
      echo "ok: mpirun (NCCL's id over MPI) logged the same 4 losses, bit for bit"
    else
      echo "FAIL: mpirun's losses differ:"; diff <(losses "$dir/mpd") <(losses "$dir/mpirun") || true; failed=1
    fi
  else
    cat "$dir/mpirun.err"; echo "FAIL: the mpirun launch failed"; failed=1
  fi
fi
exit $failed
