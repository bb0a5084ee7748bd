// runtime/device/cuda/pinned_host_pool.cc: the cudaHostAlloc backend of the pinned host pool.
#include "runtime/device/cuda/pinned_host_pool.h"

#include <cuda_runtime.h>

#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/pooled_device.h"

namespace eli {
namespace {

class PinnedHostBackend final : public PoolBackend {
 public:
  void* alloc(size_t bytes) override {
    void* p = nullptr;
    cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    ELI_CUDA_CHECK(e);
    return p;
  }
  void free(void* ptr, size_t) override { ELI_CUDA_WARN(cudaFreeHost(ptr)); }
  uint64_t free_bytes() const override { return host_available_bytes(); }
  const char* name() const override { return "pinned host"; }
};

}  // namespace

PinnedHostPool::PinnedHostPool(SizeClassPoolOptions options)
    : backend_(std::make_unique<PinnedHostBackend>()),
      pool_(std::make_unique<SizeClassPool>(backend_.get(), options)) {}

PinnedHostPool::~PinnedHostPool() { pool_.reset(); }

}  // namespace eli
