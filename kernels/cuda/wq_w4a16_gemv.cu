// kernels/cuda/wq_w4a16_gemv.cu: the decode GEMV (Op::kGemv, m <= kGemvMaxRows) of the grouped
// integer layouts kInt4Grouped / kInt8Grouped (kernels/cuda/wq_w4a16.cuh):
//   out[r, :] (+)= act(norm(x[r, :])[perm] @ W^T + bias)
//
// 1. When a norm or an act-order permutation is asked for (or x is not 16-byte addressable), a prep
//    kernel writes the effective f32 x rows (RMSNorm with norm_weight + norm_weight_offset, then
//    the gather x[perm[j]]) into the workspace; otherwise the kernel reads x as given.
// 2. One warp owns R = 4 weight rows (2 gate + 2 up rows when gated); lane l takes the 16-byte
//    chunks l, l + 32, ... of every row (one 16-byte load per row per chunk: the weights are read
//    once, coalesced; the next chunk's loads are issued before the current one is used). Per chunk and 32-bit word it turns the R x 8 (int4) or R x 4 (int8) q into
//    exact floats once, then for each x row forms sum q x (f32 FMA) and sum x; the chunk lies in
//    one group, so acc += scale * (sum q x - zero * sum x).
// 3. Warp-shuffle sums; the lane owning (row, output) applies bias, the gated activation and the
//    (accumulating) store. Rows past n are clamped for loading and dropped at the store.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "eli/error.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/wq_w4a16.cuh"
#include "kernels/ops.h"
#include "kernels/wq_matrix.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kR = 4;

struct GemvParams {
  float* out;
  const float* x;  // (m, k) f32, row stride xs, 16-byte aligned rows
  const uint8_t* q;
  const float* scales;
  const float* zeros;
  const float* bias;
  int64_t n, n_out, k, xs, out_stride, groups, gs, row_bytes, nchunks;
  int m;
  bool gated, gelu, accumulate;
};

// Effective x rows into ws (m, k): RMSNorm (if nw) then the act-order gather (if perm). One block per row.
__global__ void __launch_bounds__(256) wq_gemv_prep(float* ws, const float* x, int64_t xs, int64_t k, const float* nw,
                                                    float off, float eps, const int32_t* perm) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * xs;
  float* o = ws + static_cast<int64_t>(blockIdx.x) * k;
  float inv = 1.0f;
  if (nw != nullptr) {
    float ss = 0.f;
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) ss += xr[j] * xr[j];
    ss = cuda::block_reduce_sum(ss);
    inv = rsqrtf(ss / static_cast<float>(k) + eps);
  }
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
    const int64_t src = perm != nullptr ? perm[j] : j;
    o[j] = nw != nullptr ? xr[src] * inv * (nw[src] + off) : xr[src];
  }
}

__device__ __forceinline__ float q_float(uint32_t q) { return __int_as_float(0x4B000000u | q) - 8388608.0f; }

__device__ __forceinline__ int64_t warp_row(const GemvParams& p, int64_t o0, int r) {
  if (!p.gated) return min(o0 + r, p.n - 1);
  const int64_t half = p.n / 2;
  return r < kR / 2 ? min(o0 + r, half - 1) : half + min(o0 + r - kR / 2, half - 1);
}

template <int BITS, int M>
__global__ void __launch_bounds__(kThreads) wq_gemv_kernel(const GemvParams p) {
  constexpr int VW = BITS == 4 ? 8 : 4;  // values per 32-bit word
  constexpr int VC = 4 * VW;             // columns per chunk
  const int lane = threadIdx.x & 31;
  const int64_t wid = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int ro = p.gated ? kR / 2 : kR;
  const int64_t o0 = wid * ro;
  if (o0 >= p.n_out) return;  // whole warps only; no block-wide barrier below

  int64_t rows[kR];
#pragma unroll
  for (int r = 0; r < kR; ++r) rows[r] = warp_row(p, o0, r);

  float acc[M][kR];
#pragma unroll
  for (int i = 0; i < M; ++i) {
#pragma unroll
    for (int r = 0; r < kR; ++r) acc[i][r] = 0.f;
  }

  // Software pipeline: chunk c + 32's weights, scales and zeros are loaded before chunk c is used.
  uint4 wv[kR];
  float sc[kR], zr[kR];
  auto load = [&](int64_t c, uint4 (&w)[kR], float (&s)[kR], float (&z)[kR]) {
    const int64_t g = c * VC / p.gs;
#pragma unroll
    for (int r = 0; r < kR; ++r) w[r] = __ldg(reinterpret_cast<const uint4*>(p.q + rows[r] * p.row_bytes) + c);
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      s[r] = __ldg(p.scales + rows[r] * p.groups + g);
      z[r] = __ldg(p.zeros + rows[r] * p.groups + g);
    }
  };
  if (lane < p.nchunks) load(lane, wv, sc, zr);
  for (int64_t c = lane; c < p.nchunks; c += 32) {
    uint4 wn[kR];
    float sn[kR], zn[kR];
    if (c + 32 < p.nchunks) load(c + 32, wn, sn, zn);
    const int64_t col0 = c * VC;
    float part[M][kR], sx[M];
#pragma unroll
    for (int i = 0; i < M; ++i) {
      sx[i] = 0.f;
#pragma unroll
      for (int r = 0; r < kR; ++r) part[i][r] = 0.f;
    }
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      float qf[kR][VW];
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        const uint32_t word = w == 0 ? wv[r].x : w == 1 ? wv[r].y : w == 2 ? wv[r].z : wv[r].w;
#pragma unroll
        for (int v = 0; v < VW; ++v) qf[r][v] = q_float(wq_cuda::word_q(BITS, word, v));
      }
#pragma unroll
      for (int i = 0; i < M; ++i) {
        if (i >= p.m) break;
        const float* xr = p.x + i * p.xs + col0;
        float xv[VW];
        const float4 a = *reinterpret_cast<const float4*>(xr + wq_cuda::word_col(BITS, w, 0));
        xv[0] = a.x, xv[1] = a.y, xv[2] = a.z, xv[3] = a.w;
        if (VW == 8) {
          const float4 b = *reinterpret_cast<const float4*>(xr + wq_cuda::word_col(BITS, w, VW - 4));
          xv[VW - 4] = b.x, xv[VW - 3] = b.y, xv[VW - 2] = b.z, xv[VW - 1] = b.w;
        }
#pragma unroll
        for (int v = 0; v < VW; ++v) {
          sx[i] += xv[v];
#pragma unroll
          for (int r = 0; r < kR; ++r) part[i][r] = fmaf(qf[r][v], xv[v], part[i][r]);
        }
      }
    }
#pragma unroll
    for (int i = 0; i < M; ++i) {
#pragma unroll
      for (int r = 0; r < kR; ++r) acc[i][r] = fmaf(sc[r], part[i][r] - zr[r] * sx[i], acc[i][r]);
    }
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      wv[r] = wn[r];
      sc[r] = sn[r];
      zr[r] = zn[r];
    }
  }

#pragma unroll
  for (int i = 0; i < M; ++i) {
#pragma unroll
    for (int r = 0; r < kR; ++r) acc[i][r] = cuda::warp_reduce_sum(acc[i][r]);
  }
  // Every lane holds every sum; lane (i * kR + o) % 32 stores output o of row i.
#pragma unroll
  for (int i = 0; i < M; ++i) {
#pragma unroll
    for (int o = 0; o < kR; ++o) {
      if (i >= p.m || o >= ro || lane != ((i * kR + o) & 31)) continue;
      const int64_t col = o0 + o;
      if (col >= p.n_out) continue;
      float y = acc[i][o];
      if (p.bias != nullptr) y += p.bias[col];
      if (p.gated) {
        float up = acc[i][o + kR / 2];
        if (p.bias != nullptr) up += p.bias[p.n_out + col];
        y = (p.gelu ? 0.5f * y * (1.0f + tanhf(0.7978845608f * (y + 0.044715f * y * y * y))) : y / (1.0f + expf(-y))) *
            up;
      }
      float* dst = p.out + i * p.out_stride + col;
      *dst = p.accumulate ? *dst + y : y;
    }
  }
}

template <int BITS>
void launch_rows(const GemvParams& p, cudaStream_t stream) {
  const int ro = p.gated ? kR / 2 : kR;
  const int64_t warps = (p.n_out + ro - 1) / ro;
  const int64_t blocks = (warps + kWarps - 1) / kWarps;
  ELI_CHECK(blocks <= INT_MAX, "wq gemv: n=", p.n, " exceeds the grid limit");
  const dim3 grid(static_cast<unsigned>(blocks));
  if (p.m <= 1) {
    wq_gemv_kernel<BITS, 1><<<grid, kThreads, 0, stream>>>(p);
  } else if (p.m <= 2) {
    wq_gemv_kernel<BITS, 2><<<grid, kThreads, 0, stream>>>(p);
  } else if (p.m <= 4) {
    wq_gemv_kernel<BITS, 4><<<grid, kThreads, 0, stream>>>(p);
  } else {
    wq_gemv_kernel<BITS, 8><<<grid, kThreads, 0, stream>>>(p);
  }
  ELI_CUDA_CHECK_LAUNCH();
}

template <int BITS>
void wq_gemv(const void* args_ptr, const ExecContext& ctx) {
  const GemvArgs& a = *static_cast<const GemvArgs*>(args_ptr);
  const char* name = BITS == 4 ? "w4a16 gemv" : "w8a16 gemv";
  ELI_CHECK_ARG(a.m >= 0 && a.n >= 0 && a.k > 0, name, ": bad shape m=", a.m, " n=", a.n, " k=", a.k);
  ELI_CHECK_ARG(a.w != nullptr, name, ": null weight");
  const WqMatrix& w = *static_cast<const WqMatrix*>(a.w);
  const WeightFormat want = BITS == 4 ? WeightFormat::kInt4Grouped : WeightFormat::kInt8Grouped;
  ELI_CHECK_ARG(w.format == want, name, ": got a ", weight_format_name(w.format), " weight");
  ELI_CHECK_KIND(kUnsupported, a.k % 32 == 0, name, ": k=", a.k, " is not a multiple of 32");
  const int64_t gs = w.group_size > 0 ? w.group_size : a.k;
  ELI_CHECK_KIND(kUnsupported, a.k % gs == 0 && gs % 32 == 0, name, ": group size ", gs,
                 " must divide k=", a.k, " and be a multiple of 32");
  ELI_CHECK_ARG(a.m <= kGemvMaxRows, name, ": m=", a.m, " exceeds ", kGemvMaxRows, " rows (use the GEMM)");
  ELI_CHECK_ARG(a.gated == GatedAct::kNone || a.n % 2 == 0, name, ": a gated activation needs an even n, got ", a.n);
  const bool gated = a.gated != GatedAct::kNone;
  const int64_t n_out = gated ? a.n / 2 : a.n;
  ELI_CHECK_ARG(a.m <= 1 || (a.x_stride >= a.k && a.out_stride >= n_out), name, ": row stride below the row width");
  if (a.m == 0 || a.n == 0) return;
  ELI_CHECK_ARG(a.out != nullptr && a.x != nullptr && w.q != nullptr && w.scales != nullptr && w.zeros != nullptr,
                name, ": null pointer");
  ELI_CHECK_ARG(reinterpret_cast<uintptr_t>(w.q) % 16 == 0, name, ": weights not 16-byte aligned");
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);

  const float* x = a.x;
  int64_t xs = a.m > 1 ? a.x_stride : a.k;
  const bool aligned = reinterpret_cast<uintptr_t>(x) % 16 == 0 && (a.m <= 1 || xs % 4 == 0);
  if (a.norm_weight != nullptr || w.perm != nullptr || !aligned) {
    const size_t need = wq_cuda::gemv_workspace_bytes(a.m, a.k);
    ELI_CHECK_ARG(a.workspace != nullptr && a.workspace_bytes >= need &&
                      reinterpret_cast<uintptr_t>(a.workspace) % 16 == 0,
                  name, ": the norm / act-order / unaligned-x path needs a 16-byte aligned workspace of ", need,
                  " bytes, got ", a.workspace_bytes);
    float* ws = static_cast<float*>(a.workspace);
    wq_gemv_prep<<<static_cast<unsigned>(a.m), 256, 0, stream>>>(ws, a.x, a.m > 1 ? a.x_stride : a.k, a.k,
                                                                 a.norm_weight, a.norm_weight_offset, a.norm_eps,
                                                                 w.perm);
    ELI_CUDA_CHECK_LAUNCH();
    x = ws;
    xs = a.k;
  }
  GemvParams p;
  p.out = a.out;
  p.x = x;
  p.q = static_cast<const uint8_t*>(w.q);
  p.scales = w.scales;
  p.zeros = w.zeros;
  p.bias = a.bias;
  p.n = a.n;
  p.n_out = n_out;
  p.k = a.k;
  p.xs = xs;
  p.out_stride = a.m > 1 ? a.out_stride : n_out;
  p.groups = a.k / gs;
  p.gs = gs;
  p.row_bytes = a.k * BITS / 8;
  p.nchunks = p.row_bytes / 16;
  p.m = static_cast<int>(a.m);
  p.gated = gated;
  p.gelu = a.gated == GatedAct::kGeluTanh;
  p.accumulate = a.accumulate;
  launch_rows<BITS>(p, stream);
}

}  // namespace

void wq_w4a16_gemv_cuda(const void* args, const ExecContext& ctx) { wq_gemv<4>(args, ctx); }
void wq_w8a16_gemv_cuda(const void* args, const ExecContext& ctx) { wq_gemv<8>(args, ctx); }

}  // namespace eli
