// CPU reference ops (in double) against PyTorch's operators (in float64): the values, not only the shapes.
#include <gtest/gtest.h>

#include "fixture.h"
#include "moco/cpu_ops.h"
#include "tolerances.h"

using namespace moco;
using namespace moco::test;

namespace {
const Fixture& ops() {
  static Fixture f("ops.bin");
  return f;
}
void check(const std::string& what, const std::vector<double>& got, const std::string& key) {
  auto want = ops().vec<double>(key);
  ASSERT_EQ(got.size(), want.size()) << what;
  expect_close(what, got.data(), want.data(), (int64_t)got.size(), tol::kOpF64Rel, tol::kOpF64Abs);
}
const double* p(const std::string& key) { return ops().get(key).data<double>(); }
}  // namespace

TEST(OpsVsTorch, Conv2d) {
  cpu::ConvShape s{2, 3, 9, 7, 5, 3, 3, 2, 1};
  std::vector<double> y(2 * 5 * s.ho() * s.wo()), dx(2 * 3 * 9 * 7), dw(5 * 3 * 9, 0.0);
  cpu::conv2d_forward(s, p("conv.x"), p("conv.w"), y.data());
  cpu::conv2d_backward(s, p("conv.x"), p("conv.w"), p("conv.dy"), dx.data(), dw.data());
  check("conv y", y, "conv.y");
  check("conv dx", dx, "conv.dx");
  check("conv dw", dw, "conv.dw");
}

TEST(OpsVsTorch, BatchNormTrainAndEval) {
  cpu::BNShape s{4, 3, 25};
  const int n = 4 * 3 * 25;
  std::vector<double> y(n), dx(n), dg(3, 0.0), db(3, 0.0), mean(3), invstd(3);
  auto rm = ops().vec<double>("bn.rm0"), rv = ops().vec<double>("bn.rv0");
  int64_t count = 0;
  cpu::batchnorm_train_forward<double>(s, p("bn.x"), p("bn.gamma"), p("bn.beta"), 1e-5, 0.1, y.data(), mean.data(),
                                       invstd.data(), rm.data(), rv.data(), &count);
  cpu::batchnorm_train_backward(s, p("bn.x"), p("bn.gamma"), mean.data(), invstd.data(), p("bn_train.dy"), dx.data(),
                                dg.data(), db.data());
  check("bn train y", y, "bn_train.y");
  check("bn train dx", dx, "bn_train.dx");
  check("bn train dgamma", dg, "bn_train.dgamma");
  check("bn train dbeta", db, "bn_train.dbeta");
  check("bn running_mean", rm, "bn_train.rm");
  check("bn running_var (unbiased)", rv, "bn_train.rv");
  std::fill(dg.begin(), dg.end(), 0.0);
  std::fill(db.begin(), db.end(), 0.0);
  cpu::batchnorm_eval_forward<double>(s, p("bn.x"), p("bn.gamma"), p("bn.beta"), rm.data(), rv.data(), 1e-5, y.data());
  cpu::batchnorm_eval_backward<double>(s, p("bn.x"), p("bn.gamma"), rm.data(), rv.data(), 1e-5, p("bn_eval.dy"),
                                       dx.data(), dg.data(), db.data());
  check("bn eval y", y, "bn_eval.y");
  check("bn eval dx", dx, "bn_eval.dx");
  check("bn eval dgamma", dg, "bn_eval.dgamma");
  check("bn eval dbeta", db, "bn_eval.dbeta");
}

TEST(OpsVsTorch, PoolsAndRelu) {
  cpu::PoolShape s{2, 3, 7, 6, 3, 2, 1};
  const int n = 2 * 3 * 7 * 6;
  std::vector<double> y(2 * 3 * s.ho() * s.wo()), dx(n), gy(6), ry(n);
  std::vector<int64_t> idx(y.size());
  cpu::maxpool_forward(s, p("maxpool.x"), y.data(), idx.data());
  cpu::maxpool_backward(s, idx.data(), p("maxpool.dy"), dx.data());
  check("maxpool y", y, "maxpool.y");
  check("maxpool dx", dx, "maxpool.dx");
  cpu::avgpool_forward<double>(2, 3, 42, p("maxpool.x"), gy.data());
  cpu::avgpool_backward<double>(2, 3, 42, p("avgpool.dy"), dx.data());
  check("avgpool y", gy, "avgpool.y");
  check("avgpool dx", dx, "avgpool.dx");
  cpu::relu_forward<double>(n, p("maxpool.x"), ry.data());
  cpu::relu_backward<double>(n, ry.data(), p("relu.dy"), dx.data());
  check("relu y", ry, "relu.y");
  check("relu dx", dx, "relu.dx");
}

TEST(OpsVsTorch, LinearAndNormalize) {
  std::vector<double> y(12), dx(18), dw(24, 0.0), db(4, 0.0), yn(18), norms(3);
  cpu::linear_forward<double>(3, 6, 4, p("linear.x"), p("linear.w"), p("linear.b"), y.data());
  cpu::linear_backward<double>(3, 6, 4, p("linear.x"), p("linear.w"), p("linear.dy"), dx.data(), dw.data(), db.data());
  check("linear y", y, "linear.y");
  check("linear dx", dx, "linear.dx");
  check("linear dw", dw, "linear.dw");
  check("linear db", db, "linear.db");
  cpu::l2_normalize_forward<double>(3, 6, p("linear.x"), yn.data(), norms.data());
  cpu::l2_normalize_backward<double>(3, 6, yn.data(), norms.data(), p("l2norm.dy"), dx.data());
  check("l2norm y", yn, "l2norm.y");
  check("l2norm dx", dx, "l2norm.dx");
}

TEST(OpsVsTorch, ContrastiveLossAndGradient) {
  const int n = 4, c = 8, k = 11, m = 1 + k;
  std::vector<double> q(n * c), norms(n), logits(n * m), dlogits(n * m), dq(n * c), dfeat(n * c);
  cpu::l2_normalize_forward<double>(n, c, p("xent.feat"), q.data(), norms.data());
  cpu::moco_logits_forward<double>(n, c, k, q.data(), p("xent.k"), p("xent.queue"), 1.0 / 0.07, logits.data());
  double loss = cpu::softmax_xent_label0<double>(n, m, logits.data(), dlogits.data());
  cpu::moco_logits_backward<double>(n, c, k, dlogits.data(), p("xent.k"), p("xent.queue"), 1.0 / 0.07, dq.data());
  cpu::l2_normalize_backward<double>(n, c, q.data(), norms.data(), dq.data(), dfeat.data());
  check("logits", logits, "xent.logits");
  check("loss", {loss}, "xent.loss");
  check("dfeat", dfeat, "xent.dfeat");
}

TEST(OpsVsTorch, MomentumUpdateAndSgd) {
  auto k = ops().vec<double>("ema.k0");
  cpu::momentum_update<double>(10, 0.99, p("ema.q"), k.data());
  check("ema", k, "ema.k");
  auto param = ops().vec<double>("sgd.p0");
  std::vector<double> buf(10, 0.0);
  cpu::sgd_momentum_step<double>(10, 0.1, 0.9, 1e-2, param.data(), p("sgd.g0"), buf.data());
  cpu::sgd_momentum_step<double>(10, 0.1, 0.9, 1e-2, param.data(), p("sgd.g1"), buf.data());
  check("sgd after 2 steps", param, "sgd.p2");
}
