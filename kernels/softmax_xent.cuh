// Launchers for the softmax cross-entropy over rows of logits: the MoCo step's (1+K)-way one with label 0 and
// the linear probe's with a label per row (raw pointers and sizes only; no Tensor).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace moco::kernels {

// Bytes of device workspace softmax_xent needs for n rows (per-row losses and ranks, and the row-per-cluster
// form's partials).
size_t softmax_xent_workspace_bytes(int64_t n);

// How a row is spread over the device (softmax_xent.cu explains both). Auto takes RowPerBlock, the faster form
// measured; RowPerCluster runs only when asked for (tests and bench/softmax_xent compare the two).
enum class SoftmaxXentForm { Auto, RowPerBlock, RowPerCluster };
inline const char* softmax_xent_form_name(SoftmaxXentForm f) {
  return f == SoftmaxXentForm::RowPerCluster ? "row per cluster"
         : f == SoftmaxXentForm::RowPerBlock ? "row per block"
                                             : "auto";
}

// How the one-block kernel that sums the rows' losses into the mean follows the rows kernel:
// - AfterRows: an ordinary launch, which the device starts only after the rows kernel has ended;
// - Dependent: a programmatic dependent launch (sm_90; cudaLaunchAttributeProgrammaticStreamSerialization),
//   started as the rows kernel's blocks end, which waits for that grid on the device (griddepcontrol.wait);
// - Auto: Dependent where it runs (an sm_90 build on an sm_90 device), else AfterRows.
// The same arithmetic either way, so the same bits. bench_softmax_xent times the two side by side.
enum class SoftmaxXentReduce { Auto, AfterRows, Dependent };
inline const char* softmax_xent_reduce_name(SoftmaxXentReduce r) {
  return r == SoftmaxXentReduce::AfterRows ? "after rows" : r == SoftmaxXentReduce::Dependent ? "dependent" : "auto";
}
// Whether the reduce can be a programmatic dependent launch here (SoftmaxXentReduce::Dependent runs).
bool softmax_xent_dependent_reduce_runs();

// The widest row the row-per-cluster form holds: 8 blocks of 512 threads holding 4 float4s each, plus the 3
// scalar columns a row that starts off a 16-byte boundary has before its body.
constexpr int64_t kSoftmaxXentClusterMaxColumns = 8 * 512 * 4 * 4 + 3;
// Whether rows of m columns (with dlogits aligned as the logits) take the row-per-cluster form on this device.
bool softmax_xent_cluster_form_fits(int64_t m);

// Rows of logits (N, M) with labels y (N) in [0, M) (device int64; nullptr: 0 for every row):
//   loss[0]   = mean_i (logsumexp(z_i) - z_iy)                     (device fp32 scalar; reduced in double)
//   dlogits   = (softmax(z_i) - onehot(y_i)) / N                    (N, M); nullable (loss only); may equal
//                                                                  logits (computed in place)
//   hits[0/1] = rows whose z_iy is beaten by fewer than 1 / 5 others (device int64 (2)); nullable. Beaten:
//               strictly greater, or equal at a lower column, so a top-1 hit is "the argmax is y" with the
//               first of equal maxima winning; with label 0 a tie never beats the positive.
// workspace: softmax_xent_workspace_bytes(n) bytes of device memory, 16-byte aligned.
// Deterministic: the same inputs give bit-identical outputs on one device and build (no floating-point atomics;
// the two forms sum in different orders, so a device that takes the other form differs in the last bits).
// CPU references: cpu::softmax_xent, cpu::count_label0_in_topk (topk 1 and 5; label 0) and std::max_element
// (the probe's top-1, run_lincls).
// form: Auto, or one forced (RowPerCluster where it does not fit or cannot run throws).
// reduce: Auto, or one forced (Dependent where it cannot run throws).
// Throws for M above 2^30 - 1 (column indices are 32-bit on the device).
void softmax_xent(int64_t n, int64_t m, const float* logits, const int64_t* labels, float* dlogits, float* loss,
                  int64_t* hits, void* workspace, cudaStream_t stream,
                  SoftmaxXentForm form = SoftmaxXentForm::Auto,
                  SoftmaxXentReduce reduce = SoftmaxXentReduce::Auto);

// The MoCo step's: label 0 for every row. CPU reference: cpu::softmax_xent_label0.
inline void softmax_xent_label0(int64_t n, int64_t m, const float* logits, float* dlogits, float* loss,
                                int64_t* hits, void* workspace, cudaStream_t stream,
                                SoftmaxXentForm form = SoftmaxXentForm::Auto,
                                SoftmaxXentReduce reduce = SoftmaxXentReduce::Auto) {
  softmax_xent(n, m, logits, nullptr, dlogits, loss, hits, workspace, stream, form, reduce);
}

// summary (3) fp32 = {loss[0], hits[0], hits[1]}: the step's numbers as one small buffer that the ranks can
// average with one all-reduce and the host can read back with one copy. CPU reference: the float array the
// CPU step all-reduces (Moco::step_with_permutation).
void loss_summary(const float* loss, const int64_t* hits, float* summary, cudaStream_t stream);

}  // namespace moco::kernels
