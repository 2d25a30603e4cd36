// Which form of the softmax cross-entropy (kernels/softmax_xent.cuh) the MoCo step runs, from the
// environment. Why a switch at all: the row-per-cluster form reads each row once and so was expected to be the
// faster, but on an H100 it ran at 0.67x the row-per-block form's speed, which auto now takes; MOCO_SOFTMAX_FORM
// lets a user (or a whole-step benchmark) run the step in either without a rebuild, on other devices too.
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
