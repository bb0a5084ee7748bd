// runtime/device/cuda/cuda_device.cc: the CUDA Device: memory from eli's caching pool, copies and
// memsets on the device's own non-blocking stream, and the CUDA entry points of device.h.
//
// Invariants: with stream == nullptr a copy or memset uses the device's stream and returns only
// when it is complete (so host buffers may be reused at once); with an explicit stream it is
// asynchronous and ordered on that stream. Pool blocks are tagged with the device's stream, so
// kernels on default_stream() may use freed-and-reused blocks without extra synchronization.
// cuda_device_count() returns 0 (never throws) when the driver or the GPU is absent.
#include <cuda_runtime.h>

#include <memory>

#include "eli/error.h"
#include "runtime/device/cuda/cublaslt_dynamic.h"
#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/cuda/cuda_memory_pool.h"
#include "runtime/device/cuda/cuda_stream.h"
#include "runtime/device/pooled_device.h"

namespace eli {
namespace {

class CudaDevice final : public PooledDevice {
 public:
  explicit CudaDevice(int index) : index_(index), stream_(index), pool_(index) {}
  ~CudaDevice() override {
    // Queued work may still read pool memory: let it finish before the pool frees everything.
    CudaDeviceGuard guard(index_);
    ELI_CUDA_WARN(cudaStreamSynchronize(stream_.get()));
  }

  DeviceId id() const override { return DeviceId{DeviceKind::kCUDA, index_}; }
  void* allocate(size_t bytes) override { return pool_.allocate(bytes, stream_.get()); }
  void free(void* ptr) override { pool_.free(ptr); }

  void copy_host_to_device(void* dst, const void* src, size_t bytes, void* stream) override {
    copy(dst, src, bytes, cudaMemcpyHostToDevice, stream);
  }
  void copy_device_to_host(void* dst, const void* src, size_t bytes, void* stream) override {
    copy(dst, src, bytes, cudaMemcpyDeviceToHost, stream);
  }
  void copy_device_to_device(void* dst, const void* src, size_t bytes, void* stream) override {
    copy(dst, src, bytes, cudaMemcpyDeviceToDevice, stream);
  }
  void memset_zero(void* dst, size_t bytes, void* stream) override {
    if (bytes == 0) return;
    ELI_CHECK(dst != nullptr, "memset_zero of ", bytes, " bytes to null");
    CudaDeviceGuard guard(index_);
    cudaStream_t s = stream ? static_cast<cudaStream_t>(stream) : stream_.get();
    ELI_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, s));
    if (stream == nullptr) ELI_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  void synchronize() override {
    CudaDeviceGuard guard(index_);
    ELI_CUDA_CHECK(cudaDeviceSynchronize());
  }
  MemoryStats memory_stats() const override { return pool_.stats().to_memory_stats(); }
  uint64_t available_bytes() const override { return pool_.device_free_bytes(); }
  uint64_t total_bytes() const override {
    CudaDeviceGuard guard(index_);
    size_t free_b = 0, total_b = 0;
    ELI_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return total_b;
  }
  SizeClassPool& pool() override { return pool_.pool(); }
  void* default_stream() const override { return stream_.get(); }

 private:
  void copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, void* stream) {
    if (bytes == 0) return;
    ELI_CHECK(dst != nullptr && src != nullptr, "copy of ", bytes, " bytes with a null pointer");
    CudaDeviceGuard guard(index_);
    cudaStream_t s = stream ? static_cast<cudaStream_t>(stream) : stream_.get();
    ELI_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s));
    if (stream == nullptr) ELI_CUDA_CHECK(cudaStreamSynchronize(s));
  }

  int index_;
  CudaStream stream_;    // declared before pool_: destroyed after it
  CudaMemoryPool pool_;
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no GPU: not an error for the caller
    return 0;
  }
  return n;
}

bool cuda_compiled() { return true; }

std::unique_ptr<Device> create_cuda_device(int index) {
  const int n = cuda_device_count();
  ELI_CHECK_KIND(kDevice, index >= 0 && index < n, "cuda:", index, " does not exist (", n,
                 " CUDA device", n == 1 ? "" : "s", " visible)");
  cuda::require_cublaslt();  // loaded at run time: a clear error now, not at the first GEMM
  return std::make_unique<CudaDevice>(index);
}

}  // namespace eli
