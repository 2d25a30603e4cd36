#!/usr/bin/env bash
# GPU ranks started by torchrun or srun meet at NCCL_COMM_ID, where rank 0 listens once its device step is made.
# That must come before the dataset is scanned: scanning a large image folder first could outlast the other
# ranks' connect retries. Rank 0 of 2, whose peer never joins, is given an empty data folder, which only the
# scan finds wanting: the run must end at the rendezvous's timeout (it reached the rendezvous first), not at
# the folder. The peer is simply absent (the emulated NCCL, like NCCL, listens at NCCL_COMM_ID and waits).
# Launcher variables of an enclosing job are removed, so that only this test's count.
#   rendezvous_before_data.sh <moco binary>
set -euo pipefail
moco=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
source "$(dirname "$0")/gpu_probe.sh" "$moco" "$dir/probe.log"
status=0
mkdir -p "$dir/empty-folder"
command -v python3 >/dev/null || { echo "skip: python3 is needed to find free ports"; exit 77; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
master_port=$(free_port) nccl_port=$(free_port)
env -u OMPI_COMM_WORLD_RANK -u OMPI_COMM_WORLD_SIZE -u OMPI_COMM_WORLD_LOCAL_RANK -u SLURM_STEP_NUM_TASKS \
  RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$master_port NCCL_COMM_ID=127.0.0.1:$nccl_port \
  MOCO_COMM_TIMEOUT_S=2 timeout 120 \
  "$moco" train "$dir/empty-folder" --device cuda --width 2 --image-size 16 -b 4 --moco-k 16 -a resnet18 \
  --out "$dir/run" 2>"$dir/err" || status=$?
cat "$dir/err"
[ "$status" != 0 ] || { echo "FAIL: rank 0 trained without its peer"; exit 1; }
[ "$status" != 124 ] || { echo "FAIL: the rendezvous did not end at MOCO_COMM_TIMEOUT_S"; exit 1; }
grep -q "ncclCommInitRank" "$dir/err" || { echo "FAIL: the run did not stop at the rendezvous"; exit 1; }
! grep -q "empty-folder" "$dir/err" || { echo "FAIL: the dataset was scanned before the rendezvous"; exit 1; }
echo "rank 0 reached the rendezvous before opening the dataset"
