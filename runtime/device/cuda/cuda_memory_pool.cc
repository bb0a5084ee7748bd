// runtime/device/cuda/cuda_memory_pool.cc: the cudaMalloc backend of the device pool.
#include "runtime/device/cuda/cuda_memory_pool.h"

#include <cuda_runtime.h>

#include <string>

#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/cuda/cuda_stream.h"

namespace eli {
namespace {

class CudaMallocBackend final : public PoolBackend {
 public:
  explicit CudaMallocBackend(int device) : device_(device), name_("cuda:" + std::to_string(device)) {}
  void* alloc(size_t bytes) override {
    CudaDeviceGuard guard(device_);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // OOM is not sticky: clear it and let the pool report the numbers
      return nullptr;
    }
    ELI_CUDA_CHECK(e);
    return p;
  }
  void free(void* ptr, size_t) override {
    CudaDeviceGuard guard(device_);
    ELI_CUDA_WARN(cudaFree(ptr));
  }
  uint64_t free_bytes() const override {
    int previous = -1;
    if (cudaGetDevice(&previous) != cudaSuccess) return 0;
    if (previous != device_ && cudaSetDevice(device_) != cudaSuccess) return 0;
    size_t free_b = 0, total_b = 0;
    cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
    if (previous != device_) (void)cudaSetDevice(previous);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return free_b;
  }
  const char* name() const override { return name_.c_str(); }

 private:
  int device_;
  std::string name_;
};

}  // namespace

CudaMemoryPool::CudaMemoryPool(int device, SizeClassPoolOptions options)
    : device_(device),
      backend_(std::make_unique<CudaMallocBackend>(device)),
      pool_(std::make_unique<SizeClassPool>(backend_.get(), options)) {}

CudaMemoryPool::~CudaMemoryPool() { pool_.reset(); }

uint64_t CudaMemoryPool::device_free_bytes() const { return backend_->free_bytes(); }

}  // namespace eli
