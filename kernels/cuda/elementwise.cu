// kernels/cuda/elementwise.cu: the per-element ops of the forward pass on CUDA: Rope (rotate-half,
// in place), Swiglu, and KvWrite (new tokens' K/V rows -> paged cache slots). f32 activations.
//
// Semantics are the reference's (kernels/ref/ref_kernels.h): the rope angle is the f32 product
// float(position) * inv_freq and cos/sin are taken in double (as the reference does) and scaled by
// attention_scaling; swiglu is g / (1 + exp(-g)) * u; kv_write skips slots < 0 or >= n_slots.
// Grids are 2D (x: elements of a row, y: rows) with y chunked to the 65535 limit by the launchers.
#include <algorithm>
#include <climits>
#include <cstdint>

#include "eli/error.h"
#include "kernels/cuda/cuda_kernels.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

// One thread per (token, head, pair i < half); grid.y = tokens.
__global__ void rope_kernel(float* x, const int32_t* __restrict__ positions, const float* __restrict__ inv_freq,
                            const int32_t* __restrict__ table_of_token, int64_t t0, int64_t n_heads,
                            int64_t head_dim, int64_t half, int64_t row_stride, float scaling) {
  const int64_t t = t0 + blockIdx.y;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_heads * half) return;
  const int64_t h = idx / half, i = idx % half;
  const int64_t table = table_of_token ? table_of_token[t] : 0;
  const float angle = static_cast<float>(positions[t]) * inv_freq[table * half + i];
  double s, c;
  sincos(static_cast<double>(angle), &s, &c);
  c *= scaling;
  s *= scaling;
  float* p = x + t * row_stride + h * head_dim;
  const double x1 = p[i], x2 = p[i + half];
  p[i] = static_cast<float>(x1 * c - x2 * s);
  p[i + half] = static_cast<float>(x2 * c + x1 * s);
}

__global__ void swiglu_kernel(float* __restrict__ out, const float* __restrict__ gate_up, int64_t r0,
                              int64_t inter, int64_t out_stride, int64_t in_stride) {
  const int64_t r = r0 + blockIdx.y;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= inter) return;
  const float* g = gate_up + r * in_stride;
  const float gv = g[j];
  out[r * out_stride + j] = gv / (1.0f + expf(-gv)) * g[inter + j];
}

__global__ void kv_write_kernel(float* __restrict__ k_cache, float* __restrict__ v_cache, const float* __restrict__ k,
                                const float* __restrict__ v, const int32_t* __restrict__ slot_mapping, int64_t t0,
                                int64_t row, int64_t k_stride, int64_t v_stride, int64_t n_slots) {
  const int64_t t = t0 + blockIdx.y;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= row) return;
  const int64_t slot = slot_mapping[t];
  if (slot < 0 || slot >= n_slots) return;
  k_cache[slot * row + j] = k[t * k_stride + j];
  v_cache[slot * row + j] = v[t * v_stride + j];
}

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  ELI_CHECK(b <= INT_MAX, "cuda elementwise: ", n, " elements per row exceed the grid limit");
  return static_cast<unsigned>(b);
}

}  // namespace

void rope_f32_cuda(const void* args_ptr, const ExecContext& ctx) {
  const RopeArgs& a = *static_cast<const RopeArgs*>(args_ptr);
  ELI_CHECK(a.rot_dim >= 0 && a.rot_dim % 2 == 0 && a.rot_dim <= a.head_dim, "rope: bad rot_dim ", a.rot_dim,
            " for head_dim ", a.head_dim);
  const int64_t half = a.rot_dim / 2;
  if (a.n_tokens <= 0 || a.n_heads <= 0 || half == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const unsigned bx = blocks_for(a.n_heads * half);
  for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kMaxGridY) {
    const int64_t n = std::min(kMaxGridY, a.n_tokens - t0);
    rope_kernel<<<dim3(bx, static_cast<unsigned>(n)), kThreads, 0, stream>>>(
        a.x, a.positions, a.inv_freq, a.table_of_token, t0, a.n_heads, a.head_dim, half, a.row_stride,
        a.attention_scaling);
    ELI_CUDA_CHECK_LAUNCH();
  }
}

void swiglu_f32_cuda(const void* args_ptr, const ExecContext& ctx) {
  const SwigluArgs& a = *static_cast<const SwigluArgs*>(args_ptr);
  ELI_CHECK(a.rows >= 0 && a.inter >= 0 && a.out_stride >= a.inter && a.in_stride >= 2 * a.inter,
            "swiglu: bad shape or strides");
  if (a.rows == 0 || a.inter == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const unsigned bx = blocks_for(a.inter);
  for (int64_t r0 = 0; r0 < a.rows; r0 += kMaxGridY) {
    const int64_t n = std::min(kMaxGridY, a.rows - r0);
    swiglu_kernel<<<dim3(bx, static_cast<unsigned>(n)), kThreads, 0, stream>>>(a.out, a.gate_up, r0, a.inter,
                                                                                a.out_stride, a.in_stride);
    ELI_CUDA_CHECK_LAUNCH();
  }
}

void kv_write_f32_cuda(const void* args_ptr, const ExecContext& ctx) {
  const KvWriteArgs& a = *static_cast<const KvWriteArgs*>(args_ptr);
  const int64_t row = a.n_kv_heads * a.head_dim;
  ELI_CHECK(a.n_tokens >= 0 && row >= 0 && a.k_stride >= row && a.v_stride >= row, "kv_write: bad shape");
  if (a.n_tokens == 0 || row == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const unsigned bx = blocks_for(row);
  for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kMaxGridY) {
    const int64_t n = std::min(kMaxGridY, a.n_tokens - t0);
    kv_write_kernel<<<dim3(bx, static_cast<unsigned>(n)), kThreads, 0, stream>>>(
        static_cast<float*>(a.k_cache), static_cast<float*>(a.v_cache), a.k, a.v, a.slot_mapping, t0, row, a.k_stride, a.v_stride, a.n_slots);
    ELI_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace eli
