// Tolerances for comparisons with the PyTorch twin, written down once, each with its reason.
#pragma once

namespace moco::test::tol {

// Per-op fixtures run in float64 on both sides with the same formulas; only summation order differs.
constexpr double kOpF64Rel = 1e-10, kOpF64Abs = 1e-12;

// Float32 results against the twin's float64 reference (tiny ResNet forward/backward, one MoCo step): the
// largest error per tensor may be kTorchF32Factor times PyTorch float32's own largest error for the same
// tensor, plus kNormRel of the tensor's largest entry. Our sums run in another order (GEMMs and BN statistics
// accumulate in double), so our error is not PyTorch's but must be of its size; the kNormRel term covers
// tensors where PyTorch's rounding errors happen to cancel. A wrong formula, order or sign is off by orders
// of magnitude more. PyTorch float32's own worst on these fixtures is 1.3e-4 of the largest entry.
constexpr double kTorchF32Factor = 4.0;
constexpr double kNormRel = 1e-4, kFloorAbs = 1e-7;

}  // namespace moco::test::tol
