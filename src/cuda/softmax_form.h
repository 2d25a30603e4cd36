// Which form of the softmax cross-entropy (kernels/softmax_xent.cuh) the MoCo step runs, from the
// environment. Why a switch at all: the row-per-cluster form reads each row once and so should be the faster,
// but the two forms are timed only side by side in bench_softmax_xent; MOCO_SOFTMAX_FORM lets a user (or a
// whole-step benchmark) run the step in either without a rebuild.
#pragma once
#include <cstdint>

#include "softmax_xent.cuh"

namespace moco::cuda {

// MOCO_SOFTMAX_FORM: auto (unset), block or cluster; any other value throws naming it.
kernels::SoftmaxXentForm softmax_form_from_env();

// The form the step takes for rows of m columns (1 + K), its logits and dlogits one aligned buffer: Auto
// becomes the form it runs here; a forced row per cluster that cannot run here throws saying what can.
kernels::SoftmaxXentForm step_softmax_form(kernels::SoftmaxXentForm asked, int64_t m);

}  // namespace moco::cuda
