// MoCo on one GPU: the same algorithm as Moco::step_with_permutation (src/moco/moco.cpp, SPEC 1), with
// every buffer on the device. The encoders are the same Encoder objects as on the CPU, bound to the CUDA
// backend and to device buffers (Encoder::bind); the MoCo-specific arithmetic is the kernels of kernels/.
//
// Precision: activations and conv/linear weights in the compute dtype (bf16 for training, f32
// for the tests), fp32 master weights, gradients, SGD momentum, BN statistics, features, logits and loss.
//
// Checkpoints, kNN and export stay on the host: load_from / store_to copy the whole state to and from a
// CPU Moco of the same configuration.
#pragma once
#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "convolution.h"
#include "device_communicator.h"
#include "op_clock.h"
#include "softmax_form.h"
#include "moco/moco.h"

namespace moco::cuda {

class CudaBackend;

// Device memory by what it holds, in bytes (peak for activations).
struct GpuMemory {
  size_t parameters = 0;   // fp32 masters of both encoders + their compute copies
  size_t gradients = 0;    // fp32 gradients + the compute-layout weight gradients
  size_t optimizer = 0;    // SGD momentum
  size_t activations = 0;  // peak of the activation cache during the step (saved for backward + transient)
  size_t workspace = 0;    // cuDNN + BN workspaces, the logits and the staged input images
  size_t queue = 0;        // (K, C) fp32
  size_t total() const { return parameters + gradients + optimizer + activations + workspace + queue; }
};

class GpuMoco {
 public:
  // comm: the GPU communicator (SingleDeviceCommunicator for one GPU, NcclCommunicator for GPU ranks); the
  // step runs on its compute stream. act: DType::BF16 (training) or DType::F32 (tests).
  GpuMoco(const MocoConfig& cfg, DeviceCommunicator& comm, DType act);
  ~GpuMoco();
  GpuMoco(const GpuMoco&) = delete;
  GpuMoco& operator=(const GpuMoco&) = delete;

  // The whole state (both encoders, SGD momentum, queue and its pointer, steps done) from / to a CPU Moco
  // of the same configuration.
  void load_from(Moco& host);
  void store_to(Moco& host);

  // One step on this rank's N query and N key views, both in one of the loader's two forms: 8-bit (N, H, W, 3)
  // uint8 (what `moco train` hands, on the device: a quarter of the bytes to shuffle, normalised here), or
  // normalised fp32 (N, 3, H, W) (the CPU step's input, which the tests compare against). On the host
  // (uploaded here) or already on the device (training, benchmarks). The loss and accuracies are read back (the NaN
  // check happens before any update, as on the CPU).
  StepStats step(const Tensor& x_q, const Tensor& x_k, float lr);
  StepStats step_with_permutation(const Tensor& x_q, const Tensor& x_k, float lr, const std::vector<int64_t>& perm);

  // After the warm-up steps: from now on nothing may allocate device memory (asserted by the caches).
  void freeze();
  // cuDNN's convolution plans of this step (CudaBackend::conv_plans / use_conv_plans).
  std::string conv_plans() const;
  ConvApi conv_api() const;
  // The softmax cross-entropy's form in this step (MOCO_SOFTMAX_FORM, resolved for rows of 1 + K logits).
  kernels::SoftmaxXentForm softmax_form() const { return softmax_form_; }
  std::string describe_convs() const;  // Convolutions::describe(): each shape's plans with their timed costs
  // Device time by kind of op, summed over the steps since its reset (off unless enabled; op_clock.h).
  OpClock& op_clock();
  void use_conv_plans(const std::string& text);
  GpuMemory memory() const;
  int64_t steps_done() const { return steps_done_; }
  const MocoConfig& config() const { return cfg_; }
  DType compute_dtype() const { return act_; }

 private:
  struct Buffers;
  void gradient_ready(int64_t offset);
  MocoConfig cfg_;
  DeviceCommunicator& comm_;
  DType act_;
  cudaStream_t stream_;
  std::unique_ptr<CudaBackend> backend_;
  Encoder encoder_q_, encoder_k_;  // layers and registries; their weights are the device buffers below
  std::unique_ptr<Buffers> buf_;
  kernels::SoftmaxXentForm softmax_form_;
  int64_t queue_ptr_ = 0;
  int64_t steps_done_ = 0;
};

}  // namespace moco::cuda
