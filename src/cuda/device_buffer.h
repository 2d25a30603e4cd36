// A typed device allocation owned by one object (tests, benchmarks and one-off buffers; the training step
// takes its activations from the backend's block cache instead). Every CUDA call is checked, and a failure names the call,
// the buffer and its size.
#pragma once
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "check.h"

namespace moco::cuda {

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // n elements of T, uninitialised; `what` names the buffer in error messages.
  explicit DeviceBuffer(size_t n, std::string what = "device buffer") : n_(n), what_(std::move(what)) {
    if (n_ == 0) return;
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes());
    if (err != cudaSuccess) {
      cudaGetLastError();
      ::moco::fail("cudaMalloc(", bytes(), " bytes) for ", what_, " (", n_, " elements of ", sizeof(T),
                   " bytes) failed: ", cudaGetErrorString(err));
    }
    p_ = static_cast<T*>(p);
  }
  // From host values: allocate and upload.
  explicit DeviceBuffer(const std::vector<T>& host, std::string what = "device buffer")
      : DeviceBuffer(host.size(), std::move(what)) {
    upload(host);
  }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);  // never throws; an error here would be a sticky one reported by the next call
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)), what_(std::move(o.what_)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      if (p_) cudaFree(p_);
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
      what_ = std::move(o.what_);
    }
    return *this;
  }

  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }

  void upload(const std::vector<T>& host) {
    check_size(host.size(), "upload to");
    if (n_) check(cudaMemcpy(p_, host.data(), bytes(), cudaMemcpyHostToDevice), "cudaMemcpy(host to device)");
  }
  void download(std::vector<T>& host) const {
    host.resize(n_);
    if (n_) check(cudaMemcpy(host.data(), p_, bytes(), cudaMemcpyDeviceToHost), "cudaMemcpy(device to host)");
  }
  std::vector<T> download() const {
    std::vector<T> host;
    download(host);
    return host;
  }
  // Every byte set to `byte`: 0xFF makes float, double and bf16 elements NaN (and integers -1), so an
  // element a kernel forgot to write shows up in a comparison.
  void fill_bytes(int byte) {
    if (n_) check(cudaMemset(p_, byte, bytes()), "cudaMemset");
  }
  void poison() { fill_bytes(0xFF); }

 private:
  void check_size(size_t host_n, const char* dir) const {
    if (host_n != n_) ::moco::fail(dir, " ", what_, ": host holds ", host_n, " elements, device ", n_);
  }
  void check(cudaError_t err, const char* call) const {
    if (err != cudaSuccess)
      ::moco::fail(call, " of ", bytes(), " bytes for ", what_, " failed: ", cudaGetErrorString(err));
  }

  T* p_ = nullptr;
  size_t n_ = 0;
  std::string what_;
};

}  // namespace moco::cuda
