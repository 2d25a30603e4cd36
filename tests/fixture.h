// Reader for the golden fixtures written by tools/torch_twin.py (format described there).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "moco/tensor.h"

namespace moco::test {

class Fixture {
 public:
  explicit Fixture(const std::string& file) {
    const std::string path = std::string(MOCO_FIXTURE_DIR) + "/" + file;
    std::ifstream in(path, std::ios::binary);
    MOCO_CHECK(in.good(), "cannot open fixture ", path, "; regenerate with `python3 tools/torch_twin.py fixtures`");
    char magic[8];
    in.read(magic, 8);
    MOCO_CHECK(in && std::memcmp(magic, "MOCOFIX\0", 8) == 0, path, " is not a moco fixture (bad magic)");
    uint32_t version = 0, count = 0;
    in.read(reinterpret_cast<char*>(&version), 4).read(reinterpret_cast<char*>(&count), 4);
    MOCO_CHECK(version == 1, path, ": fixture version ", version, ", this reader knows version 1");
    for (uint32_t i = 0; i < count; ++i) {
      uint32_t len = 0, ndim = 0;
      uint8_t code = 0;
      in.read(reinterpret_cast<char*>(&len), 4);
      std::string name(len, '\0');
      in.read(name.data(), len);
      in.read(reinterpret_cast<char*>(&code), 1).read(reinterpret_cast<char*>(&ndim), 4);
      Shape shape(ndim);
      in.read(reinterpret_cast<char*>(shape.data()), 8 * ndim);
      DType dt = code == 0 ? DType::F32 : code == 1 ? DType::F64 : DType::I64;
      MOCO_CHECK(code == 0 || code == 1 || code == 4, path, ": tensor '", name, "' has unknown dtype code ", (int)code);
      Tensor t = Tensor::empty(shape, dt);
      in.read(static_cast<char*>(t.raw()), (std::streamsize)t.nbytes());
      MOCO_CHECK(in.good(), path, ": truncated at tensor '", name, "'");
      tensors_[name] = t;
    }
  }
  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  const Tensor& get(const std::string& name) const {
    auto it = tensors_.find(name);
    MOCO_CHECK(it != tensors_.end(), "fixture has no tensor '", name, "'");
    return it->second;
  }
  template <class T>
  std::vector<T> vec(const std::string& name) const {
    const Tensor& t = get(name);
    return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
  }
  const std::map<std::string, Tensor>& all() const { return tensors_; }

 private:
  std::map<std::string, Tensor> tensors_;
};

// |a - b| <= atol + rtol * |b| + norm_rtol * max|b| elementwise, reporting the first few misses and the
// worst one. The norm_rtol term bounds the error relative to the tensor's largest entry: float32 rounding in
// a sum of many terms is proportional to the terms' size, not to the (possibly cancelled) result.
template <class A, class B>
void expect_close(const std::string& what, const A* a, const B* b, int64_t n, double rtol, double atol,
                  double norm_rtol = 0) {
  int64_t bad = 0;
  double worst = 0, bmax = 0;
  int64_t worst_i = -1;
  for (int64_t i = 0; i < n; ++i) bmax = std::max(bmax, std::fabs((double)b[i]));
  for (int64_t i = 0; i < n; ++i) {
    const double d = std::fabs((double)a[i] - (double)b[i]);
    const double tol = atol + rtol * std::fabs((double)b[i]) + norm_rtol * bmax;
    if (!(d <= tol)) {
      if (bad < 3) ADD_FAILURE() << what << "[" << i << "]: got " << a[i] << ", expected " << b[i];
      ++bad;
    }
    if (d > worst || std::isnan(d)) worst = d, worst_i = i;
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << n << " elements outside tolerance; worst |diff| " << worst
                    << " at " << worst_i;
}

}  // namespace moco::test
