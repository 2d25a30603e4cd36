#!/usr/bin/env bash
# On the GPU machine: report the machine, run the gpu tests, the kernel benchmarks and whole MoCo steps
# beside the PyTorch peer, write the full logs into OUT_DIR and print a short table last (the ratios
# included).
#
#   bash tools/build-device.sh device-bundle                  # here: binaries + the libraries they need
#   bash tools/device-run.sh device-bundle OUT_DIR [PART...]  # there, from the repository root
#
# Where only the archive travelled (build-pack/device-bundle.tar.xz), this script unpacks it. With no binaries
# at all (and no cmake and nvcc to build them there) it stops at once, saying so, rather than spend the GPU's
# minutes on the PyTorch peer alone.
#
# PARTs (default: all of them, in this order): env tests train kernels steps-v2 steps-v1 steps-compile; and
# three short ones for a first run on little GPU time: `core`, the benchmarks behind the issue's targets
# (bench_moco_logits, bench_softmax_xent with its study bench_softmax_forms, bench_flat_update),
# bench_batchnorm_nhwc (BN is most of the step) and bench_train_feed; `headline`, the MoCo v2 step at batch
# 256 against the PyTorch twin, eager and torch.compile; and `op-times` (below). Where the GPU machine is lent for minutes, the first call is
#   env tests headline core op-times     (459 s on an H100 with DEVICE_RUN_BUDGET_S=510): the tests, v2 b256
#                                        against eager, the core benchmarks, v2 b256 against torch.compile,
#                                        and where the b256 step's time goes
# and the rest, when time is left: env train kernels steps-v2 | env steps-v1 steps-compile.
# `step-profile` asks what bounds the step: `moco bench` at batch 32 and 256 with each cuDNN API, printing how
# long the host takes to issue the step against the device's time, and, for the default API, each
# convolution's plan and the device's time per kind of op (conv, BN, ...); then batch 256 with
# --recompute-bn-relu and with MOCO_SOFTMAX_FORM=cluster, each beside auto. `op-times` is the part of it that
# fits after a first call's other parts: batch 256 on the default API, with its time per kind of op.
# DEVICE_RUN_BUDGET_S (default 540) bounds one call: a step that would run past it is skipped and says so.
# DEVICE_RUN_TEST_FILTER (a gtest filter) narrows `tests`; DEVICE_RUN_BENCHES (names) replaces the benchmark
# list of `core` and `kernels`: a short call that checks one change. DEVICE_RUN_BATCHES (default "32 64 128
# 256") narrows the batches of steps-v2 and steps-v1.
#
# OUT_DIR ends up holding three files, for a GPU machine whose files come back only a few at a time:
# table.txt (the short table), bench-record.md (the same as a record for bench/results/) and logs.tar.gz (every
# log).
#
# BUILD_DIR may also be a build folder; without binaries in it the script builds REPO/build-device there
# when cmake and nvcc are available. Never changes clocks, power limits or the GPU's state.
set -u

usage() { echo "usage: bash tools/device-run.sh BUILD_DIR OUT_DIR [env|tests|train|kernels|core|headline|steps-v2|steps-v1|steps-compile|step-profile|op-times ...]" >&2; exit 2; }
[ $# -ge 2 ] || usage
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$1
build_arg=$1  # as given, for the record's command line
out=$2
shift 2
parts=" ${*:-env tests train kernels steps-v2 steps-v1 steps-compile} "
for p in $parts; do
  case $p in env|tests|train|kernels|core|headline|steps-v2|steps-v1|steps-compile|step-profile|op-times) ;; *) usage ;; esac
done
want() { [[ $parts == *" $1 "* ]]; }
deadline=$(( $(date +%s) + ${DEVICE_RUN_BUDGET_S:-540} ))
# seconds a step may take: its own limit, or what is left of the budget (0: skip it)
limit() { local left=$(( deadline - $(date +%s) - 10 )); (( left < 20 )) && { echo 0; return; }; (( left < $1 )) && echo $left || echo $1; }
mkdir -p "$out" || { echo "cannot create $out" >&2; exit 2; }
out=$(cd "$out" && pwd)
[ -d /usr/local/cuda/bin ] && export PATH=/usr/local/cuda/bin:$PATH

declare -a T_STEP T_RC T_NOTE   # the closing table
benches="bench_moco_logits bench_softmax_xent bench_softmax_forms bench_flat_update bench_batchnorm_nhwc bench_conv bench_comm bench_input_path bench_knn_vote bench_train_feed"
core_benches="bench_moco_logits bench_softmax_xent bench_softmax_forms bench_flat_update bench_batchnorm_nhwc bench_train_feed"
studies="bench_softmax_forms"  # of the lists above: a bundle may lack them (no emulated build)

row() { T_STEP+=("$1"); T_RC+=("$2"); T_NOTE+=("$3"); }
rows() { for i in "${!T_STEP[@]}"; do printf '%-22s %4s  %s\n' "${T_STEP[$i]}" "${T_RC[$i]}" "${T_NOTE[$i]}"; done; }

# ---- 1. the machine ------------------------------------------------------------------------------------------
env_log=$out/environment.log
{
  echo "== date";   date -u +%Y-%m-%dT%H:%M:%SZ
  echo "== commit"; git -C "$repo" rev-parse HEAD 2>/dev/null || echo "(no git metadata in this copy)"
  echo "== nvidia-smi"; nvidia-smi 2>&1 || echo "nvidia-smi failed"
  echo "== nvidia-smi -q (clocks, power)"; nvidia-smi -q -d CLOCK,POWER 2>&1 | head -60
  echo "== nvcc --version"; nvcc --version 2>&1 || echo "nvcc not found"
  echo "== python3 / torch"
  python3 -c 'import torch;print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version())' 2>&1
  echo "== ldconfig: cuDNN, cuBLAS, NCCL, cudart"
  ldconfig -p 2>/dev/null | grep -E 'libcudnn\.so|libcublas(Lt)?\.so|libnccl\.so|libcudart\.so' || echo "(none registered)"
  echo "== /usr/local/cuda"; ls -ld /usr/local/cuda* 2>&1
} >"$env_log" 2>&1

# The NVIDIA wheels of the Python environment (cuDNN, cuBLAS, NCCL, ...): every folder under the `nvidia`
# package that holds shared libraries (nvidia/<lib>/lib, and nvidia/cu13/lib for the CUDA 13 wheels).
wheel_libs=$(python3 - 2>/dev/null <<'PY'
import glob, os
try:
    import nvidia
except Exception:
    raise SystemExit(0)
dirs = []
for base in list(nvidia.__path__):
    for root, subdirs, files in os.walk(base):
        if root[len(base):].count(os.sep) > 3:
            subdirs[:] = []
            continue
        if any(".so" in f for f in files) and root not in dirs:
            dirs.append(root)
print(":".join(sorted(dirs)))
PY
)
if [ -n "$wheel_libs" ]; then
  export LD_LIBRARY_PATH=$wheel_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
{
  echo "== LD_LIBRARY_PATH"; echo "${LD_LIBRARY_PATH:-(empty)}"
  echo "== libraries in the wheels"
  IFS=: read -ra wheel_dirs <<<"$wheel_libs"
  for d in "${wheel_dirs[@]}"; do
    for f in "$d"/*cudnn*.so* "$d"/*cublas*.so* "$d"/*nccl*.so* "$d"/*cudart*.so*; do [ -e "$f" ] && echo "$f"; done
  done
} >>"$env_log" 2>&1
gpu_name=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
row "environment" 0 "${gpu_name:-nvidia-smi failed}; logs in $env_log"

# ---- 2. the binaries: a bundle from tools/build-device.sh (or a build folder), else build here --------------
# The bundle travels packed (build-pack/BUNDLE.tar.xz); unpack it where it is asked for when it is not there.
pack=$repo/build-pack/$(basename "$build").tar.xz
if [ ! -e "$build" ] && [ -f "$pack" ]; then
  tar xJf "$pack" -C "$(dirname "$build")" && row "bundle" 0 "unpacked $pack"
fi
if [ -x "$build/moco" ] && [ -x "$build/moco_gpu_tests" ]; then
  row "binaries" 0 "from $build (commit $(cat "$build/COMMIT" 2>/dev/null || echo '?'))"
elif command -v cmake >/dev/null && command -v nvcc >/dev/null; then
  echo "no binaries in $build: building $repo/build-device" >&2
  build_log=$out/build.log
  ( cmake -S "$repo" -B "$repo/build-device" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a &&
    cmake --build "$repo/build-device" -j16 ) >"$build_log" 2>&1
  rc=$?
  row "build (here)" $rc "$build_log"
  if [ $rc -eq 0 ]; then build=$repo/build-device; fi
else
  row "binaries" 1 "none in $build, and cmake/nvcc are missing here"
fi
# Without binaries nothing below can run but the PyTorch peer, whose minutes would buy nothing: stop here.
if [ ! -x "$build/moco" ] || [ ! -x "$build/moco_gpu_tests" ]; then
  rows
  echo "device-run: no moco binaries in $build and none built here: make them with tools/build-device.sh and" \
       "bring its build-pack/ folder to this machine (or pass a build folder); nothing else was run" >&2
  exit 2
fi
build=$(cd "$build" && pwd)
# the bundle's own copies of OpenBLAS, stb, zlib (see tools/build-device.sh)
[ -d "$build/lib" ] && export LD_LIBRARY_PATH=$build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# the toolkit's own runtime libraries last, for any the wheels lack (cudart is one on some images)
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d
done

# which libraries the binaries resolve to (a "not found" here explains every failure below)
ldd_log=$out/ldd.log
for b in moco moco_gpu_tests $benches; do
  [ -x "$build/$b" ] && { echo "== ldd $b"; ldd "$build/$b" | grep -E 'cud|cublas|nccl|not found'; }
done >"$ldd_log" 2>&1
if grep -q "not found" "$ldd_log"; then row "libraries" 1 "a library is not found: see $ldd_log"
else row "libraries" 0 "all resolved: $ldd_log"; fi
# the versions they report at run time beside those built against, and the devices moco sees
info_log=$out/moco_info.log
timeout 30 "$build/moco" info >"$info_log" 2>&1
row "moco info" $? "$(grep -E '^libraries:' "$info_log" | cut -c12-150)"

# Runs "$@" under the budget with limit $1 seconds (shifted off); rc 124 when skipped or cut.
bounded() {
  local t; t=$(limit "$1"); shift
  (( t == 0 )) && { echo "skipped: the call's budget (DEVICE_RUN_BUDGET_S) is spent"; return 124; }
  timeout "$t" "$@"
}

# ---- whole MoCo steps: the engine and its PyTorch peer, same configuration, same machine, same minute -------
# ResNet-50 at 224 px, K 65536, one BN group per GPU; v1 (fc head, T 0.07) and v2 (MLP head, T 0.2). Each
# engine run is followed at once by the peer's (an engine log of this call for the same head and batch is
# reused: the compile pair after the eager one); the ratio lines collect in step-ratios.txt. Run below: the
# headline right after the tests, the sweeps (steps-*) last.
ratios=$out/step-ratios.txt
: >"$ratios"
have_torch=0
python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null && have_torch=1
step_pair() {  # head batch mode(eager|compile)
  local head=$1 bs=$2 mode=$3 mlp="" flags="--amp --channels-last"
  [ "$head" = v2 ] && mlp="--mlp"
  [ "$mode" = compile ] && flags="$flags --compile"
  local ours=$out/moco_bench_${head}_b${bs}.log peer=$out/torch_peer_${head}_b${bs}_${mode}.log
  if [ ! -f "$ours" ]; then  # once per call, even if it failed (a second try would fail the same way)
    bounded 150 "$build/moco" bench --device cuda -a resnet50 --image-size 224 -b "$bs" --moco-k 65536 $mlp \
      --steps 20 --warmup 5 --jsonl "$out/steps.jsonl" >"$ours" 2>&1
    row "moco bench $head b$bs" $? "$(grep -o 'img_per_s [0-9.]*' "$ours") $(grep -o 'total [0-9.]*' "$ours" | head -1)"
  fi
  [ $have_torch = 1 ] || { row "torch_peer" 127 "PyTorch with CUDA not available"; return; }
  bounded 300 python3 "$repo/tools/torch_twin.py" bench --device cuda --arch resnet50 $mlp --image-size 224 \
    -b "$bs" --moco-k 65536 --bn-splits 1 --steps 20 --warmup 5 $flags --jsonl "$out/steps.jsonl" >"$peer" 2>&1
  row "torch $mode $head b$bs" $? "$(grep -o 'img_per_s [0-9.]*' "$peer") $(grep -o 'peak_memory_mib [0-9.]*' "$peer")"
  awk -v head="$head" -v bs="$bs" -v mode="$mode" '
    FNR == 1 { f++ }
    f == 1 && /img_per_s/ { for (i = 1; i < NF; i++) if ($i == "img_per_s") a = $(i + 1) }
    f == 1 && /memory MiB/ { for (i = 1; i < NF; i++) if ($i == "total") am = $(i + 1) }
    f == 2 && /img_per_s/ { for (i = 1; i < NF; i++) if ($i == "img_per_s") b = $(i + 1) }
    f == 2 && /peak_memory_mib/ { bm = $2 }
    END { if (a && b) printf "%-3s b%-4s vs torch %-8s moco %8.1f img/s  torch %8.1f img/s  ratio %.2fx   memory moco %8.1f MiB  torch %8.1f MiB\n",
                              head, bs, mode, a, b, a / b, am, bm }' "$ours" "$peer" >>"$ratios"
}

# ---- 3. the gpu-labelled tests: the gtest binary itself (ctest files hold another machine's paths) ---------
if want tests; then
  test_log=$out/moco_gpu_tests.log
  # with `headline` in the same call the tests leave it time: at most 240 s, else 420 s
  tests_limit=420
  want headline && tests_limit=240
  # the never-joining NCCL rank runs alone after the rest, under its own short limit: it is the first test of
  # real NCCL's abort during a join, and if that hangs it must not take the other tests with it
  lone=GpuCommunicator.ARankThatNeverJoinsEndsTheWaitAtTheTimeout
  # A test that kills the process (a segfault, an abort) would take every later test with it: the binary is
  # then run again without the tests that already reported and the one that died, a few times at most.
  tests_end=$(( $(date +%s) + tests_limit ))
  excluded=$lone
  : >"$test_log"
  for attempt in 1 2 3 4 5; do
    left=$(( tests_end - $(date +%s) ))
    (( left < 20 )) && { rc=124; break; }
    bounded $left "$build/moco_gpu_tests" --gtest_filter="${DEVICE_RUN_TEST_FILTER:-*}-$excluded" >>"$test_log" 2>&1
    rc=$?
    case $rc in 0|1|124) break ;; esac
    died=$(grep -E '^\[ RUN      \]' "$test_log" | tail -1 | awk '{print $4}')
    row "  died (rc $rc)" $rc "${died:-before its first test}"
    excluded="$excluded:$(grep -E '^\[ +(RUN|OK|FAILED|SKIPPED) +\] [A-Za-z]' "$test_log" | awk '{print $4}' | sort -u | paste -sd:)"
    deaths=$(( ${deaths:-0} + 1 ))
  done
  (( ${deaths:-0} > 0 && rc == 0 )) && rc=1
  summary=$(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ tests?|^skipped' "$test_log" | tr '\n' ' ')
  # cut by its limit: say how far it got
  [ $rc -eq 124 ] && summary="stopped at its limit after $(grep -c '^\[       OK \]' "$test_log") passed and $(grep -c '^\[  FAILED  \]' "$test_log") failed; last: $(grep -E '^\[ RUN' "$test_log" | tail -1 | cut -c14-)"
  row "moco_gpu_tests" $rc "$summary"
  while read -r line; do row "  failed" 1 "$line"; done < <(grep -E '^\[  FAILED  \]' "$test_log" | head -20)
  # the whole step against the CPU's with every convolution on cuDNN's graph API
  graph_log=$out/graph_api_step.log
  MOCO_CONV_API=graph bounded 90 "$build/moco_gpu_tests" \
    --gtest_filter=GpuMocoStep.Fp32StepMatchesTheCpuStep:GpuMocoStep.Fp32GradientIsTight:GpuMocoStep.Bf16StepTracksTheCpuStep:GpuMocoStep.NothingIsAllocatedAfterWarmUp:GpuTrainStep.CropsAndDecisionsGiveTheCpuStepOfTheirViews \
    >"$graph_log" 2>&1
  row "gpu step, graph API" $? "$(grep -E '^\[  (PASSED|FAILED) +\]' "$graph_log" | tr '\n' ' ')"
  # ... and with the forms auto mode may not take here: the stem in space-to-depth form, the softmax-CE's row
  # per cluster (ctest's gpu.space_to_depth_stem_step and gpu.softmax_cluster_step)
  forms_log=$out/step_forms.log
  { MOCO_STEM_FORM=space_to_depth bounded 60 "$build/moco_gpu_tests" \
      --gtest_filter=GpuMocoStep.Fp32StepMatchesTheCpuStep:GpuMocoStep.Fp32GradientIsTight:GpuMocoStep.Bf16StepTracksTheCpuStep:GpuMocoStep.NothingIsAllocatedAfterWarmUp &&
    MOCO_SOFTMAX_FORM=cluster bounded 60 "$build/moco_gpu_tests" \
      --gtest_filter=GpuMocoStep.Fp32StepMatchesTheCpuStep:GpuMocoStep.Bf16StepTracksTheCpuStep; } >"$forms_log" 2>&1
  row "gpu step, forced forms" $? "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\]' "$forms_log" | tr '\n' ' ')"
  lone_log=$out/nccl_join_timeout.log
  bounded 60 "$build/moco_gpu_tests" --gtest_filter="$lone" >"$lone_log" 2>&1
  row "NCCL join timeout" $? "$(grep -E '^\[ +(OK|FAILED|SKIPPED) +\]' "$lone_log" | head -1)"
fi

# the headline: MoCo v2 at batch 256 against the PyTorch twin in eager mode now; against torch.compile, whose
# compilation takes minutes, after the core benchmarks
if want headline; then step_pair v2 256 eager; fi

# training end to end on the GPU: kNN monitor, resume bit for bit, moco knn and moco lincls --device cuda; and
# a run stopped by SIGTERM and resumed bit for bit; a run whose loss goes non-finite, which must stop with its
# last checkpoint whole; a rank whose NCCL peer never comes, which must stop at the rendezvous
if want train; then
  train_log=$out/gpu_train.log
  bounded 300 bash "$repo/tests/cli/gpu_train.sh" "$build/moco" >"$train_log" 2>&1
  rc=$?
  row "gpu_train.sh" $rc "$(grep -E 'bit for bit|FAIL|skipped|lincls_top1' "$train_log" | tr '\n' ' ' | cut -c1-160)"
  stop_log=$out/stop_on_signal.log
  MOCO_TEST_DEVICE=cuda bounded 120 bash "$repo/tests/cli/stop_on_signal.sh" "$build/moco" >"$stop_log" 2>&1
  row "stop_on_signal.sh" $? "$(grep -E '^(ok|FAIL)|skipped' "$stop_log" | tr '\n' ' ' | cut -c1-160)"
  # the same through --multiprocessing-distributed: the parent starts a rank per GPU and passes the signal on
  mpd_log=$out/multiprocessing_distributed.log
  MOCO_TEST_DEVICE=cuda MOCO_TEST_LAUNCH=multiprocessing-distributed \
    bounded 120 bash "$repo/tests/cli/stop_on_signal.sh" "$build/moco" >"$mpd_log" 2>&1
  row "multiprocessing-distributed" $? "$(grep -E '^(ok|FAIL)|skipped' "$mpd_log" | tr '\n' ' ' | cut -c1-160)"
  nan_log=$out/nan_stops_the_run.log
  bounded 120 bash "$repo/tests/cli/nan_stops_the_run.sh" "$build/moco" --device cuda >"$nan_log" 2>&1
  rc=$?
  row "nan_stops_the_run.sh" $rc "$(grep -cE '^ok' "$nan_log") checks ok $(grep -E '^FAIL|skipped' "$nan_log" | tr '\n' ' ' | cut -c1-120)"
  # rank 0 of 2 reaches NCCL's rendezvous before scanning its data: it must stop at the rendezvous's timeout
  rdv_log=$out/rendezvous_before_data.log
  bounded 90 bash "$repo/tests/cli/rendezvous_before_data.sh" "$build/moco" >"$rdv_log" 2>&1
  row "rendezvous_before_data.sh" $? "$(grep -E '^rank 0 reached|FAIL|skipped' "$rdv_log" | tr '\n' ' ' | cut -c1-160)"
fi

# ---- 4. the kernel benchmarks (each checks itself against the CPU before timing) -------------------------------
run_benches=""
want kernels && run_benches=$benches
want core && ! want kernels && run_benches=$core_benches
[ -n "$run_benches" ] && [ -n "${DEVICE_RUN_BENCHES:-}" ] && run_benches=$DEVICE_RUN_BENCHES
if [ -n "$run_benches" ]; then
  for b in $run_benches; do
    log=$out/$b.log
    if [ ! -x "$build/$b" ]; then
      # studies are plain CUDA for sm_90 (bench/explore/): an emulated rehearsal's bundle has none
      if [[ " $studies " == *" $b "* ]]; then row "$b" 0 "not in $build: skipped"; else row "$b" 127 "not built in $build"; fi
      continue
    fi
    bounded 240 "$build/$b" >"$log" 2>&1
    row "$b" $? "$log"
  done
  # the kNN scoring's peer, right after bench_knn_vote: PyTorch's matmul + topk + scatter vote, same sizes
  if want kernels && [ -z "${MOCO_BENCH_CHECK_ONLY:-}" ] && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    bounded 240 python3 "$repo/tools/knn_peer.py" >"$out/knn_peer.log" 2>&1
    row "torch knn peer" $? "$(grep -o 'total [0-9.]* ms' "$out/knn_peer.log")"
  fi
fi

if want headline; then step_pair v2 256 compile; fi

# ---- 5. the step sweeps (the headline's pairs are not run twice) -----------------------------------------------
for head in v2 v1; do
  want "steps-$head" || continue
  for bs in ${DEVICE_RUN_BATCHES:-32 64 128 256}; do
    want headline && [ "$head" = v2 ] && [ "$bs" = 256 ] && continue
    step_pair $head $bs eager
  done
done
# The cuDNN API choice over a whole step: v2 at batch 256 on the legacy API alone (MOCO_CONV_API=legacy),
# beside the default (auto: the graph API unless the legacy algorithm is faster) of this call.
if want steps-v2; then
  legacy_log=$out/moco_bench_v2_b256_conv_legacy.log
  MOCO_CONV_API=legacy bounded 200 "$build/moco" bench --device cuda -a resnet50 --image-size 224 -b 256 \
    --moco-k 65536 --mlp --steps 20 --warmup 5 >"$legacy_log" 2>&1
  row "moco bench v2 b256 conv legacy" $? "$(grep -o 'img_per_s [0-9.]*' "$legacy_log") against auto $(grep -o \
    'img_per_s [0-9.]*' "$out/moco_bench_v2_b256.log" 2>/dev/null)"
fi
if want steps-compile; then
  for bs in 256 32; do
    want headline && [ "$bs" = 256 ] && continue
    step_pair v2 $bs compile
  done
fi

# ---- what bounds the step: the host's issue time against the device's, per cuDNN API and batch ----------------
# `op-times` alone: only the default API at batch 256, the breakdown of the headline's step
if want step-profile || want op-times; then
  profile_batches="32 256" profile_apis="legacy graph auto"
  want step-profile || { profile_batches=256; profile_apis=auto; }
  for bs in $profile_batches; do
    for api in $profile_apis; do
      log=$out/step_profile_b${bs}_${api}.log
      report=""
      # auto, the default: what it timed and kept, shape by shape, and the device's time per kind of op
      [ "$api" = auto ] && report="--conv-report --op-times"
      MOCO_CONV_API=$api bounded 90 "$build/moco" bench --device cuda -a resnet50 --image-size 224 -b $bs \
        --moco-k 65536 --mlp --steps 10 --warmup 3 $report >"$log" 2>&1
      row "profile v2 b$bs $api" $? "$(grep -o 'img_per_s [0-9.]*' "$log") $(grep -o 'host issue.*' "$log" | cut -c1-110)"
    done
  done
fi
if want step-profile; then
  # the inner BN+ReLU outputs rebuilt in backward (--recompute-bn-relu): its time and memory beside auto's
  log=$out/step_profile_b256_recompute.log
  bounded 90 "$build/moco" bench --device cuda -a resnet50 --image-size 224 -b 256 --moco-k 65536 --mlp --steps 10 \
    --warmup 3 --recompute-bn-relu >"$log" 2>&1
  row "profile v2 b256 recompute" $? "$(grep -o 'img_per_s [0-9.]*' "$log") $(grep -o 'activations [0-9.]*' "$log") \
against auto $(grep -o 'img_per_s [0-9.]*' "$out/step_profile_b256_auto.log" 2>/dev/null) $(grep -o \
'activations [0-9.]*' "$out/step_profile_b256_auto.log" 2>/dev/null)"
  # the softmax-CE's row-per-cluster form (MOCO_SOFTMAX_FORM=cluster) beside auto's row per block, in the whole step
  log=$out/step_profile_b256_softmax_cluster.log
  MOCO_SOFTMAX_FORM=cluster bounded 90 "$build/moco" bench --device cuda -a resnet50 --image-size 224 -b 256 \
    --moco-k 65536 --mlp --steps 10 --warmup 3 --op-times >"$log" 2>&1
  row "profile v2 b256 softmax cluster" $? "$(grep -o 'img_per_s [0-9.]*' "$log") against auto $(grep -o \
'img_per_s [0-9.]*' "$out/step_profile_b256_auto.log" 2>/dev/null) ($(grep -o 'softmax-CE [a-z ]*' "$log" | head -1))"
fi

# ---- 6. the table, printed and written as a bench/results record ------------------------------------------
commit=$(cat "$build/COMMIT" 2>/dev/null || git -C "$repo" rev-parse HEAD 2>/dev/null || echo '?')
{
  echo "device-run: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit ${commit:0:12}, device: ${gpu_name:-?}"
  printf '%-22s %4s  %s\n' step rc note
  rows
  echo
  echo "whole steps (ratios measured in this run):"
  cat "$ratios"
  # the same pairs from the JSON records (tools/bench_table.py), with the memory each side reports
  if [ -s "$out/steps.jsonl" ]; then
    echo
    python3 "$repo/tools/bench_table.py" "$out/steps.jsonl" 2>&1
  fi
  # the kNN scoring of one chunk (GEMM + vote), ours against PyTorch's, both from this run
  if [ -f "$out/bench_knn_vote.log" ] && [ -f "$out/knn_peer.log" ]; then
    echo
    echo "kNN scoring (ratio measured in this run):"
    awk 'FNR == 1 { f++ }
         f == 1 && /similarities/ { for (i = 1; i < NF; i++) if ($(i + 1) == "ms") g = $i }
         f == 1 && /^knn_vote/ { for (i = 1; i < NF; i++) if ($(i + 1) == "ms") v = $i }
         f == 2 && /torch/ { for (i = 1; i < NF; i++) if ($i == "total") t = $(i + 1) }
         END { if (g && v && t) printf "128 queries vs a bank of 1,281,167 x 2048: moco %.3f ms  torch %.3f ms  speed-up %.2fx (torch time / moco time)\n", g + v, t, t / (g + v) }' \
      "$out/bench_knn_vote.log" "$out/knn_peer.log"
  fi
  for bs in 256 32; do  # where the device's time goes (step-profile, the default API)
    f=$out/step_profile_b${bs}_auto.log
    [ -f "$f" ] && grep -q 'device ms per step' "$f" && { echo; echo "v2 b$bs, by kind of op:"; sed -n '/device ms per step/,/not bracketed/p' "$f"; }
    # the stem's form as auto mode chose it, with both times (convolution.h, StemForm)
    [ -f "$f" ] && grep -q 'stem form' "$f" && { echo; echo "v2 b$bs, the stem:"; grep 'stem form' "$f"; }
  done
  echo
  echo "benchmark lines:"
  for b in $benches; do
    [ -f "$out/$b.log" ] && grep -E 'device:|copy bandwidth|of copy|same bytes|of cuBLAS|alignment|fourth channel|whole network|legacy / graph|graph API|ms/step|staged ahead|TFLOP|stem forms|the speed of|host->device|with 8-bit views|view stages|extrapolated|no CUDA device|refusing|error' "$out/$b.log"
  done | awk '!seen[$0]++'
} >"$out/table.txt"
# The record to commit under bench/results/ (GPU.md: device, commit, command, raw table), logs beside it.
{
  echo "# GPU run: tests, kernel benchmarks, MoCo steps against the PyTorch peer"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- commit: $commit"
  echo "- device: ${gpu_name:-?} ($(nvidia-smi --query-gpu=memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null | head -1))"
  echo "- torch: $(python3 -c 'import torch;print(torch.__version__, "cuDNN", torch.backends.cudnn.version())' 2>/dev/null || echo none)"
  # the DEVICE_RUN_* settings too: a narrowed sweep or benchmark list must not read as the full one
  echo "- command: $(env | grep -E '^DEVICE_RUN_[A-Z_]+=' | sort | sed -E 's/=(.*)/="\1"/' | tr '\n' ' ')bash tools/device-run.sh $build_arg OUT $(echo $parts)"
  echo
  echo '```'
  cat "$out/table.txt"
  echo '```'
} >"$out/bench-record.md"
cat "$out/table.txt"
echo "(record for bench/results/: $out/bench-record.md)"
# every log into one archive: a GPU machine may hand back only a few files
# (only what this script writes: *.log, steps.jsonl and step-ratios.txt; OUT_DIR may hold other things;
# ls fails on a pattern that matched nothing, so its status is not the test: the list is)
( cd "$out" && logs=$(ls -1 -- *.log steps.jsonl step-ratios.txt 2>/dev/null || true) && [ -n "$logs" ] &&
  tar czf logs.tar.gz $logs && rm -f $logs ) &&
  echo "(every log: $out/logs.tar.gz)"
status=0
for rc in "${T_RC[@]}"; do [ "$rc" -ne 0 ] && status=1; done
exit $status
