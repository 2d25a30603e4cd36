// CPU reference leaf ops: plain loops over raw pointers, NCHW, templated on the element type so that the
// finite-difference gradient checks run in double while training runs in float. Every CUDA op has one of
// these as its reference.
//
// Conventions: forward outputs and input gradients (dx) are overwritten; parameter gradients (dw, dgamma,
// dbeta, db) are ACCUMULATED (+=), because they live in a flat gradient buffer that the step zeroes once.
#pragma once
#include <cstdint>

namespace moco::cpu {

// ---- matrix multiply (row-major): C[M,N] = alpha * op(A) * op(B) + beta * C
// op(A) is A[M,K] or, with trans_a, A[K,M] read transposed; likewise B[K,N] or B[N,K].
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, const T* B, T beta, T* C);
// The same with explicit leading dimensions (row strides) of A, B and C, for blocks inside larger matrices.
template <class T>
void gemm_ld(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
             const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// ---- 2-D convolution without bias
struct ConvShape {
  int64_t n, ci, h, w;  // input (N, Ci, H, W)
  int64_t co, kh, kw;   // weight (Co, Ci, kh, kw)
  int64_t stride, pad;
  int64_t ho() const { return (h + 2 * pad - kh) / stride + 1; }
  int64_t wo() const { return (w + 2 * pad - kw) / stride + 1; }
};
template <class T> void conv2d_forward(const ConvShape& s, const T* x, const T* w, T* y);
// dx (nullable: skip the data gradient, e.g. for the first layer) and dw (accumulated).
template <class T> void conv2d_backward(const ConvShape& s, const T* x, const T* w, const T* dy, T* dx, T* dw);

// ---- batch normalisation over (N, C, HW), optionally in `groups` equal groups along N (split-BN):
// each group of N/groups samples gets its own mean and variance, as if it were on its own rank.
struct BNShape {
  int64_t n, c, hw;
  int64_t groups = 1;
};
// Train mode: normalise with the biased batch variance; update running stats with `momentum` (torch: 0.1)
// using the unbiased variance, averaged over groups; ++num_batches_tracked. Running pointers are nullable.
// save_mean / save_invstd: (groups, C), for the backward.
template <class T>
void batchnorm_train_forward(const BNShape& s, const T* x, const T* gamma, const T* beta, T eps, T momentum, T* y,
                             T* save_mean, T* save_invstd, T* running_mean, T* running_var, int64_t* num_batches_tracked);
template <class T>
void batchnorm_train_backward(const BNShape& s, const T* x, const T* gamma, const T* save_mean, const T* save_invstd,
                              const T* dy, T* dx, T* dgamma, T* dbeta);
// Eval mode: normalise with the running statistics (groups ignored).
template <class T>
void batchnorm_eval_forward(const BNShape& s, const T* x, const T* gamma, const T* beta, const T* running_mean,
                            const T* running_var, T eps, T* y);
template <class T>
void batchnorm_eval_backward(const BNShape& s, const T* x, const T* gamma, const T* running_mean,
                             const T* running_var, T eps, const T* dy, T* dx, T* dgamma, T* dbeta);

// ---- pointwise
template <class T> void relu_forward(int64_t n, const T* x, T* y);
// Uses the forward OUTPUT y (y > 0 <=> x > 0), so the input need not be kept. dx may alias dy.
template <class T> void relu_backward(int64_t n, const T* y, const T* dy, T* dx);
template <class T> void add_forward(int64_t n, const T* a, const T* b, T* y);

// ---- pooling
struct PoolShape {
  int64_t n, c, h, w;
  int64_t k, stride, pad;
  int64_t ho() const { return (h + 2 * pad - k) / stride + 1; }
  int64_t wo() const { return (w + 2 * pad - k) / stride + 1; }
};
// argmax: (N, C, Ho, Wo), index of the winning input element within its (H, W) plane.
template <class T> void maxpool_forward(const PoolShape& s, const T* x, T* y, int64_t* argmax);
template <class T> void maxpool_backward(const PoolShape& s, const int64_t* argmax, const T* dy, T* dx);
// Global average pool: x (N, C, HW) -> y (N, C).
template <class T> void avgpool_forward(int64_t n, int64_t c, int64_t hw, const T* x, T* y);
template <class T> void avgpool_backward(int64_t n, int64_t c, int64_t hw, const T* dy, T* dx);

// ---- linear: y (N, O) = x (N, I) * W^T (O, I) + b (O); b / db nullable.
template <class T> void linear_forward(int64_t n, int64_t in, int64_t out, const T* x, const T* w, const T* b, T* y);
template <class T>
void linear_backward(int64_t n, int64_t in, int64_t out, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db);

// ---- row L2 normalisation, as torch.nn.functional.normalize(dim=1, eps=1e-12): y = x / max(||x||, eps).
// norms (N) are saved for the backward.
template <class T> void l2_normalize_forward(int64_t n, int64_t c, const T* x, T* y, T* norms);
template <class T> void l2_normalize_backward(int64_t n, int64_t c, const T* y, const T* norms, const T* dy, T* dx);

// ---- MoCo logits: logits (N, 1+K) = [q.k, q.queue^T] * inv_t, with q, k (N, C) and queue (K, C).
template <class T>
void moco_logits_forward(int64_t n, int64_t c, int64_t k, const T* q, const T* key, const T* queue, T inv_t, T* logits);
// dq (N, C) from dlogits (N, 1+K); keys and queue carry no gradient (SPEC 1, step 8).
template <class T>
void moco_logits_backward(int64_t n, int64_t c, int64_t k, const T* dlogits, const T* key, const T* queue, T inv_t, T* dq);

// ---- cross-entropy over rows of logits (N, M) with integer labels (N) (nullptr: label 0 for every row),
// mean over rows; writes dloss/dlogits (N, M) when dlogits is non-null. The linear probe's loss.
template <class T> T softmax_xent(int64_t n, int64_t m, const T* logits, const int64_t* labels, T* dlogits);
// ---- cross-entropy with label 0 for every row, mean over rows. Returns the loss; writes dloss/dlogits
// (N, M) when dlogits is non-null. Computed with a max-shifted log-sum-exp.
template <class T> T softmax_xent_label0(int64_t n, int64_t m, const T* logits, T* dlogits);
// Rows whose label-0 logit is among the top `topk` (ties counted against it, as torch.topk would not).
template <class T> int64_t count_label0_in_topk(int64_t n, int64_t m, const T* logits, int topk);

// ---- the fused contrastive head: logits, softmax cross-entropy (label 0) and dq in one pass over each
// row, in double, without materialising the (N, 1+K) logits. Returns the mean loss; dq (N, C) is
// d(loss)/dq; hits1/hits5 count rows whose positive is in the top 1 / top 5 (nullable).
// Equal to moco_logits_forward -> softmax_xent_label0 -> moco_logits_backward, but more accurate: the
// loss of a confident step is a small difference of large logits (|z| ~ 1/T), which float logits lose.
template <class T>
T contrastive_loss_forward_backward(int64_t n, int64_t c, int64_t k, const T* q, const T* key, const T* queue, T inv_t,
                                    T* dq, int64_t* hits1, int64_t* hits5);

// ---- optimisation over flat buffers
// theta_k = theta_k * m + theta_q * (1 - m), as the authors' builder.py writes it in PyTorch: m is given in
// double and both m and 1 - m are rounded to T from there (PyTorch computes the Python float (1. - m) before
// the tensor op sees it: 0.001f for m = 0.999, where 1.f - 0.999f is 0.00099998713); each product is rounded.
template <class T> void momentum_update(int64_t n, double m, const T* theta_q, T* theta_k);
// PyTorch SGD (dampening 0, no Nesterov): d = g + wd * p; buf = momentum * buf + d; p -= lr * buf.
// buf starts at zero, which equals torch's "buf = d on the first step".
template <class T> void sgd_momentum_step(int64_t n, T lr, T momentum, T weight_decay, T* param, const T* grad, T* buf);

}  // namespace moco::cpu
