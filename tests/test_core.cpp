#include <gtest/gtest.h>

#include "moco/cpu_ops.h"
#include "moco/rng.h"
#include "moco/tensor.h"

using namespace moco;

TEST(Tensor, ShapeStridesAndViews) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_TRUE(t.is_contiguous());
  t.data<float>()[13] = 5.f;
  Tensor r = t.reshape({6, 4});
  EXPECT_EQ(r.data<float>()[13], 5.f);
  Tensor s = t.slice_rows(1, 2);
  EXPECT_EQ(s.size(0), 1);
  EXPECT_EQ(s.data<float>()[1], 5.f);
}

TEST(Tensor, ErrorsNameTheBadValue) {
  Tensor t = Tensor::zeros({2, 3});
  try {
    t.reshape({4, 2});
    FAIL() << "reshape should throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(2, 3)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(4, 2)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.data<double>(), Error);
  EXPECT_THROW(t.expect_shape({2, 4}, "x"), Error);
  EXPECT_NO_THROW(t.expect_shape({-1, 3}, "x"));
  EXPECT_THROW(t.slice_rows(1, 3), Error);
}

// Tensor::adopt owns any allocation through its release function, and lays 4-D tensors out channels-last on
// request (the GPU's activations): logical (N, C, H, W) shape, NHWC strides.
TEST(Tensor, AdoptReleasesOnceAndKnowsChannelsLast) {
  int released = 0;
  float buffer[2 * 3 * 4 * 5];
  {
    Tensor t = Tensor::adopt(buffer, sizeof buffer, {2, 3, 4, 5}, DType::F32, Device::CPU,
                             [&](void* p) { EXPECT_EQ(p, buffer); ++released; }, MemoryFormat::ChannelsLast);
    EXPECT_TRUE(t.is_channels_last());
    EXPECT_FALSE(t.is_contiguous());
    EXPECT_EQ(t.strides(), (Shape{4 * 5 * 3, 1, 5 * 3, 3}));
    Tensor view = t.slice_rows(1, 2);  // shares the storage: no release yet
    EXPECT_EQ(static_cast<float*>(view.raw()), buffer + 60);
    t = Tensor();
    EXPECT_EQ(released, 0);
  }
  EXPECT_EQ(released, 1);
  EXPECT_THROW(Tensor::adopt(buffer, sizeof buffer, {2, 60}, DType::F32, Device::CPU, nullptr,
                             MemoryFormat::ChannelsLast),
               Error);  // channels-last needs 4-D
  EXPECT_THROW(Tensor::adopt(buffer, 8, {2, 3}, DType::F32, Device::CPU, nullptr), Error);  // too few bytes
}

TEST(Rng, CounterBasedAndReproducible) {
  Rng a(7, mix_stream(1, 2)), b(7, mix_stream(1, 2)), c(7, mix_stream(1, 3));
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    uint32_t x = a.next_u32();
    EXPECT_EQ(x, b.next_u32());
    differs |= x != c.next_u32();
  }
  EXPECT_TRUE(differs);
  // moments of uniform and normal draws
  Rng r(1, 0);
  double su = 0, sn = 0, sn2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    su += r.uniform();
    double z = r.normal();
    sn += z;
    sn2 += z * z;
  }
  EXPECT_NEAR(su / n, 0.5, 0.005);
  EXPECT_NEAR(sn / n, 0.0, 0.01);
  EXPECT_NEAR(sn2 / n, 1.0, 0.02);
}

// Forward values against hand-computed numbers (the gradchecks cover the backwards).
TEST(CpuOps, SmallForwardValues) {
  // 1x1x3x3 input, 2x2 kernel of ones, stride 1, no pad: sums of 2x2 windows
  float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[4] = {1, 1, 1, 1}, y[4];
  cpu::conv2d_forward<float>({1, 1, 3, 3, 1, 2, 2, 1, 0}, x, w, y);
  EXPECT_FLOAT_EQ(y[0], 12);
  EXPECT_FLOAT_EQ(y[3], 28);
  // cross-entropy of equal logits is ln(M)
  float z[5] = {0, 0, 0, 0, 0};
  EXPECT_NEAR(cpu::softmax_xent_label0<float>(1, 5, z, nullptr), std::log(5.0), 1e-6);
  // SGD, torch semantics: p=1, g=0.5, wd=0.1, m=0.9, lr=0.1, two steps
  float p = 1, g = 0.5f, buf = 0;
  cpu::sgd_momentum_step<float>(1, 0.1f, 0.9f, 0.1f, &p, &g, &buf);
  EXPECT_FLOAT_EQ(buf, 0.6f);
  EXPECT_FLOAT_EQ(p, 0.94f);
  cpu::sgd_momentum_step<float>(1, 0.1f, 0.9f, 0.1f, &p, &g, &buf);
  EXPECT_NEAR(buf, 0.9f * 0.6f + 0.5f + 0.094f, 1e-6);
  // momentum update
  float tq = 2, tk = 1;
  cpu::momentum_update<float>(1, 0.999, &tq, &tk);
  // PyTorch: k * 0.999f + q * (float)(1. - 0.999), i.e. 0.001f (1.f - 0.999f would be 0.00099998713f)
  volatile float keep = 0.999f, take = 0.001f;  // volatile: the products are float products, rounded
  const float k_part = 1.f * keep, q_part = 2.f * take;
  EXPECT_EQ(tk, k_part + q_part);
  EXPECT_NE(0.001f, 1.f - 0.999f);
  // BN running statistics: unbiased variance, momentum 0.1
  float bx[4] = {1, 2, 3, 4}, g1 = 1, b0 = 0, by[4], m, is, rm = 0, rv = 1;
  int64_t nbt = 0;
  cpu::batchnorm_train_forward<float>({4, 1, 1}, bx, &g1, &b0, 1e-5f, 0.1f, by, &m, &is, &rm, &rv, &nbt);
  EXPECT_FLOAT_EQ(rm, 0.25f);
  EXPECT_NEAR(rv, 0.9f + 0.1f * (5.0f / 3.0f), 1e-6);
  EXPECT_EQ(nbt, 1);
  EXPECT_NEAR(by[0], -1.5f / std::sqrt(1.25f + 1e-5f), 1e-5);
}
