// kernels/cuda/embedding.cu: token embedding gather, f32, bf16 or f16 (IEEE half) table -> f32 rows
// (16-bit values are widened exactly), times the args' scale (1 except for Gemma's sqrt(H)).
//
// One block per token; ids are clamped to [0, vocab) on the device as a last defence (the caller
// validates them first). float4 / 4 x bf16 / 4 x f16 loads when hidden is a multiple of 4 and the
// pointers are aligned; a scalar path otherwise. out is (T, H) contiguous, table is (V, H) contiguous.
// Launched with programmatic dependent launch (kernels/cuda/pdl.cuh): the f32 variant gathers the
// rows of the residual stream the previous kernel wrote (the rows whose logits are wanted), so
// every block waits first.
#include <climits>
#include <cstdint>

#include <cuda_fp16.h>

#include "eli/error.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/pdl.cuh"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

__device__ __forceinline__ float bf16_to_f32(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }

// The table row of token `id` for a table holding rows [offset, offset + vocab) of the full one;
// with `masked`, an id outside them reads row 0 with *scale set to 0 (a zero row: vocab-parallel).
__device__ __forceinline__ int64_t clamp_id(int32_t id32, int64_t vocab, int64_t offset, bool masked, float* scale) {
  const int64_t id = static_cast<int64_t>(id32) - offset;
  if (masked && (id < 0 || id >= vocab)) {
    *scale = 0.0f;
    return 0;
  }
  return id < 0 ? 0 : (id >= vocab ? vocab - 1 : id);
}

template <bool kVec>
__global__ void embedding_f32_kernel(float* __restrict__ out, const float* __restrict__ table,
                                     const int32_t* __restrict__ ids, int64_t hidden, int64_t vocab, float scale,
                                     int64_t offset, bool masked) {
  cuda::pdl_wait();
  const int64_t t = blockIdx.x;
  const float* src = table + clamp_id(ids[t], vocab, offset, masked, &scale) * hidden;
  float* dst = out + t * hidden;
  if (kVec) {
    const float4* s4 = reinterpret_cast<const float4*>(src);
    float4* d4 = reinterpret_cast<float4*>(dst);
    for (int64_t i = threadIdx.x; i < hidden / 4; i += blockDim.x) {
      const float4 v = s4[i];
      d4[i] = make_float4(v.x * scale, v.y * scale, v.z * scale, v.w * scale);
    }
  } else {
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = src[i] * scale;
  }
}

template <bool kVec>
__global__ void embedding_bf16_kernel(float* __restrict__ out, const uint16_t* __restrict__ table,
                                      const int32_t* __restrict__ ids, int64_t hidden, int64_t vocab, float scale,
                                     int64_t offset, bool masked) {
  cuda::pdl_wait();
  const int64_t t = blockIdx.x;
  const uint16_t* src = table + clamp_id(ids[t], vocab, offset, masked, &scale) * hidden;
  float* dst = out + t * hidden;
  if (kVec) {
    const uint2* s4 = reinterpret_cast<const uint2*>(src);  // 4 bf16 per load
    float4* d4 = reinterpret_cast<float4*>(dst);
    for (int64_t i = threadIdx.x; i < hidden / 4; i += blockDim.x) {
      const uint2 p = s4[i];
      d4[i] = make_float4(__uint_as_float(p.x << 16) * scale, __uint_as_float(p.x & 0xffff0000u) * scale,
                          __uint_as_float(p.y << 16) * scale, __uint_as_float(p.y & 0xffff0000u) * scale);
    }
  } else {
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = bf16_to_f32(src[i]) * scale;
  }
}

// f16 table: the bf16 kernel's structure, with the hardware half -> float conversion.
template <bool kVec>
__global__ void embedding_f16_kernel(float* __restrict__ out, const __half* __restrict__ table,
                                     const int32_t* __restrict__ ids, int64_t hidden, int64_t vocab, float scale,
                                     int64_t offset, bool masked) {
  cuda::pdl_wait();
  const int64_t t = blockIdx.x;
  const __half* src = table + clamp_id(ids[t], vocab, offset, masked, &scale) * hidden;
  float* dst = out + t * hidden;
  if (kVec) {
    const uint2* s4 = reinterpret_cast<const uint2*>(src);  // 4 f16 per load
    float4* d4 = reinterpret_cast<float4*>(dst);
    for (int64_t i = threadIdx.x; i < hidden / 4; i += blockDim.x) {
      const uint2 p = s4[i];
      __half2 lo, hi;
      memcpy(&lo, &p.x, sizeof(lo));  // element .x is the lower address
      memcpy(&hi, &p.y, sizeof(hi));
      const float2 a = __half22float2(lo), b = __half22float2(hi);
      d4[i] = make_float4(a.x * scale, a.y * scale, b.x * scale, b.y * scale);
    }
  } else {
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = __half2float(src[i]) * scale;
  }
}

bool aligned(const void* p, uintptr_t n) { return (reinterpret_cast<uintptr_t>(p) & (n - 1)) == 0; }

void check_args(const EmbeddingArgs& a) {
  ELI_CHECK(a.n_tokens >= 0 && a.hidden >= 0 && a.vocab > 0, "embedding: bad shape tokens=", a.n_tokens,
            " hidden=", a.hidden, " vocab=", a.vocab);
  ELI_CHECK(a.n_tokens <= INT_MAX, "embedding: ", a.n_tokens, " tokens exceed the grid limit");
}

}  // namespace

void embedding_f32_cuda(const void* args_ptr, const ExecContext& ctx) {
  const EmbeddingArgs& a = *static_cast<const EmbeddingArgs*>(args_ptr);
  check_args(a);
  if (a.n_tokens == 0 || a.hidden == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const float* table = static_cast<const float*>(a.table);
  const bool vec = a.hidden % 4 == 0 && aligned(a.out, 16) && aligned(table, 16);
  const dim3 grid(static_cast<unsigned>(a.n_tokens));
  const bool pdl = cuda::pdl_enabled();
  if (vec) {
    cuda::launch_kernel(embedding_f32_kernel<true>, grid, dim3(cuda::threads_for(a.hidden / 4)), 0, stream, pdl, a.out,
                        table, a.ids, a.hidden, a.vocab, a.scale, a.row_offset,
                        a.zero_outside);
  } else {
    cuda::launch_kernel(embedding_f32_kernel<false>, grid, dim3(cuda::threads_for(a.hidden)), 0, stream, pdl, a.out,
                        table, a.ids, a.hidden, a.vocab, a.scale, a.row_offset,
                        a.zero_outside);
  }
}

void embedding_bf16_cuda(const void* args_ptr, const ExecContext& ctx) {
  const EmbeddingArgs& a = *static_cast<const EmbeddingArgs*>(args_ptr);
  check_args(a);
  if (a.n_tokens == 0 || a.hidden == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const uint16_t* table = static_cast<const uint16_t*>(a.table);
  const bool vec = a.hidden % 4 == 0 && aligned(a.out, 16) && aligned(table, 8);
  const dim3 grid(static_cast<unsigned>(a.n_tokens));
  const bool pdl = cuda::pdl_enabled();
  if (vec) {
    cuda::launch_kernel(embedding_bf16_kernel<true>, grid, dim3(cuda::threads_for(a.hidden / 4)), 0, stream, pdl,
                        a.out, table, a.ids, a.hidden, a.vocab, a.scale, a.row_offset,
                        a.zero_outside);
  } else {
    cuda::launch_kernel(embedding_bf16_kernel<false>, grid, dim3(cuda::threads_for(a.hidden)), 0, stream, pdl, a.out,
                        table, a.ids, a.hidden, a.vocab, a.scale, a.row_offset,
                        a.zero_outside);
  }
}

void embedding_f16_cuda(const void* args_ptr, const ExecContext& ctx) {
  const EmbeddingArgs& a = *static_cast<const EmbeddingArgs*>(args_ptr);
  check_args(a);
  if (a.n_tokens == 0 || a.hidden == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const __half* table = static_cast<const __half*>(a.table);
  const bool vec = a.hidden % 4 == 0 && aligned(a.out, 16) && aligned(table, 8);
  const dim3 grid(static_cast<unsigned>(a.n_tokens));
  const bool pdl = cuda::pdl_enabled();
  if (vec) {
    cuda::launch_kernel(embedding_f16_kernel<true>, grid, dim3(cuda::threads_for(a.hidden / 4)), 0, stream, pdl,
                        a.out, table, a.ids, a.hidden, a.vocab, a.scale, a.row_offset,
                        a.zero_outside);
  } else {
    cuda::launch_kernel(embedding_f16_kernel<false>, grid, dim3(cuda::threads_for(a.hidden)), 0, stream, pdl, a.out,
                        table, a.ids, a.hidden, a.vocab, a.scale, a.row_offset,
                        a.zero_outside);
  }
}

}  // namespace eli
