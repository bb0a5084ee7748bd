// kernels/cuda/pdl.cuh: programmatic dependent launch (PDL, sm_90+) for the kernels of the decode
// chain. A kernel launched with launch_kernel(..., pdl = true) may start while the previous kernel
// of its stream (or graph) is still running, which hides the launch and ramp-up latency that
// otherwise sits between two dependent kernels (a few microseconds each, ~100 times per decode
// step of a 1B model).
//
// The contract every PDL kernel keeps (the chain of waits is what makes it safe):
//  - every thread executes pdl_wait() before it reads anything an earlier kernel of the stream
//    wrote and before it writes anything at all; only data that no kernel of the chain writes
//    (weights, tables uploaded before the chain) may be read before it;
//  - every CTA executes pdl_wait() before it exits, on every path (so this grid's completion
//    implies the previous grid's, and a later kernel that waits for this one also sees what the
//    kernels before it wrote);
//  - pdl_launch_dependents() may be called anywhere (it lets the next PDL kernel's CTAs be
//    scheduled; they wait in their own pdl_wait()).
// Both device calls are no-ops before sm_90 and when the kernel was launched without the
// attribute, so one kernel body serves every launch.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace cuda {

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// True when the current device supports PDL (sm_90+, cached per device) and the kPdl knob
// (ELI_PDL, kernels/cuda_tuning_knobs.h) is not 0. kernels/cuda/pdl.cu.
bool pdl_enabled();

// Launches kernel<<<grid, block, smem, stream>>>(args...), with the programmatic stream
// serialization attribute when pdl is true. Throws eli::Error(kDevice) if the launch fails.
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl,
                   Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  ELI_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace cuda
}  // namespace eli
