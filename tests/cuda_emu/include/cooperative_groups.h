// Stand-in for CUDA's <cooperative_groups.h> in the emulated kernel tests: the thread block cluster of the
// running block (sm_90), which is all moco's kernels use. See ../emu_runtime.h for what the emulation models.
#pragma once
#include "../emu_runtime.h"

namespace cooperative_groups {

class cluster_group {
 public:
  // Waits for every thread of the cluster; what each wrote before is visible to all after.
  void sync() const { ::cuda_emu::sync_cluster(); }
  unsigned block_rank() const { return ::cuda_emu::cluster_block_rank(); }
  unsigned num_blocks() const { return ::cuda_emu::cluster_blocks(); }
};

inline cluster_group this_cluster() { return cluster_group(); }

}  // namespace cooperative_groups
