// kernels/cuda/tuning_knobs.cu: the decode kernels' tuning knobs (kernels/cuda/tuning_knobs.h).
#include "kernels/cuda/tuning_knobs.h"

#include <cuda_runtime.h>

#include <cstdlib>

#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace cuda {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v == nullptr || *v == '\0' ? fallback : std::atoi(v);
}

void apply_env_carveout(const void* kernel, const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return;
  ELI_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, std::atoi(v)));
}

}  // namespace cuda
}  // namespace eli
