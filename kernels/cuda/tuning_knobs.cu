// kernels/cuda/tuning_knobs.cu: apply_carveout_knob (kernels/cuda_tuning_knobs.h), the one knob
// helper that calls CUDA.
#include <cuda_runtime.h>

#include "kernels/cuda_tuning_knobs.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace cuda {

void apply_carveout_knob(const void* kernel, Knob k) {
  const int v = knob(k);
  if (v == kKnobUnset) return;
  ELI_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, v));
}

}  // namespace cuda
}  // namespace eli
