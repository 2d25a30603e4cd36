#!/usr/bin/env bash
# `moco lincls` stopped by SIGTERM mid-run: exit 143, a message naming the signal and the probe checkpoint,
# and a checkpoint of that step, from which --resume logs exactly the epochs (loss, Acc@1, Acc@5, best Acc@1)
# of a run that was never stopped. The backbone is a few steps of `moco train`.
#   lincls_stop_and_resume.sh <moco binary>
set -euo pipefail
moco=$1
dir=$(mktemp -d)
pid=0
trap '{ [ "$pid" -gt 0 ] && kill -9 $pid; } 2>/dev/null || true; rm -rf "$dir"' EXIT
source "$(dirname "$0")/train_data.sh" "$dir/data"  # Fashion-MNIST, else a small ImageFolder
"$moco" train "${data[@]}" --device cpu --width 2 --image-size 16 -b 32 --bn-splits 4 --moco-k 64 --max-steps 2 \
  --out "$dir/train" 2>"$dir/train.err" || { cat "$dir/train.err"; exit 1; }
epochs=40
[ ${#data[@]} -gt 0 ] && epochs=400  # the small ImageFolder: one step an epoch
args=(lincls "${data[@]}" --checkpoint "$dir/train/checkpoint.mocockpt" --device cpu --epochs $epochs -b 64 --lr 0.1
      --schedule 20 --train-limit 1024 --test-limit 256 --eval-every 3)
scores() { grep -o '"step": [0-9]*, "epoch": [0-9]*, .*' "$1/metrics.jsonl"; }

"$moco" "${args[@]}" --out "$dir/a" >"$dir/a.out" 2>"$dir/a.err" || { cat "$dir/a.err"; exit 1; }
"$moco" "${args[@]}" --out "$dir/b" >"$dir/b.out" 2>"$dir/b.err" &
pid=$!
for _ in $(seq 1 3000); do  # the signal lands mid-run: once the 2nd epoch is logged
  n=$(grep -c '"step"' "$dir/b/metrics.jsonl" 2>/dev/null || true)
  [ "${n:-0}" -ge 2 ] && break
  sleep 0.02
done
kill -s TERM $pid
rc=0
wait $pid || rc=$?
pid=0
logged=$(grep -c '"step"' "$dir/b/metrics.jsonl")
msg=$(grep -o "stopped by SIGTERM after step [0-9]* of epoch [0-9]*" "$dir/b.err" || true)
if [ $rc -ne 143 ] || [ -z "$msg" ] || [ "$logged" -ge $epochs ] || [ ! -f "$dir/b/lincls.mocockpt" ]; then
  echo "FAIL: SIGTERM -> exit $rc (wanted 143), $logged of $epochs epochs logged, message: ${msg:-<none>}"
  cat "$dir/b.err"; exit 1
fi
echo "ok: SIGTERM -> exit 143: $msg"
"$moco" "${args[@]}" --out "$dir/b" --resume "$dir/b/lincls.mocockpt" >"$dir/b2.out" 2>"$dir/b2.err" ||
  { echo "FAIL: the resume failed"; cat "$dir/b2.err"; exit 1; }
grep -q "lincls: resumed from" "$dir/b2.err" || { echo "FAIL: the resume did not say so"; cat "$dir/b2.err"; exit 1; }
if [ "$(scores "$dir/a" | wc -l)" -eq $epochs ] && diff <(scores "$dir/a") <(scores "$dir/b") >/dev/null &&
   diff "$dir/a.out" "$dir/b2.out" >/dev/null; then
  echo "ok: resumed, the same $epochs epochs logged bit for bit: $(grep lincls_top5 "$dir/b2.out")"
else
  echo "FAIL: the resumed run's epochs or result differ"; diff <(scores "$dir/a") <(scores "$dir/b") | head; exit 1
fi
