// Counter-based random numbers (Philox4x32-10). Every draw is a pure function of (seed, stream, index), so
// a draw keyed by (seed, epoch, sample, view) is the same on CPU and GPU, in any thread, and after a resume.
#pragma once
#include <cmath>
#include <cstdint>

namespace moco {

struct Philox {
  // One Philox4x32 block: 4 random 32-bit words from a 128-bit counter and a 64-bit key.
  static void block(const uint32_t ctr_in[4], uint64_t key, uint32_t out[4]) {
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; ++r) {
      uint64_t p0 = (uint64_t)0xD2511F53u * c0;
      uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
      uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
      uint32_t n1 = (uint32_t)p1;
      uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
      uint32_t n3 = (uint32_t)p0;
      c0 = n0; c1 = n1; c2 = n2; c3 = n3;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
  }
};

// Combines several keys (epoch, sample, view, ...) into one 64-bit stream id.
inline uint64_t mix_stream(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A stream of draws for one (seed, stream) pair; `index` counts 32-bit words consumed.
class Rng {
 public:
  Rng(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}
  uint32_t next_u32() {
    if (have_ == 0) {
      uint32_t ctr[4] = {(uint32_t)block_, (uint32_t)(block_ >> 32), (uint32_t)stream_, (uint32_t)(stream_ >> 32)};
      Philox::block(ctr, seed_, buf_);
      ++block_;
      have_ = 4;
    }
    return buf_[4 - have_--];
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() {
    uint64_t hi = next_u32() >> 5, lo = next_u32() >> 6;
    return (double)(hi * 67108864ull + lo) * (1.0 / 9007199254740992.0);
  }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Standard normal (Box-Muller; one value per call for simplicity of replay).
  double normal() {
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) { return (uint64_t)(uniform() * (double)n) % n; }

 private:
  uint64_t seed_, stream_;
  uint64_t block_ = 0;
  uint32_t buf_[4] = {0, 0, 0, 0};
  int have_ = 0;
};

}  // namespace moco
