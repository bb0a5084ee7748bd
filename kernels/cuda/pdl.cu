// kernels/cuda/pdl.cu: whether programmatic dependent launch is used (kernels/cuda/pdl.cuh).
#include <atomic>

#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda_tuning_knobs.h"

namespace eli {
namespace cuda {

bool pdl_enabled() {
  static std::atomic<int> cache[64];  // 0 unknown, 1 no, 2 yes
  int dev = 0;
  ELI_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64) dev = 0;
  int v = cache[dev].load(std::memory_order_relaxed);
  if (v == 0) {
    int major = 0;
    ELI_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    v = major >= 9 ? 2 : 1;
    cache[dev].store(v, std::memory_order_relaxed);
  }
  return v == 2 && knob(Knob::kPdl) != 0;
}

}  // namespace cuda
}  // namespace eli
