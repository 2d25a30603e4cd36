// Shared by the GPU benchmarks (bench/*.cpp but augment.cpp): the no-device
// exit, CUDA-event timing (warm-up, median, L2 flushed before every timed run, clean lines left in it) and the
// copy-bandwidth ceiling.
//
// Conventions: bandwidth counts the bytes a kernel must move at least (each input read once, each output
// written once); the copy ceiling is a device-to-device cudaMemcpy of a buffer far larger than L2, counted
// the same way (read + write, 2 x bytes), so "of copy" is a like-for-like fraction.
#pragma once
#include "moco/bf16_host.h"
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../src/cuda/device_buffer.h"
#include "l2_flush.cuh"
#include "moco/cuda_runtime.h"

namespace moco::bench {

constexpr int kWarmup = 3;
constexpr int kReps = 25;  // the median of these is reported

// Prints "no CUDA device: <reason>" and returns true when no GPU can be used (the caller then exits 0).
inline bool no_device() {
  const std::string reason = cuda::no_device_reason();
  if (reason.empty()) return false;
  std::printf("no CUDA device: %s\n", reason.c_str());
  return true;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

class Timer {
 public:
  Timer() {
    MOCO_CUDA_CHECK(cudaEventCreate(&start_));
    MOCO_CUDA_CHECK(cudaEventCreate(&stop_));
    int dev = 0;
    MOCO_CUDA_CHECK(cudaGetDevice(&dev));
    int l2 = 0;
    MOCO_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    // twice L2 (at least 64 MiB): writing it evicts whatever the previous run left in L2, reading it after
    // the write leaves clean lines (kernels/l2_flush.cu says why)
    flush_ = cuda::DeviceBuffer<char>(std::max<size_t>((size_t)l2 * 2, (size_t)64 << 20), "L2 flush buffer");
  }
  ~Timer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Median milliseconds of `run` (which enqueues work on the default stream) over kReps runs after kWarmup,
  // each starting with a cold L2 that holds no dirty lines. Every launcher checks its own launch; the last error
  // is checked here too.
  // The device's time, not the host's: before the start event the stream waits on a host callback that
  // sleeps a millisecond, so `run` is fully queued before the device reaches it. Without that wait, a call
  // whose host side is slow (cuDNN's legacy API: about 0.1 ms a call on an H200) was timed with the device
  // idle behind it (bench/results/2026-11-26-h200-run2.md against run4.md); the host's cost is reported
  // where it counts, beside whole steps (moco bench: host issue ms).
  template <class Run>
  double median_ms(Run&& run, int reps = kReps) {
    for (int i = 0; i < kWarmup; ++i) run();
    MOCO_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<double> ms;
    for (int i = 0; i < reps; ++i) {
      MOCO_CUDA_CHECK(cudaMemsetAsync(flush_.get(), i & 0xff, flush_.bytes(), nullptr));
      kernels::l2_flush_read(flush_.get(), flush_.bytes(), nullptr);
      MOCO_CUDA_CHECK(cudaLaunchHostFunc(nullptr, &hold_the_stream, nullptr));
      MOCO_CUDA_CHECK(cudaEventRecord(start_, nullptr));
      run();
      MOCO_CUDA_CHECK(cudaEventRecord(stop_, nullptr));
      MOCO_CUDA_CHECK(cudaEventSynchronize(stop_));
      MOCO_CUDA_CHECK(cudaGetLastError());
      float t = 0;
      MOCO_CUDA_CHECK(cudaEventElapsedTime(&t, start_, stop_));
      ms.push_back(t);
    }
    return median(ms);
  }

 private:
  static void CUDART_CB hold_the_stream(void*) { std::this_thread::sleep_for(std::chrono::milliseconds(1)); }
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  cuda::DeviceBuffer<char> flush_;
};

// Device copy bandwidth in GB/s (1e9 bytes/s, read + write counted): cudaMemcpy device to device of 512 MiB.
inline double copy_bandwidth_gbs(Timer& timer) {
  const size_t bytes = (size_t)512 << 20;
  cuda::DeviceBuffer<char> a(bytes, "copy source"), b(bytes, "copy destination");
  a.fill_bytes(1);
  const double ms = timer.median_ms(
      [&] { MOCO_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, nullptr)); });
  return 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
}


// The header every GPU benchmark prints: the device and the measured copy ceiling.
inline double print_device_and_copy_bandwidth(Timer& timer) {
  const double bw = copy_bandwidth_gbs(timer);
  std::printf("device: %s\n", cuda::device_description(0).c_str());
  std::printf("copy bandwidth (cudaMemcpy D2D 512 MiB, read+write, median of %d): %.0f GB/s\n", kReps, bw);
  return bw;
}

// The main of a GPU benchmark: exits 0 without a device; runs `check` (the kernels against the CPU) and
// refuses to time when it fails; prints the device and its copy ceiling; runs `time(timer, copy_gbs)`. An
// error is printed and exits 1. MOCO_BENCH_CHECK_ONLY=1 stops after the check (the emulated builds run the
// checks as tests, where a timing would mean nothing).
template <class Check, class Time>
int run(Check&& check, Time&& time) {
  if (no_device()) return 0;
  try {
    if (!check()) return 1;
    if (std::getenv("MOCO_BENCH_CHECK_ONLY")) {
      std::printf("check passed; MOCO_BENCH_CHECK_ONLY is set, so nothing is timed\n");
      return 0;
    }
    Timer timer;
    const double copy_gbs = print_device_and_copy_bandwidth(timer);
    time(timer, copy_gbs);
    return 0;
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
}

}  // namespace moco::bench
