// The slots of the compute copy of an encoder's weights (kernels/nhwc_ops.cuh, WeightSlot): every conv weight
// (4-D, permuted to cuDNN's (Co, kh, kw, Ci)) and linear weight (2-D, copied as is). BN parameters and the
// linear biases are read in fp32 straight from the master buffer, so they have none.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "moco/registry.h"
#include "nhwc_ops.cuh"

namespace moco::cuda {

inline std::vector<kernels::WeightSlot> compute_weight_slots(const ParamRegistry& reg) {
  std::vector<kernels::WeightSlot> slots;
  for (const RegistryEntry& e : reg.entries()) {
    if (e.slot != Slot::Param || e.numel() == 0) continue;  // an empty slot would shadow its neighbour
    // the packing kernels index inside a slot in 32 bits (kernels/weight_pack.cu)
    MOCO_CHECK(e.numel() <= INT32_MAX, "weight ", e.name, " has ", e.numel(), " elements; the GPU packs at most ",
               INT32_MAX, " per tensor");
    if (e.shape.size() == 4) slots.push_back({e.offset, e.shape[0], e.shape[1], e.shape[2], e.shape[3]});
    if (e.shape.size() == 2) slots.push_back({e.offset, e.numel(), 1, 1, 1});
  }
  std::sort(slots.begin(), slots.end(), [](const auto& a, const auto& b) { return a.offset < b.offset; });
  return slots;
}

}  // namespace moco::cuda
