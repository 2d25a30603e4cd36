// Fuzzes the untrusted-image decode path: any byte string must give either an RGB image within the limits
// or false with a reason, never a crash, a hang or an out-of-bounds access.
//   ./build-fuzz/fuzz_decode_image -max_len=65536 -malloc_limit_mb=256 corpus/
// The limits below bound every legitimate allocation far under 256 MiB, so a larger one is a finding.
// Small limits keep each run fast; the checks that guard them are the same at any size.
#include <cstdlib>

#include "moco/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  moco::DecodeLimits limits;
  limits.max_bytes = 1 << 20;
  limits.max_side = 2048;
  limits.max_pixels = 1 << 20;
  moco::Image img;
  std::string why;
  if (moco::decode_image(data, size, img, &why, limits)) {
    if (img.w < 1 || img.h < 1 || img.w > limits.max_side || img.h > limits.max_side ||
        (int64_t)img.w * img.h > limits.max_pixels || img.pixels.size() != (size_t)img.w * img.h * 3)
      std::abort();
  } else if (why.empty()) {
    std::abort();  // every refusal must say why
  }
  return 0;
}
