#include "softmax_form.h"

#include <cstdlib>
#include <cstring>

#include "moco/error.h"

namespace moco::cuda {

kernels::SoftmaxXentForm softmax_form_from_env() {
  const char* v = std::getenv("MOCO_SOFTMAX_FORM");
  if (!v || !*v || std::strcmp(v, "auto") == 0) return kernels::SoftmaxXentForm::Auto;
  if (std::strcmp(v, "block") == 0) return kernels::SoftmaxXentForm::RowPerBlock;
  if (std::strcmp(v, "cluster") == 0) return kernels::SoftmaxXentForm::RowPerCluster;
  ::moco::fail("MOCO_SOFTMAX_FORM=", v, " is not a softmax-CE form (expected block, cluster or auto)");
}

kernels::SoftmaxXentForm step_softmax_form(kernels::SoftmaxXentForm asked, int64_t m) {
  if (asked == kernels::SoftmaxXentForm::Auto) return kernels::SoftmaxXentForm::RowPerBlock;
  const bool cluster_runs = kernels::softmax_xent_cluster_form_fits(m);
  MOCO_CHECK(asked != kernels::SoftmaxXentForm::RowPerCluster || cluster_runs,
             "MOCO_SOFTMAX_FORM=cluster: rows of ", m,
             " logits (1 + --moco-k) do not take the row-per-cluster form here (it needs an sm_90 build on an "
             "sm_90 device and at most ", kernels::kSoftmaxXentClusterMaxColumns, " logits a row); unset "
             "MOCO_SOFTMAX_FORM or set it to block");
  return asked;
}

}  // namespace moco::cuda
