// runtime/device/cuda/cuda_device.cc: the CUDA Device: memory from eli's caching pool, pinned host
// memory from a cudaHostAlloc pool, copies and memsets on the device's own non-blocking stream,
// CUDA streams and events, the device's properties, and the CUDA entry points of device.h.
//
// Invariants: with stream == nullptr a copy or memset uses the device's stream and returns only
// when it is complete (so host buffers may be reused at once); with an explicit stream it is
// asynchronous and ordered on that stream. Pool blocks are tagged with the device's stream, so
// kernels on default_stream() may use freed-and-reused blocks without extra synchronization.
// Every method sets the device for its own CUDA calls (any thread may call it); the constructor
// makes the device current on the constructing thread, make_current() on any other.
// cuda_device_count() returns 0 (never throws) when the driver or the GPU is absent.
#include <cuda_runtime.h>

#include <memory>

#include "eli/error.h"
#include "runtime/device/cuda/cublaslt_dynamic.h"
#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/cuda/cuda_memory_pool.h"
#include "runtime/device/cuda/cuda_stream.h"
#include "runtime/device/cuda/cuda_stream_impl.h"
#include "runtime/device/cuda/pinned_host_pool.h"
#include "runtime/device/current_device.h"
#include "runtime/device/pooled_device.h"
#include "runtime/device/step_graph.h"

namespace eli {
namespace {

DeviceProperties query_properties(int index) {
  cudaDeviceProp prop{};
  ELI_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  DeviceProperties p;
  p.id = DeviceId{DeviceKind::kCUDA, index};
  p.name = prop.name;
  p.total_memory_bytes = prop.totalGlobalMem;
  p.compute_capability = 10 * prop.major + prop.minor;
  p.n_compute_units = prop.multiProcessorCount;
  p.alignment = 256;  // cudaMalloc's
  p.host_memory = false;
  p.unified_memory = prop.integrated != 0;  // Jetson: one physical memory
  p.async_execution = true;
  p.supports_graphs = graphs_supported();
  p.maps_pinned_host = prop.unifiedAddressing != 0 && prop.canMapHostMemory != 0;
  return p;
}

class CudaDevice final : public PooledDevice {
 public:
  CudaDevice(int index, const DeviceOptions& options)
      : PooledDevice(options), index_(index), stream_(index, 0), pool_(index) {
    properties_ = query_properties(index);
    cuda_set_current_device(index);
  }
  ~CudaDevice() override {
    // Queued work may still read pool memory: let it finish before the pool frees everything.
    CudaDeviceGuard guard(index_);
    ELI_CUDA_WARN(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_.native())));
  }

  DeviceId id() const override { return DeviceId{DeviceKind::kCUDA, index_}; }

  void copy_host_to_device(void* dst, const void* src, size_t bytes, void* stream) override {
    copy(dst, src, bytes, cudaMemcpyHostToDevice, stream);
  }
  void copy_device_to_host(void* dst, const void* src, size_t bytes, void* stream) override {
    copy(dst, src, bytes, cudaMemcpyDeviceToHost, stream);
  }
  void copy_device_to_device(void* dst, const void* src, size_t bytes, void* stream) override {
    copy(dst, src, bytes, cudaMemcpyDeviceToDevice, stream);
  }
  void copy_device_to_device_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                                size_t rows, void* stream) override {
    if (width == 0 || rows == 0) return;
    ELI_CHECK(dst != nullptr && src != nullptr && dst_pitch >= width && src_pitch >= width,
              "2-d copy of ", rows, " x ", width, " bytes with a null pointer or a pitch below the width");
    CudaDeviceGuard guard(index_);
    cudaStream_t s = stream ? static_cast<cudaStream_t>(stream) : native_stream();
    ELI_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, cudaMemcpyDeviceToDevice, s));
    if (stream == nullptr) ELI_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  void memset_zero(void* dst, size_t bytes, void* stream) override {
    if (bytes == 0) return;
    ELI_CHECK(dst != nullptr, "memset_zero of ", bytes, " bytes to null");
    CudaDeviceGuard guard(index_);
    cudaStream_t s = stream ? static_cast<cudaStream_t>(stream) : native_stream();
    ELI_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, s));
    if (stream == nullptr) ELI_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  void synchronize() override {
    CudaDeviceGuard guard(index_);
    ELI_CUDA_CHECK(cudaDeviceSynchronize());
  }
  uint64_t available_bytes() const override { return pool_.device_free_bytes(); }
  uint64_t total_bytes() const override {
    CudaDeviceGuard guard(index_);
    size_t free_b = 0, total_b = 0;
    ELI_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return total_b;
  }
  SizeClassPool& pool() override { return pool_.pool(); }
  SizeClassPool& pinned_pool() override { return pinned_.pool(); }

  const Stream& default_stream() const override { return stream_; }
  std::unique_ptr<Stream> create_stream(int priority) const override {
    return std::make_unique<CudaStreamImpl>(index_, priority);
  }
  std::unique_ptr<Event> create_event(bool timing) const override {
    return std::make_unique<CudaEventImpl>(index_, timing);
  }
  void make_current() const override { cuda_set_current_device(index_); }

 private:
  cudaStream_t native_stream() const { return static_cast<cudaStream_t>(stream_.native()); }
  void copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, void* stream) {
    if (bytes == 0) return;
    ELI_CHECK(dst != nullptr && src != nullptr, "copy of ", bytes, " bytes with a null pointer");
    CudaDeviceGuard guard(index_);
    cudaStream_t s = stream ? static_cast<cudaStream_t>(stream) : native_stream();
    ELI_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s));
    if (stream == nullptr) ELI_CUDA_CHECK(cudaStreamSynchronize(s));
  }

  int index_;
  CudaStreamImpl stream_;  // declared before the pools: destroyed after them
  CudaMemoryPool pool_;
  PinnedHostPool pinned_;
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

bool cuda_loads_kernels_lazily() {
  if (cuda_device_count() == 0) return false;
  // The driver's cuModuleGetLoadingMode through the runtime (eli links no libcuda).
  using GetMode = int (*)(int*);  // CUresult cuModuleGetLoadingMode(CUmoduleLoadingMode*)
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
#if CUDART_VERSION >= 12050
  const cudaError_t e = cudaGetDriverEntryPointByVersion("cuModuleGetLoadingMode", &fn, 12000, cudaEnableDefault, &found);
#else
  const cudaError_t e = cudaGetDriverEntryPoint("cuModuleGetLoadingMode", &fn, cudaEnableDefault, &found);
#endif
  if (e != cudaSuccess || found != cudaDriverEntryPointSuccess || fn == nullptr) {
    (void)cudaGetLastError();
    return true;  // an old driver: assume the default, lazy
  }
  int mode = 0;
  if (reinterpret_cast<GetMode>(fn)(&mode) != 0) return true;
  return mode != 1;  // CU_MODULE_EAGER_LOADING = 1, CU_MODULE_LAZY_LOADING = 2
}

int cuda_current_device() {
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return current;
}

void cuda_set_current_device(int index) {
  if (cuda_current_device() == index) return;
  const int n = cuda_device_count();
  ELI_CHECK_KIND(kDevice, index >= 0 && index < n, "cuda:", index, " does not exist (", n, " CUDA device",
                 n == 1 ? "" : "s", " visible)");
  ELI_CUDA_CHECK(cudaSetDevice(index));
}

std::unique_ptr<Device> create_cuda_device(int index, const DeviceOptions& options) {
  const int n = cuda_device_count();
  ELI_CHECK_KIND(kDevice, index >= 0 && index < n, "cuda:", index, " does not exist (", n,
                 " CUDA device", n == 1 ? "" : "s", " visible)");
  cuda::require_cublaslt();  // loaded at run time: a clear error now, not at the first GEMM
  return std::make_unique<CudaDevice>(index, options);
}

}  // namespace eli
