#!/usr/bin/env bash
# `moco lincls --evaluate --resume PROBE`: the probe a finished run left scores the test split as that run's
# last epoch scored it (the same Acc@1 and Acc@5, printed the same way), trains nothing and writes nothing.
# A probe of another backbone or image size, and --evaluate without --resume, are refused with a message naming
# the mistake.
#   lincls_evaluate.sh <moco binary>
set -euo pipefail
source "$(dirname "$0")/moco_calls.sh" "$1"  # $moco, $dir, ${data[@]}; fail, run, expect_error

run train "${data[@]}" --device cpu --width 2 --image-size 16 -b 32 --moco-k 64 --max-steps 2 --out "$dir/train"
ck=$dir/train/checkpoint.mocockpt
args=(lincls "${data[@]}" --checkpoint "$ck" --device cpu -b 64 --train-limit 256 --test-limit 128)
run "${args[@]}" --epochs 3 --lr 0.1 --out "$dir/p"
trained=$(grep -o '^lincls_top[15] [0-9.]*' "$dir/out")
[ "$(echo "$trained" | wc -l)" -eq 2 ] || { cat "$dir/out"; fail "the training run printed no lincls_top1/top5"; }

# other training options, which do not matter to a score, and an --out that must stay unwritten; the probe's
# own folder must stay as it was too
cp -r "$dir/p" "$dir/p_before"
run "${args[@]}" --epochs 7 --lr 5 --resume "$dir/p/lincls.mocockpt" --evaluate --out "$dir/none"
evaluated=$(grep -o '^lincls_top[15] [0-9.]*' "$dir/out")
[ "$trained" = "$evaluated" ] || fail "evaluated \"$evaluated\" where the run's last epoch scored \"$trained\""
[ ! -e "$dir/none" ] || fail "--evaluate wrote $dir/none"
diff -r "$dir/p_before" "$dir/p" >/dev/null || fail "--evaluate changed the probe's folder $dir/p"
grep -q "the probe of $dir/p/lincls.mocockpt" "$dir/out" || { cat "$dir/out"; fail "the result does not name the probe"; }
echo "ok: --evaluate scores as the run's last epoch did: $(echo $evaluated)"

expect_error "give it with --resume" "${args[@]}" --evaluate
expect_error "the probe checkpoint is from another run: backbone" "${args[@]}" --random-init \
  --resume "$dir/p/lincls.mocockpt" --evaluate
expect_error "the probe checkpoint is from another run: image_size" "${args[@]}" --image-size 24 \
  --resume "$dir/p/lincls.mocockpt" --evaluate
