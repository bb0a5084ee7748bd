// kernels/cuda/gguf_gemv.cuh: the decode GEMV over GGUF weight blocks read as stored (Op::kGemv,
// WeightFormat::kGgufBlocks; instantiated per block type in gguf_gemv_<type>.cu):
//   out[r, :] (+)= act(norm(x[r, :]) @ w^T + bias)   for r < m,
// fusions as the dense GEMV (kernels/cuda/gemv.cu, GemvArgs in kernels/ops.h).
//
// 1. gguf_quantize_x.cu quantizes the (normalised) x rows to 8-bit blocks of 32 in the workspace.
// 2. One CTA of 128 threads owns R weight rows (R/2 gate + R/2 up rows when gated) and all of K.
//    Thread t takes items (32 weights of a row = one activation block) t, t + 128, ...; for each it
//    decodes the item of its R rows into registers (gguf_blocks.cuh: int8 values + per-half
//    scales), then for each x row loads the activation block (two 16-byte loads + d, s) once and
//    forms R integer dot products (dp4a), scaled in f32. So x is read once per CTA and reused R
//    times, the weights once in total.
// 3. Warp-shuffle sums, one shared-memory slot per (warp, partial), then one thread per output
//    applies bias, the gated activation and the (accumulating) store.
// Programmatic dependent launch: the first items' weight loads are issued before the wait; x (the
// workspace), bias and out only after it (pdl.cuh's contract; quantize_x waits for its own
// predecessor before writing the workspace).
// Rows past n are clamped for loading (branch-free loops) and dropped at the store. Threads with
// no item of a short row still take part in the reduction.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "kernels/cuda/sm_count.h"
#include "eli/error.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/gguf_blocks.cuh"
#include "kernels/cuda/pdl.cuh"
#include "kernels/ops.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace gguf {

// gguf_quantize_x.cu: x (m, k) -> workspace.
void quantize_x(const GemvArgs& a, void* ws, cudaStream_t stream, bool pdl);
using cuda::sm_count;

constexpr int kGemvThreads = 128;

struct GemvParams {
  float* out;            // (m, n_out), row stride out_stride
  const int8_t* xq;      // (m, nb, 32) activation blocks of this launch's rows
  const float* xds;      // (m, nb) x 2
  const uint8_t* w;      // (n, row_bytes)
  const float* bias;     // (n) or nullptr
  int64_t n, n_out, nb, row_bytes, out_stride;
  int m;                 // rows of x in this launch (<= M)
  bool gated, gelu, accumulate;
};

// The weight row loaded as the CTA's rr-th row (clamped into range).
__device__ __forceinline__ int64_t gemv_cta_row(const GemvParams& p, int64_t base, int rr, int rr_half) {
  if (!p.gated) return min(base + rr, p.n - 1);
  const int64_t half = p.n / 2;
  return rr < rr_half ? min(base + rr, half - 1) : half + min(base + rr - rr_half, half - 1);
}

template <class B, int M, int R>
__global__ void __launch_bounds__(kGemvThreads) gguf_gemv_kernel(const GemvParams p) {
  constexpr int kWarps = kGemvThreads / 32;
  __shared__ float red[kWarps][M * R];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int outs = p.gated ? R / 2 : R;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * outs;
  cuda::pdl_launch_dependents();

  const uint8_t* wrow[R];
#pragma unroll
  for (int rr = 0; rr < R; ++rr) wrow[rr] = p.w + gemv_cta_row(p, base, rr, R / 2) * p.row_bytes;

  float acc[M][R];
#pragma unroll
  for (int r = 0; r < M; ++r) {
#pragma unroll
    for (int rr = 0; rr < R; ++rr) acc[r][rr] = 0.f;
  }

  bool waited = false;
  for (int64_t i = tid; i < p.nb; i += kGemvThreads) {
    const int64_t sb = i / B::kItems;
    const int s = static_cast<int>(i - sb * B::kItems);
    WItem wi[R];
#pragma unroll
    for (int rr = 0; rr < R; ++rr) B::item(wrow[rr] + sb * B::kBytes, s, wi[rr]);
    if (!waited) {  // the first weights are loaded; the activations need the previous kernel
      cuda::pdl_wait();
      waited = true;
    }
#pragma unroll
    for (int r = 0; r < M; ++r) {
      if (r >= p.m) break;
      const int64_t xb = static_cast<int64_t>(r) * p.nb + i;
      const int4 x0 = *reinterpret_cast<const int4*>(p.xq + xb * kItemElems);
      const int4 x1 = *(reinterpret_cast<const int4*>(p.xq + xb * kItemElems) + 1);
      const float2 ds = *reinterpret_cast<const float2*>(p.xds + 2 * xb);
      const int32_t xq[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
#pragma unroll
      for (int rr = 0; rr < R; ++rr) acc[r][rr] += item_dot<B>(wi[rr], xq, ds.x, ds.y);
    }
  }
  cuda::pdl_wait();  // threads that had no item (returns at once for the others)

#pragma unroll
  for (int r = 0; r < M; ++r) {
#pragma unroll
    for (int rr = 0; rr < R; ++rr) {
      const float v = cuda::warp_reduce_sum(acc[r][rr]);
      if (lane == 0) red[warp][r * R + rr] = v;
    }
  }
  __syncthreads();

  for (int t = tid; t < p.m * outs; t += kGemvThreads) {
    const int r = t / outs, o = t % outs;
    const int64_t col = base + o;
    if (col >= p.n_out) continue;
    float y = 0.f, up = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      y += red[w][r * R + o];
      if (p.gated) up += red[w][r * R + o + R / 2];
    }
    if (p.bias != nullptr) y += p.bias[col];
    if (p.gated) {
      if (p.bias != nullptr) up += p.bias[p.n_out + col];
      y = (p.gelu ? 0.5f * y * (1.0f + tanhf(0.7978845608f * (y + 0.044715f * y * y * y))) : y / (1.0f + expf(-y))) * up;
    }
    float* o_ptr = p.out + static_cast<int64_t>(r) * p.out_stride + col;
    *o_ptr = p.accumulate ? *o_ptr + y : y;
  }
}

template <class B, int M, int R>
void gemv_launch_one(const GemvParams& p, bool pdl, cudaStream_t stream) {
  const int outs = p.gated ? R / 2 : R;
  const int64_t blocks = (p.n_out + outs - 1) / outs;
  ELI_CHECK(blocks <= INT_MAX, "gguf gemv: n=", p.n, " exceeds the grid limit");
  cuda::launch_kernel(gguf_gemv_kernel<B, M, R>, dim3(static_cast<unsigned>(blocks)), dim3(kGemvThreads), 0, stream,
                      pdl, p);
}

template <class B, int R>
void gemv_launch_rows(const GemvParams& p, bool pdl, cudaStream_t stream) {
  if (p.m <= 1) {
    gemv_launch_one<B, 1, R>(p, pdl, stream);
  } else if (p.m <= 2) {
    gemv_launch_one<B, 2, R>(p, pdl, stream);
  } else if (p.m <= 4) {
    gemv_launch_one<B, 4, R>(p, pdl, stream);
  } else {
    gemv_launch_one<B, 8, R>(p, pdl, stream);
  }
}

// The registry entry of block type B.
template <class B>
void gemv_cuda(const void* args_ptr, const ExecContext& ctx) {
  const GemvArgs& a = *static_cast<const GemvArgs*>(args_ptr);
  const char* name = dtype_name(B::kType);
  ELI_CHECK_ARG(a.m >= 0 && a.n >= 0 && a.k > 0, "gguf gemv ", name, ": bad shape m=", a.m, " n=", a.n, " k=", a.k);
  ELI_CHECK_ARG(a.k % B::kElems == 0, "gguf gemv ", name, ": k=", a.k, " is not a multiple of ", B::kElems);
  ELI_CHECK_ARG(a.gated == GatedAct::kNone || a.n % 2 == 0, "gguf gemv: a gated activation needs an even n, got ", a.n);
  const bool gated = a.gated != GatedAct::kNone;
  const int64_t n_out = gated ? a.n / 2 : a.n;
  ELI_CHECK_ARG(a.m <= 1 || (a.x_stride >= a.k && a.out_stride >= n_out), "gguf gemv: row stride below the row width");
  if (a.m == 0 || a.n == 0) return;
  ELI_CHECK_ARG(a.out != nullptr && a.x != nullptr && a.w != nullptr, "gguf gemv: null pointer");
  ELI_CHECK_ARG(reinterpret_cast<uintptr_t>(a.w) % B::kAlign == 0, "gguf gemv ", name, ": weights not ", B::kAlign,
                "-byte aligned");
  ELI_CHECK_ARG(a.workspace != nullptr && a.workspace_bytes >= q8_workspace_bytes(a.m, a.k) &&
                    (reinterpret_cast<uintptr_t>(a.workspace) & 15u) == 0,
                "gguf gemv ", name, ": needs a 16-byte aligned workspace of ", q8_workspace_bytes(a.m, a.k),
                " bytes, got ", a.workspace_bytes);
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const bool pdl = cuda::pdl_enabled();
  quantize_x(a, a.workspace, stream, pdl);

  const Q8View xv = q8_view(a.workspace, a.m, a.k);
  const int64_t nb = a.k / kItemElems;
  // Rows per CTA: 4 unless that leaves fewer than two CTAs per SM.
  const int64_t ctas_r4 = (n_out + (gated ? 2 : 4) - 1) / (gated ? 2 : 4);
  const bool r4 = ctas_r4 >= 2 * static_cast<int64_t>(sm_count());
  for (int64_t r0 = 0; r0 < a.m; r0 += kGemvMaxRows) {
    GemvParams p;
    p.out = a.out + r0 * a.out_stride;
    p.xq = xv.qs + r0 * nb * kItemElems;
    p.xds = xv.ds + 2 * r0 * nb;
    p.w = static_cast<const uint8_t*>(a.w);
    p.bias = a.bias;
    p.n = a.n;
    p.n_out = n_out;
    p.nb = nb;
    p.row_bytes = a.k / B::kElems * B::kBytes;
    p.out_stride = a.out_stride;
    p.m = static_cast<int>(std::min<int64_t>(a.m - r0, kGemvMaxRows));
    p.gated = gated;
    p.gelu = a.gated == GatedAct::kGeluTanh;
    p.accumulate = a.accumulate;
    if (r4) {
      gemv_launch_rows<B, 4>(p, pdl, stream);
    } else {
      gemv_launch_rows<B, 2>(p, pdl, stream);
    }
  }
}

}  // namespace gguf
}  // namespace eli
