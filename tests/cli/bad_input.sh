#!/usr/bin/env bash
# Bad input to `moco`: each case must exit non-zero with a one-line error naming the bad value, and must
# not overwrite anything that was there.
#   bad_input.sh <moco binary>
set -uo pipefail
moco=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failed=0
# expect <substring the error must contain> <args...>
expect() {
  local want=$1
  shift
  local out
  out=$("$moco" "$@" 2>&1 >/dev/null)
  local rc=$?
  local err
  err=$(printf '%s\n' "$out" | grep 'moco: error:' | tail -1)
  if [ $rc -eq 0 ] || [ -z "$err" ] || [[ "$err" != *"$want"* ]]; then
    echo "FAIL: moco $* -> exit $rc, error: ${err:-<none>} (wanted '$want')"
    failed=1
  else
    echo "ok: moco $* -> $err"
  fi
}
mkdir -p "$dir/empty" "$dir/tiny/cls" "$dir/out"
printf 'not an image' >"$dir/tiny/cls/a.jpg"
printf 'still not'    >"$dir/tiny/cls/b.png"

expect "/no/such/folder" train /no/such/folder --out "$dir/out/missing"
expect "$dir/empty" train "$dir/empty" --out "$dir/out/empty"
[ ! -e "$dir/out/missing" ] || { echo "FAIL: a missing DATA folder left its --out folder behind"; failed=1; }
expect "'--bogus'" train --bogus 3
expect "'12x'" train -b 12x
expect "--lr" train --lr -1
expect "--moco-t" train --moco-t 0
expect "--bn-splits" train -b 30 --bn-splits 8
expect "larger than the dataset" train "$dir/tiny" -b 8 --out "$dir/out/t"
expect "--device" train --device tpu
expect "--precision" train --precision fp16
expect "--device" bench --device tpu
expect "--precision" bench --precision int8
expect "unknown command 'trian'" trian
version=$("$moco" --version 2>&1) && [[ $version == "moco "[0-9]* ]] ||
  { echo "FAIL: moco --version -> '$version'"; failed=1; }
expect "--checkpoint" knn
expect "missing.mocockpt" knn --checkpoint "$dir/missing.mocockpt"
printf 'garbage' >"$dir/garbage.mocockpt"
expect "not a moco checkpoint" export --checkpoint "$dir/garbage.mocockpt" --out "$dir/x.safetensors"
expect "Not a directory" train --out /etc/hostname/run
expect "--out must name a folder" train --out ""
expect "is not a file" knn --checkpoint "$dir"
expect "takes --checkpoint or --pretrained, not both" knn --checkpoint "$dir/a" --pretrained "$dir/b"
expect "missing.safetensors" lincls --pretrained "$dir/missing.safetensors"
expect "with --pretrained there is no seed" knn --pretrained "$dir/garbage.mocockpt" --random-init
expect "--knn-feature head needs --checkpoint" knn --pretrained "$dir/x.safetensors" --knn-feature head
expect "--knn-feature fc: expected backbone" knn --knn-feature fc --checkpoint "$dir/missing.mocockpt"
expect "--knn-feature pool: expected backbone" train --knn-feature pool --knn-every 1
expect "is not a moco probe checkpoint" lincls --checkpoint "$dir/garbage.mocockpt" --resume "$dir/garbage.mocockpt"
expect "--aug-plus asks for the v2 augmentation, but --recipe is v1" train --aug-plus --recipe v1
expect "--gpu 0 names a GPU, but --device is cpu" train --gpu 0 --device cpu
expect "--dist-url ftp://x: expected tcp://HOST:PORT" train --multiprocessing-distributed --dist-url ftp://x
expect "$dir/empty" bench --data "$dir/empty"
expect "recipe 'v3'" bench --data "$dir/tiny" --recipe v3
# settings of the environment: named with their value
MOCO_THREADS=two expect "MOCO_THREADS=two" train /no/such/folder --out "$dir/out/threads"
MOCO_THREADS=0 expect "MOCO_THREADS=0" info
MOCO_RESIZE_AS_PILLOW=9 expect "MOCO_RESIZE_AS_PILLOW=9" bench --data "$dir/tiny"
[ ! -e "$dir/out/threads" ] || { echo "FAIL: a bad MOCO_THREADS left its --out folder behind"; failed=1; }

# resume with a damaged checkpoint: refused, and the run folder is left exactly as it was
root=${MOCO_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
if [ -f "$root/train-images-idx3-ubyte.gz" ]; then
  run="$moco train --width 2 -b 16 --bn-splits 2 --moco-k 64 --epochs 1 --max-steps 2 --out $dir/run"
  $run 2>/dev/null || { echo "FAIL: the reference run did not complete"; failed=1; }
  ck="$dir/run/checkpoint.mocockpt"
  before=$(cat "$ck" "$dir/run/metrics.jsonl" | md5sum)
  head -c 1000 "$ck" >"$dir/trunc.mocockpt"
  expect "truncated" train --width 2 -b 16 --bn-splits 2 --moco-k 64 --epochs 1 --out "$dir/run" --resume "$dir/trunc.mocockpt"
  cp "$ck" "$dir/flip.mocockpt"
  printf '\x55' | dd of="$dir/flip.mocockpt" bs=1 seek=5000 conv=notrunc 2>/dev/null
  expect "checksum" train --width 2 -b 16 --bn-splits 2 --moco-k 64 --epochs 1 --out "$dir/run" --resume "$dir/flip.mocockpt"
  expect "width=2" train --width 4 -b 16 --bn-splits 2 --moco-k 64 --epochs 1 --out "$dir/run" --resume "$ck"
  expect "already holds a run" train --width 2 -b 16 --bn-splits 2 --moco-k 64 --epochs 1 --out "$dir/run"
  after=$(cat "$ck" "$dir/run/metrics.jsonl" | md5sum)
  [ "$before" = "$after" ] && echo "ok: the run folder is unchanged" || { echo "FAIL: the run folder changed"; failed=1; }
  # the schedule may change on a resume (as past a divergence), and the run says so
  out=$($run --max-steps 3 --lr 0.01 --resume "$ck" 2>&1)
  if [[ "$out" == *"resumed with lr 0.01 instead of the checkpoint's 0.06"* ]] && \
     [ "$(grep -c '"loss"' "$dir/run/metrics.jsonl")" = 3 ]; then
    echo "ok: a resume with another --lr runs on and names the change"
  else
    echo "FAIL: a resume with another --lr: $(printf '%s' "$out" | tail -2)"; failed=1
  fi
  # so may the Pillow whose resize the views follow, and the run says so too
  out=$(MOCO_RESIZE_AS_PILLOW=12 $run --max-steps 4 --lr 0.01 --resume "$ck" 2>&1)
  if [[ "$out" == *"resumed with resize_as_pillow 12 instead of the checkpoint's 13"* ]]; then
    echo "ok: a resume with another MOCO_RESIZE_AS_PILLOW names the change"
  else
    echo "FAIL: a resume with MOCO_RESIZE_AS_PILLOW=12: $(printf '%s' "$out" | tail -2)"; failed=1
  fi
  # Fashion-MNIST's default cosine schedule gives way to a given --schedule
  "$moco" train --width 2 -b 16 --bn-splits 2 --moco-k 64 --epochs 1 --max-steps 1 --schedule 1 \
    --out "$dir/steps" >/dev/null 2>&1
  if grep -q '"cos": "0"' "$dir/steps/metrics.jsonl" 2>/dev/null && grep -q '"schedule": "1"' "$dir/steps/metrics.jsonl"; then
    echo "ok: --schedule turns Fashion-MNIST's default cosine schedule off"
  else
    echo "FAIL: --schedule with Fashion-MNIST: $(head -1 "$dir/steps/metrics.jsonl" 2>/dev/null)"; failed=1
  fi
  # --start-epoch counts the epochs it skips as done: 3750 steps of 16 a Fashion-MNIST epoch, then 2 more
  "$moco" train --width 2 -b 16 --bn-splits 2 --moco-k 64 --start-epoch 1 --epochs 2 --max-steps 3752 \
    --out "$dir/later" >/dev/null 2>&1
  got=$(grep '"loss"' "$dir/later/metrics.jsonl" 2>/dev/null | grep -oE '"step": [0-9]+, "epoch": [0-9]+' | tr '\n' ' ')
  if [ "$got" = '"step": 3751, "epoch": 1 "step": 3752, "epoch": 1 ' ]; then
    echo "ok: --start-epoch 1 numbers its steps after the skipped epoch"
  else
    echo "FAIL: --start-epoch 1 logged: ${got:-nothing}"; failed=1
  fi
  # the data-path benchmark: a rate per worker count, and a refusal when the data set is too small for it
  out=$("$moco" bench --data fashion-mnist --recipe small --image-size 32 -b 64 --steps 2 --warmup 1 -j 2 2>&1)
  if [[ "$out" == *"workers   2, whole views"*"images/s"*"workers   2, crops"*"images/s"* ]]; then
    echo "ok: bench --data -> $(echo "$out" | tail -2 | tr '\n' ' ')"
  else echo "FAIL: bench --data printed: $out"; failed=1; fi
  expect "fewer than --warmup 1 + --steps 100000" bench --data fashion-mnist --recipe small --image-size 32 -b 64 --steps 100000 --warmup 1
else
  echo "Fashion-MNIST not installed: checkpoint cases not run"
fi
exit $failed
