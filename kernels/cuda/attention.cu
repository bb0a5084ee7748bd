// kernels/cuda/attention.cu: causal paged attention over a ragged batch (AttentionArgs), f32 Q and
// f32 KV cache, GQA and sliding window, with the reference's masking rule (ref_kernels.h:
// attention_kv_range; no visible position -> a zero output row).
//
// Blocks of kWarps warps: blockIdx.y is the head, blockIdx.x strides over the query tokens (the
// token count cu_seqlens[n_seqs] lives on the device, so the kernel reads it; the grid's x size is
// a fixed kTokenBlocks). For each (token, head), each warp walks every kWarps-th visible KV
// position with an online softmax (running max, running sum, f32 accumulator of head_dim values
// spread over the lanes: dim d lives in lane d % 32, slot d / 32); the warps' partial states are
// merged through shared memory at the end. head_dim <= 32 * kMaxSlots. Correctness-first: a
// split-KV / tensor-core kernel replaces this later behind the same registry entry.
#include <climits>
#include <cmath>
#include <cstdint>

#include "eli/error.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxSlots = 8;  // head_dim <= 256

constexpr int kTokenBlocks = 256;

// Every thread of the block calls this for the same (t, h) (it synchronizes the block).
__device__ void attend_one(const AttentionArgs& a, int64_t t, int64_t h) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t hd = a.head_dim;
  // Sequence of token t: cu_seqlens is ascending, n_seqs is small (linear scan).
  int64_t s = 0;
  while (s + 1 < a.n_seqs && a.cu_seqlens[s + 1] <= t) ++s;
  const int64_t pos = a.positions[t];
  int64_t hi = pos;
  if (hi > a.context_lens[s] - 1) hi = a.context_lens[s] - 1;
  if (hi > a.max_blocks_per_seq * a.block_size - 1) hi = a.max_blocks_per_seq * a.block_size - 1;
  int64_t lo = 0;
  if (a.sliding_window > 0 && pos - a.sliding_window + 1 > 0) lo = pos - a.sliding_window + 1;
  float* out = static_cast<float*>(a.out) + t * a.out_stride + h * hd;
  if (hi < lo) {
    for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) out[d] = 0.f;
    return;
  }
  const int64_t kvh = h / (a.n_heads / a.n_kv_heads);
  const int32_t* blocks = a.block_tables + s * a.max_blocks_per_seq;
  const float* q = static_cast<const float*>(a.q) + t * a.q_stride + h * hd;
  float qr[kMaxSlots], acc[kMaxSlots];
#pragma unroll
  for (int j = 0; j < kMaxSlots; ++j) {
    const int64_t d = lane + 32 * j;
    qr[j] = d < hd ? q[d] : 0.f;
    acc[j] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int64_t p = lo + warp; p <= hi; p += kWarps) {
    const int64_t slot = static_cast<int64_t>(blocks[p / a.block_size]) * a.block_size + p % a.block_size;
    const int64_t off = (slot * a.n_kv_heads + kvh) * hd;
    const float* k = static_cast<const float*>(a.k_cache) + off;
    const float* v = static_cast<const float*>(a.v_cache) + off;
    float dot = 0.f;
#pragma unroll
    for (int j = 0; j < kMaxSlots; ++j) {
      const int64_t d = lane + 32 * j;
      if (d < hd) dot += qr[j] * k[d];
    }
    const float score = cuda::warp_reduce_sum(dot) * a.scale;
    const float m_new = fmaxf(m, score);
    const float corr = expf(m - m_new);  // 0 on the first position (m = -inf)
    const float w = expf(score - m_new);
    l = l * corr + w;
#pragma unroll
    for (int j = 0; j < kMaxSlots; ++j) {
      const int64_t d = lane + 32 * j;
      if (d < hd) acc[j] = acc[j] * corr + w * v[d];
    }
    m = m_new;
  }
  // Merge the warps' (m, l, acc) states.
  __shared__ float sm[kWarps], sl[kWarps];
  __shared__ float sacc[kWarps][32 * kMaxSlots];
  if (lane == 0) {
    sm[warp] = m;
    sl[warp] = l;
  }
#pragma unroll
  for (int j = 0; j < kMaxSlots; ++j) sacc[warp][lane + 32 * j] = acc[j];
  __syncthreads();
  float gm = -INFINITY;
  for (int w = 0; w < kWarps; ++w) gm = fmaxf(gm, sm[w]);
  float denom = 0.f, fw[kWarps];
  for (int w = 0; w < kWarps; ++w) {
    fw[w] = sl[w] > 0.f ? expf(sm[w] - gm) : 0.f;  // warps that saw no position have l = 0
    denom += sl[w] * fw[w];
  }
  for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float num = 0.f;
    for (int w = 0; w < kWarps; ++w) num += sacc[w][d] * fw[w];
    out[d] = num / denom;
  }
  __syncthreads();  // the shared state is reused by this block's next token
}

__global__ void attention_kernel(AttentionArgs a) {
  const int64_t n_tokens = a.cu_seqlens[a.n_seqs];
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) attend_one(a, t, blockIdx.y);
}

}  // namespace

void attention_f32_cuda(const void* args_ptr, const ExecContext& ctx) {
  const AttentionArgs& a = *static_cast<const AttentionArgs*>(args_ptr);
  ELI_CHECK(a.n_kv_heads > 0 && a.n_heads % a.n_kv_heads == 0, "attention: n_heads ", a.n_heads,
            " not a multiple of n_kv_heads ", a.n_kv_heads);
  ELI_CHECK(a.block_size > 0 && a.head_dim > 0, "attention: bad block_size/head_dim");
  ELI_CHECK_KIND(kUnsupported, a.head_dim <= 32 * kMaxSlots, "attention: head_dim ", a.head_dim,
                 " exceeds the CUDA kernel's limit of ", 32 * kMaxSlots);
  ELI_CHECK(a.n_heads <= 65535, "attention: ", a.n_heads, " heads exceed the grid limit");
  if (a.n_seqs <= 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  attention_kernel<<<dim3(kTokenBlocks, static_cast<unsigned>(a.n_heads)), 32 * kWarps, 0, stream>>>(a);
  ELI_CUDA_CHECK_LAUNCH();
}

}  // namespace eli
