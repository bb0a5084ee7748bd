// kernels/cuda/sm_count.cu: see sm_count.h.
#include "kernels/cuda/sm_count.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>

#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace cuda {

int sm_count() {
  static std::atomic<int> cache[64];  // 0 = not yet known; devices past 64 are not cached
  int dev = 0;
  ELI_CUDA_CHECK(cudaGetDevice(&dev));
  const bool cached = dev >= 0 && dev < 64;
  int v = cached ? cache[dev].load(std::memory_order_relaxed) : 0;
  if (v == 0) {
    ELI_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
    v = std::max(v, 1);
    if (cached) cache[dev].store(v, std::memory_order_relaxed);
  }
  return v;
}

}  // namespace cuda
}  // namespace eli
