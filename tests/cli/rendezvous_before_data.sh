#!/usr/bin/env bash
# GPU ranks started by torchrun or srun meet at NCCL_COMM_ID, where rank 0 listens once its device step is made.
# That must come before the dataset is opened: scanning a large image folder first could outlast the other
# ranks' connect retries. Rank 0 of 2, whose peer never joins, is given a data folder that does not exist: the
# run must end at the rendezvous's timeout (it reached the rendezvous first), not at the missing folder.
# On the emulator MOCO_EMU_NCCL_JOIN=never stands for the absent peer; on a GPU nobody else uses the port.
#   rendezvous_before_data.sh <moco binary>
set -euo pipefail
moco=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
source "$(dirname "$0")/gpu_probe.sh" "$moco" "$dir/probe.log"
status=0
env RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29530 NCCL_COMM_ID=127.0.0.1:29531 \
  MOCO_EMU_NCCL_JOIN=never MOCO_COMM_TIMEOUT_S=2 timeout 120 \
  "$moco" train "$dir/no-such-folder" --device cuda --width 2 --image-size 16 -b 4 --moco-k 16 -a resnet18 \
  --out "$dir/run" 2>"$dir/err" || status=$?
cat "$dir/err"
[ "$status" != 0 ] || { echo "FAIL: rank 0 trained without its peer"; exit 1; }
[ "$status" != 124 ] || { echo "FAIL: the rendezvous did not end at MOCO_COMM_TIMEOUT_S"; exit 1; }
grep -q "ncclCommInitRank" "$dir/err" || { echo "FAIL: the run did not stop at the rendezvous"; exit 1; }
! grep -q "no-such-folder" "$dir/err" || { echo "FAIL: the dataset was opened before the rendezvous"; exit 1; }
echo "rank 0 reached the rendezvous before opening the dataset"
