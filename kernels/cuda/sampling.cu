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
  ELI_CHECK(a.vocab >= 1 && a.vocab <= INT32_MAX, "sample: vocab must be in [1, 2^31), got ", a.vocab);
  ELI_CHECK(a.logits_stride >= a.vocab, "sample: logits_stride ", a.logits_stride, " < vocab ", a.vocab);
  ELI_CHECK(a.top_stride >= 0 && a.top_stride <= kSampleMaxTopLogprobs, "sample: top_stride must be in [0, ",
            kSampleMaxTopLogprobs, "], got ", a.top_stride);
  ELI_CHECK(a.top_stride == 0 || (a.top_ids != nullptr && a.top_logprobs != nullptr),
            "sample: top_ids/top_logprobs are null with top_stride ", a.top_stride);
  ELI_CHECK(a.token && a.logprob && a.status && a.logits && a.temperature && a.top_k && a.top_p && a.min_p &&
                a.repetition_penalty && a.presence_penalty && a.frequency_penalty && a.seed && a.offset &&
                a.n_logprobs,
            "sample: a required pointer is null");
  ELI_CHECK(a.penalty_offsets == nullptr || (a.penalty_tokens && a.penalty_counts && a.penalty_raw),
            "sample: penalty lists need tokens, counts and penalty_raw");
  if (a.n_rows == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  sample_kernel::sample_rows_kernel<<<static_cast<unsigned>(a.n_rows), 1024, 0, stream>>>(a);
  ELI_CUDA_CHECK_LAUNCH();
}

}  // namespace eli
