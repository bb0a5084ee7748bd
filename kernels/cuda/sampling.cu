// kernels/cuda/sampling.cu: the launcher of Op::kSample on CUDA (SampleArgs, kernels/sample_ops.h).
// The kernel body is kernels/cuda/sampling_kernel.cuh (shared with the CPU emulation test). One CTA
// of 1024 threads per row, static shared memory only, no allocation and no host synchronisation:
// the launch can be captured in a CUDA graph.
#include <cuda_runtime.h>

#include "eli/error.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/sampling_kernel.cuh"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {

void sample_cuda(const void* args, const ExecContext& ctx) {
  const SampleArgs& a = *static_cast<const SampleArgs*>(args);
  ELI_CHECK(a.n_rows >= 0 && a.n_rows <= INT32_MAX, "sample: n_rows must be in [0, 2^31), got ", a.n_rows);
  check_sample_args(a);
  if (a.n_rows == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  sample_kernel::sample_rows_kernel<<<static_cast<unsigned>(a.n_rows), 1024, 0, stream>>>(a);
  ELI_CUDA_CHECK_LAUNCH();
}

}  // namespace eli
