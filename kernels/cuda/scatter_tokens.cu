// kernels/cuda/scatter_tokens.cu: Op::kScatterTokens on CUDA (ScatterTokensArgs, kernels/ops.h):
// ids[dst_index[i]] = clamp(src[src_index[i]], [0, vocab)). One thread per copied token; a no-op
// launch is skipped for n == 0. Asynchronous on ctx.stream.
#include <cstdint>

#include "eli/error.h"
#include "kernels/cuda/cuda_kernels.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

__global__ void scatter_tokens_kernel(int32_t* __restrict__ ids, const int32_t* __restrict__ dst_index,
                                      const int32_t* __restrict__ src, const int32_t* __restrict__ src_index,
                                      int64_t n, int64_t vocab) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int32_t t = src[src_index[i]];
  ids[dst_index[i]] = t < 0 || t >= vocab ? 0 : t;
}

}  // namespace

void scatter_tokens_cuda(const void* args, const ExecContext& ctx) {
  const auto& a = *static_cast<const ScatterTokensArgs*>(args);
  ELI_CHECK(a.n >= 0 && a.vocab >= 1, "scatter_tokens: n ", a.n, " and vocab ", a.vocab, " must be >= 0 / >= 1");
  if (a.n == 0) return;
  ELI_CHECK(a.ids != nullptr && a.dst_index != nullptr && a.src != nullptr && a.src_index != nullptr,
            "scatter_tokens: null pointer");
  constexpr int kThreads = 128;
  const int64_t blocks = (a.n + kThreads - 1) / kThreads;
  scatter_tokens_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<cudaStream_t>(ctx.stream)>>>(
      a.ids, a.dst_index, a.src, a.src_index, a.n, a.vocab);
  ELI_CUDA_CHECK(cudaGetLastError());
}

}  // namespace eli
