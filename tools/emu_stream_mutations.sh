#!/bin/bash
# Does the CUDA emulator's stream model catch missing cross-stream ordering in the real device code?
# Deletes (or misplaces) one wait at a time in src/cuda/, rebuilds the emulated tests, runs the tests that
# cover that code, and restores the file. Each mutation must fail with the stream model (in the default head
# order, or in the tail order, MOCO_EMU_STREAM_ORDER=tail) and, to show the model is what catches it, pass with
# MOCO_EMU_EAGER=1 (every call run at once). Two are not hazards and must pass both ways: a staging that does
# not wait for the step that last read its slot (that step has returned, and steps end with a host wait, so the
# wait is defence for a step that would not), and a started shuffle made to wait at once (it only gives up
# the overlap). (Fp32StepMatchesTheCpuStep is a step test
# whose images come from host memory, so it is one that uploads them; Fp32StepOverNcclOfOneRankIsTight runs the
# step over NCCL, whose shuffle runs on its own stream.)
#
#   bash tools/emu_stream_mutations.sh [BUILD_DIR]     (default: build; about 10 minutes on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
backup=$(mktemp -d)

mutate() {  # name file old new filter expect(fail|pass)
  local name=$1 file=$2 old=$3 new=$4 filter=$5 expect=$6
  cp "$file" "$backup/file"
  trap 'cp "$backup/file" "'"$file"'"' EXIT INT TERM
  python3 - "$file" "$old" "$new" <<'PY' || { echo "$name: the code to mutate was not found (has it changed?)"; exit 1; }
import sys
path, old, new = sys.argv[1:]
s = open(path).read()
if s.count(old) != 1: sys.exit(1)
open(path, "w").write(s.replace(old, new))
PY
  cmake --build "$build" -j2 --target moco_emu_tests > "$backup/build.log" 2>&1 || { cat "$backup/build.log"; exit 1; }
  local head tail eager modelled=pass
  (cd "$build" && ./moco_emu_tests --gtest_filter="$filter" --gtest_brief=1 > "$backup/run.log" 2>&1) && head=pass || head=fail
  (cd "$build" && MOCO_EMU_STREAM_ORDER=tail ./moco_emu_tests --gtest_filter="$filter" --gtest_brief=1 > "$backup/run.log" 2>&1) && tail=pass || tail=fail
  (cd "$build" && MOCO_EMU_EAGER=1 ./moco_emu_tests --gtest_filter="$filter" --gtest_brief=1 > "$backup/run.log" 2>&1) && eager=pass || eager=fail
  [ "$head" = fail ] || [ "$tail" = fail ] && modelled=fail
  cp "$backup/file" "$file"
  trap - EXIT INT TERM
  local verdict=ok
  if [ "$expect" = fail ] && { [ "$modelled" != fail ] || [ "$eager" != pass ]; }; then verdict=UNEXPECTED; fi
  if [ "$expect" = pass ] && { [ "$modelled" != pass ] || [ "$eager" != pass ]; }; then verdict=UNEXPECTED; fi
  printf '%-34s head order: %-4s  tail order: %-4s  eager: %-4s  (%s)\n' "$name" "$head" "$tail" "$eager" "$verdict"
  [ "$verdict" = ok ] || failures=$((failures + 1))
}

failures=0
mutate "step: key shuffle not joined" src/cuda/gpu_moco.cpp \
  '      comm.join();
      joined = true;' '      joined = true;' 'GpuMocoStep.Fp32StepOverNcclOfOneRankIsTight' fail
mutate "nccl: started permute's buffers refilled" src/cuda/nccl_communicator.cpp \
  '  MOCO_CUDA_CHECK(cudaStreamWaitEvent(compute_, permute_done_, 0));' '' 'GpuCommunicator.StartedPermute*' fail
mutate "nccl: comm ignores compute" src/cuda/nccl_communicator.cpp \
  '  MOCO_CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, compute_ready_, 0));' '' 'GpuCommunicator.*' fail
mutate "nccl: compute ignores comm" src/cuda/nccl_communicator.cpp \
  '  MOCO_CUDA_CHECK(cudaStreamWaitEvent(compute_, comm_done_, 0));' '' 'GpuCommunicator.*' fail
mutate "pinned: slot refilled before wait" src/cuda/pinned_host.cpp \
  "  if (s.used) wait(s.copied);  // the slot's previous copy must have read it before it is refilled (or freed)
  void* staged = s.buffer.reserve(bytes);
  std::memcpy(staged, host, bytes);" '  void* staged = s.buffer.reserve(bytes);
  std::memcpy(staged, host, bytes);
  if (s.used) wait(s.copied);' 'GpuPinnedPool.*' fail
mutate "step: state uploads not awaited" src/cuda/gpu_moco.cpp \
  '  MOCO_CUDA_CHECK(cudaDeviceSynchronize());  // the uploads (legacy stream) land before the next step reads them' \
  '' 'GpuMocoStep.Fp32StepMatchesTheCpuStep' fail
mutate "train: crops copied on the legacy stream" src/cuda/train_step.cpp \
  'cudaMemcpyAsync(crops.get(), host.raw(), host.nbytes(), cudaMemcpyHostToDevice, copy_stream_));' \
  'cudaMemcpyAsync(crops.get(), host.raw(), host.nbytes(), cudaMemcpyHostToDevice, nullptr));' \
  'GpuTrainStep.*' fail
mutate "train: step ignores its staging" src/cuda/train_step.cpp \
  '    MOCO_CUDA_CHECK(cudaStreamWaitEvent(stream_, staged_[cur].staged, 0));' '' 'GpuTrainStep.*' fail
mutate "train: staging ignores the last step" src/cuda/train_step.cpp \
  '    MOCO_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, into.consumed, 0));' '' 'GpuTrainStep.*' pass
mutate "nccl: shuffle not overlapped" src/cuda/nccl_communicator.cpp \
  '  permute(send, n, row_bytes, perm, recv, /*started=*/true);' '  permute(send, n, row_bytes, perm, recv, /*started=*/false);' \
  'GpuCommunicator.StartedPermute*:GpuMocoStep.Fp32StepOverNcclOfOneRankIsTight' pass
cmake --build "$build" -j2 --target moco_emu_tests > /dev/null 2>&1
rm -rf "$backup"
echo "$failures unexpected result(s)"
[ "$failures" = 0 ]
