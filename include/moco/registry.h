// Parameter registry: every tensor of an encoder, in torchvision's state_dict order and names, mapped to an
// offset in one of three flat buffers:
//   Param: learnable fp32 (conv and linear weights, BN weight/bias)   -> params, grads, SGD momentum alike
//   Stat:  BN running_mean / running_var (fp32, not learned)          -> stats
//   Count: BN num_batches_tracked (int64)                              -> counts
// One buffer per kind is what makes the momentum update, SGD, the gradient all-reduce, checkpoints and the
// safetensors export each a single loop (or launch) over contiguous memory.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "moco/tensor.h"

namespace moco {

enum class Slot : uint8_t { Param, Stat, Count };

struct RegistryEntry {
  std::string name;  // torchvision key, e.g. "layer1.0.conv1.weight"
  Shape shape;
  Slot slot;
  int64_t offset;  // in elements, into the buffer of its slot
  int64_t numel() const { return shape_numel(shape); }
};

class ParamRegistry {
 public:
  // Adds an entry at the end of its slot's buffer and returns its offset. Offsets of Param entries are
  // rounded up to a multiple of kParamAlign elements, so that each tensor starts 32-byte aligned in fp32 and
  // 16-byte aligned in the bf16 compute copy (vector loads; cuDNN's tensor-core kernels want 16 bytes).
  static constexpr int64_t kParamAlign = 8;
  int64_t add(const std::string& name, const Shape& shape, Slot slot);
  // Where the Param entries would start (in entry order), and the buffer's length, had the offsets been
  // rounded to `align` elements: reads checkpoints written with another alignment.
  std::vector<int64_t> param_offsets(int64_t align, int64_t* total) const;
  // Each Param entry's range in the flat buffer, padding up to the next entry included, keyed by offset:
  // the ranges tile [0, size(Param)) exactly, so a gradient all-reduce that waits for every range to be
  // final waits for the whole buffer (src/cuda/gpu_moco.cpp).
  std::map<int64_t, int64_t> param_extents() const;
  const std::vector<RegistryEntry>& entries() const { return entries_; }
  const RegistryEntry& find(const std::string& name) const;  // throws naming the missing key
  int64_t size(Slot slot) const { return sizes_[(int)slot]; }
  // Learnable parameter count (padding excluded), e.g. 23,508,032 for the ResNet-50 backbone.
  int64_t parameter_count() const;
  // Entries whose name starts with `prefix` (e.g. "fc." for the head).
  int64_t parameter_count(const std::string& prefix) const;

 private:
  std::vector<RegistryEntry> entries_;
  int64_t sizes_[3] = {0, 0, 0};
};

// Pointers to the flat buffers of one encoder, on the encoder's device; layers read their weights through
// this. On the GPU, convolutions and linear layers read a compute copy of the parameters in the activation
// dtype (conv weights in cuDNN's (Co, kh, kw, Ci) layout, at the same offsets) and write their weight
// gradients into a twin of it, which the step folds into the fp32 `grads` (see kernels/nhwc_ops.cuh).
struct WeightsView {
  float* params = nullptr;   // (registry.size(Param))
  float* grads = nullptr;    // (registry.size(Param)); null for an encoder that never runs backward
  float* stats = nullptr;    // (registry.size(Stat))
  int64_t* counts = nullptr; // (registry.size(Count))
  void* compute = nullptr;        // (registry.size(Param)) GPU only: the compute copy of params
  void* compute_grads = nullptr;  // (registry.size(Param)) GPU only: weight gradients in the compute layout
};

}  // namespace moco
