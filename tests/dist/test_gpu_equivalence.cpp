// THE EQUIVALENCE TEST on GPU ranks: W processes, one GPU each, NcclCommunicator between them (the NCCL id
// bootstrapped over MPI), N images per rank and shuffle BN by all-to-all, compute what ONE GPU computes with
// all W*N images and W split-BN groups (SingleDeviceCommunicator), given the same global permutation. The
// argument and the comparisons are test_equivalence.cpp's (the CPU ranks' version); here both sides are
// GpuMoco in fp32, and the state is read back to the host after each step to compare.
//
// It needs W GPUs: on a multi-GPU node it is `mpirun -np W build/moco_gpu_dist_tests` (no ctest entry, since a
// one-GPU machine cannot run it); everywhere, ctest runs it on the CUDA emulator (emu.dist.gpu_equivalence_np2
// and _np4), W processes each on its own emulated device, the NCCL traffic carried over MPI. The tolerance
// is the CPU test's; at its end this test shows, as the CPU one does, that a wrong BN grouping lands far
// outside it. The views are 8-bit (views_u8), the form `moco train` hands the GPU step, so the key images
// cross between ranks as bytes in the shuffle's all-to-all.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "../../src/cuda/gpu_moco.h"
#include "../../src/cuda/nccl_communicator.h"
#include "../../src/cuda/single_device_communicator.h"
#include "equivalence_common.h"
#include "gpu_ranks.h"
#include "gpu_test.h"

using namespace moco;
using namespace moco::test;

TEST(DistGpuEquivalence, NcclShuffleBnOnWRanksEqualsSplitBnOnOneGpu) {
  MOCO_REQUIRE_GPU();
  MpiCommunicator host = test_comm();
  const int w = host.world_size(), r = host.rank();
  const LaunchInfo li = launch_from_env(process_environment());
  ASSERT_EQ(li.world, w) << "the launcher's world size";
  const int missing = ranks_without_their_gpu(host, li);
  ASSERT_EQ(missing, 0) << missing << " rank(s) found no GPU of their own (see above): every rank stops here";
  Stream dist_stream, ref_stream;
  cuda::NcclCommunicator nccl(li, dist_stream.s, comm_timeout_seconds(process_environment()), &host);
  cuda::SingleDeviceCommunicator one_gpu(ref_stream.s);
  SingleCommunicator alone;
  Moco dist_state(tiny(1), alone), ref_state(tiny(w), alone);  // the start, then each step's read-back
  dist_state.init();
  ref_state.init();
  cuda::GpuMoco dist(tiny(1), nccl, DType::F32);    // this rank's N images, plain BN over them
  cuda::GpuMoco ref(tiny(w), one_gpu, DType::F32);  // all W*N images, W BN groups
  dist.load_from(dist_state);
  ref.load_from(ref_state);
  float worst_loss_gap = 0;
  for (int s = 0; s < kSteps; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    const std::vector<int64_t> perm = shared_permutation(w * kN, 100 + s);  // (W*N) the same on every rank
    const StepStats sd =
        dist.step_with_permutation(views_u8(r * kN, kN, s, 0), views_u8(r * kN, kN, s, 1), kLr, perm);
    const StepStats sr =
        ref.step_with_permutation(views_u8(0, w * kN, s, 0), views_u8(0, w * kN, s, 1), kLr, perm);
    dist.store_to(dist_state);
    ref.store_to(ref_state);

    EXPECT_NEAR(sd.loss, sr.loss, kRel * std::fabs(sr.loss)) << "loss";
    EXPECT_NEAR(sd.acc1, sr.acc1, 1e-3) << "acc@1 of the global batch";
    // The gradients themselves stay on the device; after the first step the SGD momentum buffer is exactly
    // the gradient plus weight decay, and later it carries every step's gradient.
    expect_equivalent(host, dist_state, ref_state);
    worst_loss_gap = std::max(worst_loss_gap, std::fabs(sd.loss - sr.loss) / std::fabs(sr.loss));
  }
  if (r == 0) std::printf("GPU ranks: largest relative loss gap over %d steps: %.3g\n", kSteps, worst_loss_gap);

  // The negative control: from a fresh start, one GPU with plain BN over all W*N images (no split) against
  // the W ranks' first step. Its loss must land far outside the tolerance the comparisons above use.
  Moco start_wrong(tiny(1), alone), start_right(tiny(1), alone);
  start_wrong.init();
  start_right.init();
  cuda::GpuMoco wrong(tiny(1), one_gpu, DType::F32);
  cuda::GpuMoco right(tiny(1), nccl, DType::F32);
  wrong.load_from(start_wrong);
  right.load_from(start_right);
  const std::vector<int64_t> perm = shared_permutation(w * kN, 100);
  const float l_wrong =
      wrong.step_with_permutation(views_u8(0, w * kN, 0, 0), views_u8(0, w * kN, 0, 1), kLr, perm).loss;
  const float l_right =
      right.step_with_permutation(views_u8(r * kN, kN, 0, 0), views_u8(r * kN, kN, 0, 1), kLr, perm).loss;
  if (r == 0) std::printf("GPU ranks: relative loss gap with plain BN instead: %.3g\n", std::fabs(l_wrong - l_right) / l_right);
  EXPECT_GT(std::fabs(l_wrong - l_right), 100 * kRel * std::fabs(l_right))
      << "plain BN over the global batch should differ clearly from shuffle BN over ranks";
}
