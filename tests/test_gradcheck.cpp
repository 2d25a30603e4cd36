// Every CPU backward against central finite differences in double. The scalar checked is <r, f(x)> for a
// fixed random r, so its gradient is exactly what backward(dy = r) must return.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "gradcheck.h"
#include "moco/backend.h"
#include "moco/cpu_ops.h"
#include "moco/registry.h"
#include "moco/tensor.h"

using namespace moco;
using namespace moco::test;
using V = std::vector<double>;

TEST(Gradcheck, Conv2dStridedPadded) {
  for (auto [stride, pad, k] :
       {std::tuple{1, 1, 3}, std::tuple{2, 1, 3}, std::tuple{2, 0, 1}, std::tuple{1, 0, 1}, std::tuple{2, 3, 7}}) {
    cpu::ConvShape s{2, 3, 9, 8, 4, k, k, stride, pad};
    V x = random_vector(s.n * s.ci * s.h * s.w, 1), w = random_vector(s.co * s.ci * k * k, 2);
    V r = random_vector(s.n * s.co * s.ho() * s.wo(), 3), y(r.size());
    auto loss = [&] { cpu::conv2d_forward(s, x.data(), w.data(), y.data()); return dot(r, y); };
    V dx(x.size()), dw(w.size(), 0.0);
    cpu::conv2d_backward(s, x.data(), w.data(), r.data(), dx.data(), dw.data());
    expect_gradient_matches("conv dx", x, loss, dx);
    expect_gradient_matches("conv dw", w, loss, dw);
  }
}

TEST(Gradcheck, BatchNormTrainWithGroups) {
  for (int groups : {1, 2}) {
    cpu::BNShape s{4, 3, 5, groups};
    V x = random_vector(s.n * s.c * s.hw, 4), g = random_vector(s.c, 5), b = random_vector(s.c, 6);
    V r = random_vector(x.size(), 7), y(x.size()), mean(groups * s.c), invstd(groups * s.c);
    auto loss = [&] {
      cpu::batchnorm_train_forward<double>(s, x.data(), g.data(), b.data(), 1e-5, 0.1, y.data(), mean.data(),
                                           invstd.data(), nullptr, nullptr, nullptr);
      return dot(r, y);
    };
    loss();
    V dx(x.size()), dg(s.c, 0.0), db(s.c, 0.0);
    cpu::batchnorm_train_backward(s, x.data(), g.data(), mean.data(), invstd.data(), r.data(), dx.data(), dg.data(), db.data());
    expect_gradient_matches("bn dx", x, loss, dx);
    expect_gradient_matches("bn dgamma", g, loss, dg);
    expect_gradient_matches("bn dbeta", b, loss, db);
  }
}

TEST(Gradcheck, BatchNormEval) {
  cpu::BNShape s{3, 4, 6};
  V x = random_vector(s.n * s.c * s.hw, 8), g = random_vector(s.c, 9), b = random_vector(s.c, 10);
  V rm = random_vector(s.c, 11), rv = random_vector(s.c, 12);
  for (auto& v : rv) v = 0.5 + v * v;
  V r = random_vector(x.size(), 13), y(x.size());
  auto loss = [&] {
    cpu::batchnorm_eval_forward<double>(s, x.data(), g.data(), b.data(), rm.data(), rv.data(), 1e-5, y.data());
    return dot(r, y);
  };
  V dx(x.size()), dg(s.c, 0.0), db(s.c, 0.0);
  cpu::batchnorm_eval_backward<double>(s, x.data(), g.data(), rm.data(), rv.data(), 1e-5, r.data(), dx.data(), dg.data(), db.data());
  expect_gradient_matches("bn eval dx", x, loss, dx);
  expect_gradient_matches("bn eval dgamma", g, loss, dg);
  expect_gradient_matches("bn eval dbeta", b, loss, db);
}

TEST(Gradcheck, ReluAndAdd) {
  V x = random_vector(50, 14), a = random_vector(50, 15), r = random_vector(50, 16), y(50);
  auto loss = [&] { cpu::relu_forward<double>(50, x.data(), y.data()); return dot(r, y); };
  loss();
  V dx(50);
  cpu::relu_backward<double>(50, y.data(), r.data(), dx.data());
  expect_gradient_matches("relu dx", x, loss, dx);
  // add: d<r, a + x>/dx = r
  auto loss_add = [&] { cpu::add_forward<double>(50, a.data(), x.data(), y.data()); return dot(r, y); };
  expect_gradient_matches("add dx", x, loss_add, r);
}

TEST(Gradcheck, MaxPool3x3Stride2Pad1) {
  cpu::PoolShape s{2, 3, 7, 6, 3, 2, 1};
  V x = random_vector(s.n * s.c * s.h * s.w, 17), r = random_vector(s.n * s.c * s.ho() * s.wo(), 18), y(r.size());
  std::vector<int64_t> idx(r.size());
  auto loss = [&] { cpu::maxpool_forward(s, x.data(), y.data(), idx.data()); return dot(r, y); };
  loss();
  V dx(x.size());
  cpu::maxpool_backward(s, idx.data(), r.data(), dx.data());
  expect_gradient_matches("maxpool dx", x, loss, dx);
}

TEST(Gradcheck, GlobalAvgPool) {
  V x = random_vector(2 * 3 * 5, 19), r = random_vector(6, 20), y(6);
  auto loss = [&] { cpu::avgpool_forward<double>(2, 3, 5, x.data(), y.data()); return dot(r, y); };
  V dx(x.size());
  cpu::avgpool_backward<double>(2, 3, 5, r.data(), dx.data());
  expect_gradient_matches("avgpool dx", x, loss, dx);
}

TEST(Gradcheck, Linear) {
  const int n = 3, in = 5, out = 4;
  V x = random_vector(n * in, 21), w = random_vector(out * in, 22), b = random_vector(out, 23);
  V r = random_vector(n * out, 24), y(n * out);
  auto loss = [&] { cpu::linear_forward(n, in, out, x.data(), w.data(), b.data(), y.data()); return dot(r, y); };
  V dx(x.size()), dw(w.size(), 0.0), db(out, 0.0);
  cpu::linear_backward(n, in, out, x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data());
  expect_gradient_matches("linear dx", x, loss, dx);
  expect_gradient_matches("linear dw", w, loss, dw);
  expect_gradient_matches("linear db", b, loss, db);
}

TEST(Gradcheck, L2Normalize) {
  const int n = 4, c = 6;
  V x = random_vector(n * c, 25), r = random_vector(n * c, 26), y(n * c), norms(n);
  auto loss = [&] { cpu::l2_normalize_forward(n, c, x.data(), y.data(), norms.data()); return dot(r, y); };
  loss();
  V dx(x.size());
  cpu::l2_normalize_backward(n, c, y.data(), norms.data(), r.data(), dx.data());
  expect_gradient_matches("l2norm dx", x, loss, dx);
}

TEST(Gradcheck, MocoLogits) {
  const int n = 3, c = 5, k = 7;
  V q = random_vector(n * c, 27), key = random_vector(n * c, 28), queue = random_vector(k * c, 29);
  V r = random_vector(n * (1 + k), 30), logits(r.size());
  const double inv_t = 1.0 / 0.07;
  auto loss = [&] {
    cpu::moco_logits_forward(n, c, k, q.data(), key.data(), queue.data(), inv_t, logits.data());
    return dot(r, logits);
  };
  V dq(q.size());
  cpu::moco_logits_backward(n, c, k, r.data(), key.data(), queue.data(), inv_t, dq.data());
  expect_gradient_matches("logits dq", q, loss, dq);
}

TEST(Gradcheck, SoftmaxCrossEntropyLabel0) {
  const int n = 4, m = 9;
  V z = random_vector(n * m, 31, 3.0), dz(z.size());
  auto loss = [&] { return cpu::softmax_xent_label0<double>(n, m, z.data(), nullptr); };
  cpu::softmax_xent_label0<double>(n, m, z.data(), dz.data());
  expect_gradient_matches("xent dlogits", z, loss, dz);
}

// The step that chains them: q = normalize(x); loss = CE([q.k, q.queue]/T). Checks the composition the
// MoCo step uses, in the order it uses it.
TEST(Gradcheck, NormalizeLogitsLossChain) {
  const int n = 3, c = 4, k = 6, m = 1 + k;
  V x = random_vector(n * c, 32), key = random_vector(n * c, 33), queue = random_vector(k * c, 34);
  V q(n * c), norms(n), logits(n * m), dlogits(n * m), dq(n * c), dx(n * c);
  const double inv_t = 1.0 / 0.2;
  auto loss = [&] {
    cpu::l2_normalize_forward(n, c, x.data(), q.data(), norms.data());
    cpu::moco_logits_forward(n, c, k, q.data(), key.data(), queue.data(), inv_t, logits.data());
    return cpu::softmax_xent_label0<double>(n, m, logits.data(), dlogits.data());
  };
  loss();
  cpu::moco_logits_backward(n, c, k, dlogits.data(), key.data(), queue.data(), inv_t, dq.data());
  cpu::l2_normalize_backward(n, c, q.data(), norms.data(), dq.data(), dx.data());
  expect_gradient_matches("chain dx", x, loss, dx);
}

// The fused head equals the chain of separate ops (and so inherits their gradchecks), and its own gradient
// passes finite differences.
TEST(Gradcheck, FusedContrastiveLoss) {
  const int n = 3, c = 4, k = 6, m = 1 + k;
  V q = random_vector(n * c, 35), key = random_vector(n * c, 36), queue = random_vector(k * c, 37);
  V dq(n * c), logits(n * m), dlogits(n * m), dq_chain(n * c);
  const double inv_t = 1.0 / 0.07;
  int64_t h1 = 0, h5 = 0;
  double loss = cpu::contrastive_loss_forward_backward<double>(n, c, k, q.data(), key.data(), queue.data(), inv_t,
                                                               dq.data(), &h1, &h5);
  cpu::moco_logits_forward(n, c, k, q.data(), key.data(), queue.data(), inv_t, logits.data());
  EXPECT_NEAR(loss, cpu::softmax_xent_label0<double>(n, m, logits.data(), dlogits.data()), 1e-12);
  cpu::moco_logits_backward(n, c, k, dlogits.data(), key.data(), queue.data(), inv_t, dq_chain.data());
  for (int i = 0; i < n * c; ++i) EXPECT_NEAR(dq[i], dq_chain[i], 1e-12);
  EXPECT_EQ(h1, cpu::count_label0_in_topk<double>(n, m, logits.data(), 1));
  EXPECT_EQ(h5, cpu::count_label0_in_topk<double>(n, m, logits.data(), 5));
  V scratch(n * c);
  auto f = [&] {
    return cpu::contrastive_loss_forward_backward<double>(n, c, k, q.data(), key.data(), queue.data(), inv_t,
                                                          scratch.data(), nullptr, nullptr);
  };
  expect_gradient_matches("fused dq", q, f, dq);
}

// Cross-entropy with arbitrary labels (the linear probe): the loss of a row equals log-sum-exp minus the
// labelled logit, computed here by hand, and the gradient passes finite differences.
TEST(Gradcheck, SoftmaxCrossEntropyWithLabels) {
  const int n = 4, m = 5;
  V z = random_vector(n * m, 41), dz(n * m);
  const std::vector<int64_t> labels = {3, 0, 4, 1};
  double want = 0;
  for (int i = 0; i < n; ++i) {
    double sum = 0;
    for (int j = 0; j < m; ++j) sum += std::exp(z[i * m + j]);
    want += (std::log(sum) - z[i * m + labels[i]]) / n;
  }
  EXPECT_NEAR(cpu::softmax_xent<double>(n, m, z.data(), labels.data(), dz.data()), want, 1e-12);
  V scratch(n * m);
  auto f = [&] { return cpu::softmax_xent<double>(n, m, z.data(), labels.data(), scratch.data()); };
  expect_gradient_matches("xent dz", z, f, dz);
}

// The CPU backend's fused tail of a bottleneck, y = relu(bn(x) + residual), and its backward (relu's
// gradient, handed on as the residual's, then BN's): first the composition in double against finite
// differences, then CpuBackend (float, what the CPU step runs) against that double composition.
TEST(Gradcheck, BackendBatchNormWithResidualAndRelu) {
  const cpu::BNShape s{4, 3, 5, 2};
  const size_t n = (size_t)(s.n * s.c * s.hw);
  V x = random_vector(n, 60), g = random_vector(s.c, 61), b = random_vector(s.c, 62), res = random_vector(n, 63);
  V r = random_vector(n, 64), y(n), mean(s.groups * s.c), invstd(s.groups * s.c);
  auto loss = [&] {
    cpu::batchnorm_train_forward<double>(s, x.data(), g.data(), b.data(), 1e-5, 0.1, y.data(), mean.data(),
                                         invstd.data(), nullptr, nullptr, nullptr);
    cpu::add_forward<double>((int64_t)n, y.data(), res.data(), y.data());
    cpu::relu_forward<double>((int64_t)n, y.data(), y.data());
    return dot(r, y);
  };
  loss();
  V pre(n), dx(n), dg(s.c, 0.0), db(s.c, 0.0);
  cpu::relu_backward<double>((int64_t)n, y.data(), r.data(), pre.data());  // at the pre-ReLU sum: also d residual
  cpu::batchnorm_train_backward<double>(s, x.data(), g.data(), mean.data(), invstd.data(), pre.data(), dx.data(),
                                        dg.data(), db.data());
  expect_gradient_matches("fused dx", x, loss, dx);
  expect_gradient_matches("fused dgamma", g, loss, dg);
  expect_gradient_matches("fused dbeta", b, loss, db);
  expect_gradient_matches("fused dresidual", res, loss, pre);
  loss();  // y, mean and invstd at the unperturbed point again

  // CpuBackend in float: gamma and beta in the parameters, the running statistics in the stats
  auto to_tensor = [](const V& v, const Shape& shape) {
    Tensor t = Tensor::empty(shape, DType::F32);
    for (size_t i = 0; i < v.size(); ++i) t.data<float>()[i] = (float)v[i];
    return t;
  };
  const Shape shape{s.n, s.c, s.hw, 1};
  std::vector<float> params(2 * s.c), grads(2 * s.c, 0.f), stats(2 * s.c, 0.f);
  std::vector<int64_t> counts(1, 0);
  for (int64_t c = 0; c < s.c; ++c) params[(size_t)c] = (float)g[(size_t)c], params[(size_t)(s.c + c)] = (float)b[(size_t)c];
  for (int64_t c = 0; c < s.c; ++c) stats[(size_t)(s.c + c)] = 1.f;
  WeightsView w;
  w.params = params.data();
  w.grads = grads.data();
  w.stats = stats.data();
  w.counts = counts.data();
  const BnSlots slots{0, s.c, 0, s.c, 0};
  Backend& cpu = cpu_backend();
  const Tensor xt = to_tensor(x, shape), rest = to_tensor(res, shape), dyt = to_tensor(r, shape);
  BnSaved saved;
  Tensor d_res;
  const Tensor yt = cpu.bn_train_forward(s, w, slots, xt, &rest, true, &saved);
  const Tensor dxt = cpu.bn_train_backward(s, w, slots, xt, saved, &yt, true, dyt, &d_res);
  auto near = [](const char* what, const float* got, const V& ref) {
    for (size_t i = 0; i < ref.size(); ++i)
      ASSERT_NEAR(got[i], ref[i], 1e-4 * std::max(1.0, std::fabs(ref[i]))) << what << "[" << i << "]";
  };
  near("backend y", yt.data<float>(), y);
  near("backend dx", dxt.data<float>(), dx);
  near("backend d residual", d_res.data<float>(), pre);
  near("backend dgamma", grads.data(), dg);
  near("backend dbeta", grads.data() + s.c, db);
}
