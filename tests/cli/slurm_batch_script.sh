#!/usr/bin/env bash
# `moco train` run by a SLURM batch script itself, outside srun: the process sees the job's SLURM_NTASKS=4 and
# SLURM_PROCID=0 but no step of its own (no SLURM_STEP_NUM_TASKS), and no task starts beside it. It must train
# as one rank, and say why and how to start every task, instead of taking four ranks and waiting for peers.
# Launcher variables of an enclosing job are removed, so that only this test's count.
#   slurm_batch_script.sh <moco binary>
set -euo pipefail
moco=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
source "$(dirname "$0")/train_data.sh" "$dir/data"  # Fashion-MNIST, else a small ImageFolder
status=0
env -u SLURM_STEP_NUM_TASKS -u OMPI_COMM_WORLD_RANK -u OMPI_COMM_WORLD_SIZE -u OMPI_COMM_WORLD_LOCAL_RANK \
  -u RANK -u WORLD_SIZE -u LOCAL_RANK SLURM_JOB_ID=77 SLURM_NTASKS=4 SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NODEID=0 \
  timeout 120 \
  "$moco" train "${data[@]}" --device cpu --width 2 --image-size 16 -b 16 --moco-k 64 --epochs 1 --max-steps 1 -j 1 \
  --out "$dir/run" 2>"$dir/err" || status=$?
[ "$status" = 0 ] || { cat "$dir/err"; echo "FAIL: the batch script's process exited with $status"; exit 1; }
grep -q '"world_size": *1\b' "$dir/run/metrics.jsonl" ||
  { head -n 1 "$dir/run/metrics.jsonl"; echo "FAIL: expected world_size 1 in the run's configuration"; exit 1; }
grep -q "SLURM_NTASKS=4 but this process was not started by srun" "$dir/err" ||
  { cat "$dir/err"; echo "FAIL: no note about the job's other tasks"; exit 1; }
echo "one rank outside srun, with the note: $(grep -o 'SLURM_NTASKS=4 but[^;]*' "$dir/err")"
