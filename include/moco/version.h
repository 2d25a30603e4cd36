#pragma once
namespace moco {
inline constexpr const char* kVersion = "0.1.0";
#ifdef MOCO_HAVE_CUDA
inline constexpr bool kHaveCuda = true;
#else
inline constexpr bool kHaveCuda = false;
#endif
}  // namespace moco
