// kernels/cuda/wq_w8a8_gemv.cu: the decode GEMV of the W8A8 layouts (Op::kGemv, kInt8Channel and
// kFp8Channel; wq_w8a8.h):
//   out[r, :] (+)= epilogue(quant(norm(x[r, :])) . w^T * s_x[r] * s_w + bias)   for r < m.
// 1. wq_w8a8_quant.cu writes the x codes and per-row scales to the workspace (norm fused).
// 2. One CTA of 128 threads owns R = 4 weight rows (2 gate + 2 up rows when gated) and all of k:
//    thread t takes the 16-byte chunks t, t + 128, ... of its R rows (R independent 16-byte loads
//    in flight; rows clamped into range for loading), then for each x row loads the 16 codes once
//    and forms R dot products: int8 by dp4a into int32 (exact, as the CPU's integer dot), e4m3 by
//    widening both sides to f16 pairs (exact, value * 2^-8) and f32 FMAs.
// 3. Warp-shuffle sums, a shared-memory slot per (warp, partial), then one thread per output scales
//    (int8: float(acc) * (s_x * s_w), as the CPU kernel), adds the bias, applies the gated
//    activation and stores or accumulates.
// Rows of w that are not 16-byte aligned (k % 16 != 0 or an unaligned w) take a byte-wise load path.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "eli/error.h"
#include "kernels/cuda/wq_w8a8_internal.cuh"
#include "kernels/cuda/wq_w8a8_numerics.cuh"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace w8a8 {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kRows = 4;  // weight rows per CTA

struct GemvParams {
  float* out;
  const uint8_t* xq;   // (m, kp) codes of this launch's rows
  const float* sx;     // (m)
  const uint8_t* w;    // (n, k)
  const float* sw;     // (n)
  const float* bias;   // (n) or nullptr
  int64_t n, n_out, k, kp, out_stride;
  int m;               // rows in this launch (<= M)
  bool aligned, gated, gelu, accumulate;
};

__device__ __forceinline__ uint4 load_w16(const uint8_t* row, int64_t c, int64_t k, bool aligned) {
  if (aligned) return __ldg(reinterpret_cast<const uint4*>(row + c));
  uint32_t v[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int e = 0; e < 16; ++e) {
    if (c + e < k) v[e >> 2] |= static_cast<uint32_t>(__ldg(row + c + e)) << (8 * (e & 3));
  }
  return make_uint4(v[0], v[1], v[2], v[3]);
}

__device__ __forceinline__ float2 f16x2_to_float2(uint32_t bits) {
  __half2 h;
  static_assert(sizeof(h) == 4, "half2");
  memcpy(&h, &bits, 4);
  return __half22float2(h);
}

// 16 e4m3 codes -> 16 floats (value * 2^-8), in k order.
__device__ __forceinline__ void widen16(const uint4 v, float* f) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 lo = f16x2_to_float2(e4m3x4_to_f16x2(words[i], false));
    const float2 hi = f16x2_to_float2(e4m3x4_to_f16x2(words[i], true));
    f[4 * i + 0] = lo.x;
    f[4 * i + 1] = lo.y;
    f[4 * i + 2] = hi.x;
    f[4 * i + 3] = hi.y;
  }
}

__device__ __forceinline__ float act_value(bool gelu, float g) {
  if (gelu) return 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
  return g / (1.0f + expf(-g));
}

__device__ __forceinline__ int64_t cta_row(const GemvParams& p, int rr) {
  if (!p.gated) return min(static_cast<int64_t>(blockIdx.x) * kRows + rr, p.n - 1);
  const int64_t half = p.n / 2, j = min(static_cast<int64_t>(blockIdx.x) * (kRows / 2) + rr % (kRows / 2), half - 1);
  return rr < kRows / 2 ? j : half + j;
}

template <bool kFp8, int M>
__global__ void __launch_bounds__(kThreads) gemv_kernel(const GemvParams p) {
  using Acc = typename std::conditional<kFp8, float, int>::type;
  __shared__ Acc red[kWarps][kRows * M];
  __shared__ float ys[kRows * M];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const uint8_t* rows[kRows];
#pragma unroll
  for (int rr = 0; rr < kRows; ++rr) rows[rr] = p.w + cta_row(p, rr) * p.k;

  Acc acc[kRows][M];
#pragma unroll
  for (int rr = 0; rr < kRows; ++rr) {
#pragma unroll
    for (int r = 0; r < M; ++r) acc[rr][r] = 0;
  }
  for (int64_t c = 16 * static_cast<int64_t>(tid); c < p.k; c += 16 * kThreads) {
    uint4 wv[kRows];
#pragma unroll
    for (int rr = 0; rr < kRows; ++rr) wv[rr] = load_w16(rows[rr], c, p.k, p.aligned);
    if constexpr (!kFp8) {
#pragma unroll
      for (int r = 0; r < M; ++r) {
        if (r < p.m) {
          const uint4 xv = *reinterpret_cast<const uint4*>(p.xq + r * p.kp + c);
#pragma unroll
          for (int rr = 0; rr < kRows; ++rr) {
            int a = acc[rr][r];
            a = __dp4a(static_cast<int>(wv[rr].x), static_cast<int>(xv.x), a);
            a = __dp4a(static_cast<int>(wv[rr].y), static_cast<int>(xv.y), a);
            a = __dp4a(static_cast<int>(wv[rr].z), static_cast<int>(xv.z), a);
            a = __dp4a(static_cast<int>(wv[rr].w), static_cast<int>(xv.w), a);
            acc[rr][r] = a;
          }
        }
      }
    } else {
      float wf[kRows][16];
#pragma unroll
      for (int rr = 0; rr < kRows; ++rr) widen16(wv[rr], wf[rr]);
#pragma unroll
      for (int r = 0; r < M; ++r) {
        if (r < p.m) {
          float xf[16];
          widen16(*reinterpret_cast<const uint4*>(p.xq + r * p.kp + c), xf);
#pragma unroll
          for (int rr = 0; rr < kRows; ++rr) {
            float a = acc[rr][r];
#pragma unroll
            for (int e = 0; e < 16; ++e) a = fmaf(wf[rr][e], xf[e], a);
            acc[rr][r] = a;
          }
        }
      }
    }
  }

  // Sums over the CTA: int8 partials stay integers through the warp (exact), then f32.
#pragma unroll
  for (int rr = 0; rr < kRows; ++rr) {
#pragma unroll
    for (int r = 0; r < M; ++r) {
      Acc v = acc[rr][r];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) red[warp][rr * M + r] = v;
    }
  }
  __syncthreads();
  if (tid < kRows * M) {
    const int rr = tid / M, r = tid % M;
    float y = 0.0f;
    if constexpr (!kFp8) {
      int s = 0;  // exact: |sum| <= k * 127^2 < 2^31
#pragma unroll
      for (int wi = 0; wi < kWarps; ++wi) s += red[wi][tid];
      y = static_cast<float>(s);
    } else {
#pragma unroll
      for (int wi = 0; wi < kWarps; ++wi) y += red[wi][tid];
      y *= kF16WidenUnscale;
    }
    const int64_t row = cta_row(p, rr);
    if (r < p.m) {
      y = y * (p.sx[r] * p.sw[row]);
      if (p.bias != nullptr) y += p.bias[row];
    }
    ys[tid] = y;
  }
  __syncthreads();
  const int outs = p.gated ? kRows / 2 : kRows;
  if (tid < outs * M) {
    const int o = tid / M, r = tid % M;
    const int64_t j = static_cast<int64_t>(blockIdx.x) * outs + o;
    if (r < p.m && j < p.n_out) {
      float v = ys[o * M + r];
      if (p.gated) v = act_value(p.gelu, v) * ys[(o + kRows / 2) * M + r];
      float* dst = p.out + r * p.out_stride + j;
      *dst = p.accumulate ? *dst + v : v;
    }
  }
}

template <bool kFp8, int M>
void launch_one(const GemvParams& p, cudaStream_t stream) {
  const int64_t outs = p.gated ? kRows / 2 : kRows;
  const int64_t ctas = (p.n_out + outs - 1) / outs;
  gemv_kernel<kFp8, M><<<static_cast<unsigned>(ctas), kThreads, 0, stream>>>(p);
  ELI_CUDA_CHECK_LAUNCH();
}

template <bool kFp8>
void gemv_cuda(const void* args, const ExecContext& ctx) {
  const GemvArgs& a = *static_cast<const GemvArgs*>(args);
  const char* op = kFp8 ? "fp8 gemv" : "int8 gemv";
  check_shape(a.m, a.n, a.k, op);
  const bool gated = a.gated != GatedAct::kNone;
  ELI_CHECK_ARG(!gated || a.n % 2 == 0, "w8a8 ", op, ": a gated activation needs an even n, got ", a.n);
  const int64_t n_out = gated ? a.n / 2 : a.n;
  ELI_CHECK_ARG(a.m <= 1 || (a.x_stride >= a.k && a.out_stride >= n_out), "w8a8 ", op,
                ": row stride below the row width");
  if (a.m == 0 || a.n == 0) return;
  ELI_CHECK_ARG(a.out != nullptr && a.x != nullptr && a.w != nullptr, "w8a8 ", op, ": null pointer");
  const WqMatrix& w = *static_cast<const WqMatrix*>(a.w);
  check_weight(w, kFp8, op);
  check_workspace(a.workspace, a.workspace_bytes, a.m, a.k, op);
  ELI_CHECK_ARG(n_out <= 0x7FFFFFFFLL * (gated ? 2 : 4), "w8a8 ", op, ": n too large");
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const ActView v = act_view(a.workspace, a.m, a.k);
  quantize_rows(a.x, a.x_stride, a.m, a.k, a.norm_weight, a.norm_eps, a.norm_weight_offset, kFp8, w.act_scale, v,
                stream);
  constexpr int64_t kMaxM = 8;  // rows per launch (the largest instantiation)
  for (int64_t r0 = 0; r0 < a.m; r0 += kMaxM) {
    GemvParams p;
    p.out = a.out + r0 * a.out_stride;
    p.xq = v.codes + r0 * v.kp;
    p.sx = v.scales + r0;
    p.w = static_cast<const uint8_t*>(w.q);
    p.sw = w.scales;
    p.bias = a.bias;
    p.n = a.n;
    p.n_out = n_out;
    p.k = a.k;
    p.kp = v.kp;
    p.out_stride = a.out_stride;
    p.m = static_cast<int>(std::min<int64_t>(a.m - r0, kMaxM));
    p.aligned = a.k % 16 == 0 && (reinterpret_cast<uintptr_t>(w.q) & 15u) == 0;
    p.gated = gated;
    p.gelu = a.gated == GatedAct::kGeluTanh;
    p.accumulate = a.accumulate;
    if (p.m == 1) {
      launch_one<kFp8, 1>(p, stream);
    } else if (p.m == 2) {
      launch_one<kFp8, 2>(p, stream);
    } else if (p.m <= 4) {
      launch_one<kFp8, 4>(p, stream);
    } else {
      launch_one<kFp8, 8>(p, stream);
    }
  }
}

}  // namespace
}  // namespace w8a8

void wq_gemv_int8_channel_cuda(const void* args, const ExecContext& ctx) { w8a8::gemv_cuda<false>(args, ctx); }
void wq_gemv_fp8_channel_cuda(const void* args, const ExecContext& ctx) { w8a8::gemv_cuda<true>(args, ctx); }

}  // namespace eli
