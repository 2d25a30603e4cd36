#!/usr/bin/env bash
# `moco bench` over several batch sizes and queue sizes in one call, with --jsonl: one JSON object per
# configuration (queue sizes outer, batch sizes inner), the same objects on stdout after "moco_bench_json",
# appended to the file by a second call, and a configuration that cannot run refused before anything runs.
# The numbers are checked against arithmetic, not against the program: img/s is batch / median step time,
# the queue's memory is K x dim fp32 values, and what is saved for backward grows with the batch.
#   bench_sweep.sh <moco binary> [cpu|cuda]      (cuda: the emulator's binary, moco_emu)
set -euo pipefail
moco=$1
device=${2:-cpu}
command -v python3 >/dev/null || { echo "skip: python3 is needed to read the JSON lines"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(bench --device "$device" -a resnet18 --width 8 --image-size 32 --moco-dim 16 --steps 1 --warmup 1)
[ "$device" = cpu ] && args+=(--bn-splits 2)

"$moco" "${args[@]}" -b 4 8 --moco-k 16 32 --jsonl "$dir/b.jsonl" >"$dir/out.txt" 2>&1 ||
  { cat "$dir/out.txt"; echo "FAIL: the sweep did not run"; exit 1; }
grep '^moco_bench_json ' "$dir/out.txt" | cut -d' ' -f2- >"$dir/stdout.jsonl"
# a second call appends to the same file
"$moco" "${args[@]}" -b 4 --moco-k 16 --jsonl "$dir/b.jsonl" >"$dir/out2.txt" 2>&1 ||
  { cat "$dir/out2.txt"; echo "FAIL: the second call did not run"; exit 1; }

python3 - "$dir/b.jsonl" "$dir/stdout.jsonl" "$device" <<'PY'
import json, sys
path, stdout_path, device = sys.argv[1:]
lines = open(path).read().splitlines()
recs = [json.loads(l) for l in lines]
assert len(recs) == 5, f"{len(recs)} records in the file, expected 4 from the sweep and 1 appended"
assert open(stdout_path).read().splitlines() == lines[:4], "stdout's JSON lines differ from the file's"
order = [(r["k"], r["batch"]) for r in recs]
assert order == [(16, 4), (16, 8), (32, 4), (32, 8), (16, 4)], f"configurations in the order {order}"
mib = 1 << 20
for r in recs:
    assert r["bench"] == "moco_step" and r["device"] == device and r["dim"] == 16, r
    assert r["timed_steps"] == 1 and r["step_ms_min"] <= r["step_ms"], r
    want = r["batch"] * 1000.0 / r["step_ms"]
    assert abs(r["img_per_s"] - want) <= 1e-5 * want, (r["img_per_s"], want)
    queue = r["k"] * 16 * 4 / mib  # K keys of dim fp32
    assert abs(r["queue_mib"] - queue) <= 1e-6 * queue, (r["queue_mib"], queue)
    phases = sum(r[p + "_ms"] for p in ("query_forward", "key_forward", "logits_loss", "backward"))
    assert 0 < phases <= r["step_ms"] * 1.01, (phases, r["step_ms"])
    if device == "cuda":
        for f in ("workspace_mib", "activations_mib", "total_mib", "conv_api", "softmax_form", "device_name"):
            assert f in r, f"no {f} in {r}"
# twice the batch saves about twice as much for backward (the same network, the same queue)
for k in (16, 32):
    small, large = (next(r for r in recs if r["k"] == k and r["batch"] == b) for b in (4, 8))
    ratio = large["saved_for_backward_mib"] / small["saved_for_backward_mib"]
    assert 1.8 <= ratio <= 2.0 + 1e-6, f"K {k}: saved for backward x{ratio:.3f} from batch 4 to 8"
print(f"ok: 4 configurations and 1 appended, {device}; img/s, queue memory and activations as computed")
PY

# tools/bench_table.py joins the records with a peer's at the same configuration: here a made-up PyTorch
# record at half moco's rate for K 16, batch 8, so its row must say 2.00x; the other rows have no peer
python3 - "$dir/b.jsonl" >>"$dir/b.jsonl" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][1]  # K 16, batch 8
peer = {k: r[k] for k in ("device", "arch", "width", "image_size", "batch", "k", "dim", "head")}
peer.update(bench="torch_step", mode="eager-fp32", img_per_s=r["img_per_s"] / 2)
print(json.dumps(peer))
PY
table=$(python3 "$(dirname "$0")/../../tools/bench_table.py" "$dir/b.jsonl") || { echo "FAIL: bench_table.py: $table"; exit 1; }
echo "$table" | grep -q "b8 K16 fc ($device) | [0-9.]* | eager-fp32 | [0-9.]* | 2.00x" ||
  { echo "$table"; echo "FAIL: bench_table.py's row for K 16, batch 8 is not 2.00x"; exit 1; }
[ "$(echo "$table" | grep -c "| none |")" = 3 ] || { echo "$table"; echo "FAIL: not 3 rows without a peer"; exit 1; }
echo "ok: bench_table.py: $(echo "$table" | grep "eager-fp32")"

# a queue smaller than a batch is refused before any configuration runs, and the file is not touched
before=$(wc -l <"$dir/b.jsonl")
if out=$("$moco" "${args[@]}" -b 4 64 --moco-k 16 --jsonl "$dir/b.jsonl" 2>&1); then
  echo "FAIL: --moco-k 16 with -b 64 was accepted: $out"; exit 1
fi
echo "$out" | grep -q -- "--moco-k 16 is smaller than --batch-size 64" || { echo "FAIL: the error was: $out"; exit 1; }
echo "$out" | grep -q '^moco_bench_json' && { echo "FAIL: a configuration ran before the refusal"; exit 1; }
[ "$(wc -l <"$dir/b.jsonl")" = "$before" ] || { echo "FAIL: the refused sweep wrote to the file"; exit 1; }
echo "ok: the refusal: $(echo "$out" | tail -1)"
