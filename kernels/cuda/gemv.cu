// kernels/cuda/gemv.cu: the decode GEMV (Op::kGemv, GemvArgs in kernels/ops.h):
//   out[r, :] (+)= act(norm(x[r, :]) @ w^T + bias)   for r < m (m small: 1..8 per launch),
// with w (n, k) row-major bf16, f16 (IEEE half) or f32, x f32, f32 accumulation, optional fused
// RMSNorm of the x rows, bias, gated activation (SiLU or GELU-tanh of gate rows [0, n/2) times up
// rows [n/2, n)) and accumulate
// (residual add). One kernel template serves every weight type; the type only changes how a
// chunk of 8 weights becomes 8 floats (bf16: uint16_t bits shifted into an f32; f16: __half,
// converted with __half22float2; f32: two 16-byte loads), so each weight type is an instantiation.
//
// Batch-1 decode is a stream over the weights, so the kernel is built around the w reads:
// - One CTA owns RR weight rows (RR/2 gate rows + the matching up rows when gated) and the whole
//   K range; K is split across every thread of the CTA in chunks of 8 elements (one 16-byte load
//   of bf16 / f16 w per row), so a warp reads 512 contiguous bytes per row per load instruction.
// - Each thread issues kUnroll chunks x RR rows = 8 independent 16-byte loads
//   (ld.global.nc.L1::no_allocate: w is read once, it must not evict x from L1) before it uses
//   any of them. x (and the norm weight) are read through the L1 (every CTA reads the same rows).
// - The CTA reduces its per-thread partial sums through shared memory (transposed: one warp per
//   partial, no atomics), then applies 1/rms, bias, the gated activation and the (accumulating) store.
// - The fused RMSNorm costs no extra pass: out = rsqrt(mean(x^2)+eps) * sum_k w[n,k] x[k] (g[k]+off),
//   and each CTA accumulates sum(x^2) of its rows from the x values it loads anyway.
// - The block size follows K (k/16 threads, 32..256) and RR (4, or 2 when n is too small to give
//   every SM two CTAs), so small matrices still spread over the machine.
// - Programmatic dependent launch (sm_90+): the kernel is launched with the programmatic stream
//   serialization attribute, so it may start while the previous kernel of the stream drains. It
//   issues its first weight loads (weights are never written by a decode step), then waits
//   (griddepcontrol.wait: the previous kernel has completed and its writes are visible) before it
//   touches x, the norm weight, bias or out. It also triggers its own dependents at its start, so a
//   following PDL kernel (e.g. the next GEMV) can prefetch during this one's tail; such a kernel
//   must wait before reading what this one writes (the contract of kernels/cuda/pdl.cuh).
//   ELI_GEMV_PDL=0 (or ELI_PDL=0 for every kernel) in the environment turns the attribute off
//   (kernels/cuda_tuning_knobs.h: read once; set_knob switches it for benchmarks and tests).
// Any shape, stride and alignment is correct: k % 8 != 0, misaligned pointers or strides fall back
// to a scalar kernel with the same structure. m > kGemvMaxRows is run as several launches (the
// caller should use the GEMM there). Nothing is allocated; everything goes on ctx.stream, so the
// launcher is CUDA-graph capturable. out must not alias x, w, bias or norm_weight.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>

#include <cuda_fp16.h>

#include "kernels/cuda/sm_count.h"
#include "eli/error.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda_tuning_knobs.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

constexpr int kMaxThreads = 256;
constexpr int kChunk = 8;   // weights per thread per row per step (16 bytes of bf16 / f16)
constexpr int kUnroll = 2;  // chunks per row a thread has in flight (vector path)

struct GemvParams {
  float* out;               // (m, n_out), row stride out_stride
  const float* x;           // (m, k), row stride x_stride
  const void* w;            // (n, k) contiguous
  const float* bias;        // (n) or nullptr
  const float* g;           // (k) norm weight or nullptr
  int64_t n, k, out_stride, x_stride;
  int64_t n_out;            // gated ? n / 2 : n
  int m;                    // rows of x in this launch, <= the kernel's M
  float eps, g_offset;
  bool gated, gelu, accumulate;  // gated: act(gate) * up with act = gelu ? GELU-tanh : SiLU
};

// ---- loads ----------------------------------------------------------------------------------

// 16 bytes of streamed (read-once) data: non-coherent path, no L1 allocation.
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// 8 consecutive weights of one row: one 16-byte load for bf16 (W = uint16_t, raw bits) and f16
// (W = __half), two for f32.
template <typename W>
struct WChunk {
  static constexpr int kLoads = static_cast<int>(sizeof(W)) * kChunk / 16;
  uint4 u[kLoads];
  __device__ __forceinline__ void load(const W* p) {
#pragma unroll
    for (int i = 0; i < kLoads; ++i) u[i] = ld_stream16(reinterpret_cast<const uint4*>(p) + i);
  }
  __device__ __forceinline__ void to_float(float (&f)[kChunk]) const;
};
template <>
__device__ __forceinline__ void WChunk<uint16_t>::to_float(float (&f)[kChunk]) const {
  const uint32_t q[4] = {u[0].x, u[0].y, u[0].z, u[0].w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(q[i] << 16);
    f[2 * i + 1] = __uint_as_float(q[i] & 0xffff0000u);
  }
}
template <>
__device__ __forceinline__ void WChunk<__half>::to_float(float (&f)[kChunk]) const {
  const uint32_t q[4] = {u[0].x, u[0].y, u[0].z, u[0].w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    __half2 h;
    static_assert(sizeof(h) == sizeof(q[i]), "__half2 is 32 bits");
    memcpy(&h, &q[i], sizeof(h));  // a register move; element .x is the lower address
    const float2 v = __half22float2(h);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}
template <>
__device__ __forceinline__ void WChunk<float>::to_float(float (&f)[kChunk]) const {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    f[4 * i] = __uint_as_float(u[i].x);
    f[4 * i + 1] = __uint_as_float(u[i].y);
    f[4 * i + 2] = __uint_as_float(u[i].z);
    f[4 * i + 3] = __uint_as_float(u[i].w);
  }
}

__device__ __forceinline__ float load_w1(const uint16_t* w, int64_t i) {
  return __uint_as_float(static_cast<uint32_t>(__ldg(w + i)) << 16);
}
__device__ __forceinline__ float load_w1(const __half* w, int64_t i) { return __half2float(__ldg(w + i)); }
__device__ __forceinline__ float load_w1(const float* w, int64_t i) { return __ldg(w + i); }

// 8 floats of a model weight (read-only for good: the non-coherent path is fine).
__device__ __forceinline__ void load8_const(const float* p, float (&f)[kChunk]) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(p));
  const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}
// 8 floats of an activation, written by the previous kernel: a plain (coherent) load, since with
// programmatic dependent launch this kernel is already running while that kernel writes.
__device__ __forceinline__ void load8_act(const float* p, float (&f)[kChunk]) {
  const float4 a = *reinterpret_cast<const float4*>(p);
  const float4 b = *(reinterpret_cast<const float4*>(p) + 1);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

// ---- the kernel -----------------------------------------------------------------------------

// Weight row loaded as the CTA's rr-th row (clamped into range: rows past the end are loaded
// again and their results dropped, so the load loop has no branches).
__device__ __forceinline__ int64_t cta_row(const GemvParams& p, int64_t base, int rr, int rr_half) {
  if (!p.gated) return min(base + rr, p.n - 1);
  const int64_t half = p.n / 2;
  return rr < rr_half ? min(base + rr, half - 1) : half + min(base + rr - rr_half, half - 1);
}

// M: compile-time bound on p.m. RR: weight rows per CTA (even). kVec: 16-byte path (k % 8 == 0,
// w, x, g 16-byte aligned, x_stride % 4 == 0); else element-wise.
template <typename W, int M, int RR, bool kVec>
__global__ void __launch_bounds__(kMaxThreads) gemv_kernel(const GemvParams p) {
  constexpr int kV = M * RR + M;  // partial sums per thread: acc[r][rr], then sum(x^2)[r]
  extern __shared__ float red[];  // (kV, blockDim.x)
  __shared__ float fin[kV];
  const int tid = threadIdx.x, nt = blockDim.x;
  const int outs_per_cta = p.gated ? RR / 2 : RR;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * outs_per_cta;  // first output column
  const bool norm = p.g != nullptr;
  cuda::pdl_launch_dependents();
  const W* w = static_cast<const W*>(p.w);
  const W* wrow[RR];
#pragma unroll
  for (int rr = 0; rr < RR; ++rr) wrow[rr] = w + cta_row(p, base, rr, RR / 2) * p.k;

  float acc[M][RR], ss[M];
#pragma unroll
  for (int r = 0; r < M; ++r) {
    ss[r] = 0.f;
#pragma unroll
    for (int rr = 0; rr < RR; ++rr) acc[r][rr] = 0.f;
  }

  if (kVec) {
    const int64_t n_chunks = p.k / kChunk;
    bool waited = false;
    for (int64_t c0 = tid; c0 < n_chunks; c0 += static_cast<int64_t>(nt) * kUnroll) {
      // All loads of this step first (addresses clamped, so no branches), then the math.
      WChunk<W> wv[kUnroll][RR];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t c = min(c0 + static_cast<int64_t>(u) * nt, n_chunks - 1);
#pragma unroll
        for (int rr = 0; rr < RR; ++rr) wv[u][rr].load(wrow[rr] + c * kChunk);
      }
      if (!waited) {  // the first weights are in flight; everything else needs the previous kernel
        cuda::pdl_wait();
        waited = true;
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t c = c0 + static_cast<int64_t>(u) * nt;
        if (c >= n_chunks) break;
        float wf[RR][kChunk];
#pragma unroll
        for (int rr = 0; rr < RR; ++rr) wv[u][rr].to_float(wf[rr]);
        float gf[kChunk];
        if (norm) {
          load8_const(p.g + c * kChunk, gf);
#pragma unroll
          for (int j = 0; j < kChunk; ++j) gf[j] += p.g_offset;
        }
#pragma unroll
        for (int r = 0; r < M; ++r) {
          if (r >= p.m) break;
          float xf[kChunk];
          load8_act(p.x + r * p.x_stride + c * kChunk, xf);
          if (norm) {
#pragma unroll
            for (int j = 0; j < kChunk; ++j) {
              ss[r] = fmaf(xf[j], xf[j], ss[r]);
              xf[j] *= gf[j];
            }
          }
#pragma unroll
          for (int rr = 0; rr < RR; ++rr) {
#pragma unroll
            for (int j = 0; j < kChunk; ++j) acc[r][rr] = fmaf(wf[rr][j], xf[j], acc[r][rr]);
          }
        }
      }
    }
  } else {
    cuda::pdl_wait();
    for (int64_t j = tid; j < p.k; j += nt) {
      float wf[RR];
#pragma unroll
      for (int rr = 0; rr < RR; ++rr) wf[rr] = load_w1(wrow[rr], j);
      const float gj = norm ? __ldg(p.g + j) + p.g_offset : 1.f;
#pragma unroll
      for (int r = 0; r < M; ++r) {
        if (r >= p.m) break;
        float xj = p.x[r * p.x_stride + j];
        if (norm) {
          ss[r] = fmaf(xj, xj, ss[r]);
          xj *= gj;
        }
#pragma unroll
        for (int rr = 0; rr < RR; ++rr) acc[r][rr] = fmaf(wf[rr], xj, acc[r][rr]);
      }
    }
  }

  cuda::pdl_wait();  // threads that had no chunk (returns at once for the others)

  // Block reduction: red[v][tid] = partial v of this thread; warp i sums partials i, i + warps, ...
#pragma unroll
  for (int r = 0; r < M; ++r) {
#pragma unroll
    for (int rr = 0; rr < RR; ++rr) red[(r * RR + rr) * nt + tid] = acc[r][rr];
    red[(M * RR + r) * nt + tid] = ss[r];
  }
  __syncthreads();
  const int lane = tid & 31, warp = tid >> 5, n_warps = nt >> 5;
  for (int v = warp; v < kV; v += n_warps) {
    float s = 0.f;
    for (int j = lane; j < nt; j += 32) s += red[v * nt + j];
    s = cuda::warp_reduce_sum(s);
    if (lane == 0) fin[v] = s;
  }
  __syncthreads();

  // Epilogue: one thread per (row r, output column) of this CTA.
  for (int t = tid; t < p.m * outs_per_cta; t += nt) {
    const int r = t / outs_per_cta, o = t % outs_per_cta;
    const int64_t col = base + o;
    if (col >= p.n_out) continue;
    const float inv = norm ? 1.0f / sqrtf(fin[M * RR + r] / static_cast<float>(p.k) + p.eps) : 1.0f;
    float y = fin[r * RR + o] * inv + (p.bias != nullptr ? p.bias[col] : 0.f);
    if (p.gated) {
      const float up = fin[r * RR + o + RR / 2] * inv + (p.bias != nullptr ? p.bias[p.n_out + col] : 0.f);
      y = (p.gelu ? 0.5f * y * (1.0f + tanhf(0.7978845608f * (y + 0.044715f * y * y * y))) : y / (1.0f + expf(-y))) * up;
    }
    float* o_ptr = p.out + r * p.out_stride + col;
    *o_ptr = p.accumulate ? *o_ptr + y : y;
  }
}

// ---- host side ------------------------------------------------------------------------------

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

using cuda::sm_count;

// The GEMV's own switch (the kGemvPdl knob) on top of the global one.
bool pdl_enabled() { return cuda::pdl_enabled() && cuda::knob(cuda::Knob::kGemvPdl) != 0; }

template <typename W, int M, int RR, bool kVec>
void launch_one(const GemvParams& p, int threads, bool pdl, cudaStream_t stream) {
  const int outs_per_cta = p.gated ? RR / 2 : RR;
  const int64_t blocks = (p.n_out + outs_per_cta - 1) / outs_per_cta;
  ELI_CHECK(blocks <= INT_MAX, "gemv: n=", p.n, " exceeds the grid limit");
  const size_t smem = static_cast<size_t>(M * RR + M) * threads * sizeof(float);
  cuda::apply_carveout_knob(reinterpret_cast<const void*>(gemv_kernel<W, M, RR, kVec>), cuda::Knob::kGemvCarveout);
  cuda::launch_kernel(gemv_kernel<W, M, RR, kVec>, dim3(static_cast<unsigned>(blocks)),
                      dim3(static_cast<unsigned>(threads)), smem, stream, pdl, p);
}

template <typename W, int RR>
void launch_vec(const GemvParams& p, int threads, bool pdl, cudaStream_t stream) {
  if (p.m <= 1) {
    launch_one<W, 1, RR, true>(p, threads, pdl, stream);
  } else if (p.m <= 2) {
    launch_one<W, 2, RR, true>(p, threads, pdl, stream);
  } else if (p.m <= 4) {
    launch_one<W, 4, RR, true>(p, threads, pdl, stream);
  } else {
    launch_one<W, 8, RR, true>(p, threads, pdl, stream);
  }
}

template <typename W>
void gemv_cuda(const void* args_ptr, const ExecContext& ctx) {
  const GemvArgs& a = *static_cast<const GemvArgs*>(args_ptr);
  ELI_CHECK(a.m >= 0 && a.n >= 0 && a.k > 0, "gemv: bad shape m=", a.m, " n=", a.n, " k=", a.k);
  ELI_CHECK(a.gated == GatedAct::kNone || a.n % 2 == 0, "gemv: a gated activation needs an even n, got ", a.n);
  const bool gated = a.gated != GatedAct::kNone;
  const int64_t n_out = gated ? a.n / 2 : a.n;
  ELI_CHECK(a.m <= 1 || (a.x_stride >= a.k && a.out_stride >= n_out), "gemv: row stride below the row width");
  if (a.m == 0 || a.n == 0) return;
  ELI_CHECK(a.out != nullptr && a.x != nullptr && a.w != nullptr, "gemv: null pointer (out ", a.out == nullptr ? "null" : "set",
            ", x ", a.x == nullptr ? "null" : "set", ", w ", a.w == nullptr ? "null" : "set", "; m ", a.m, ", n ", a.n, ", k ", a.k, ")");
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);

  const bool vec = a.k % kChunk == 0 && (a.m == 1 || a.x_stride % 4 == 0) && aligned16(a.x) && aligned16(a.w) &&
                   (a.norm_weight == nullptr || aligned16(a.norm_weight));
  // Threads: enough that each has ~kUnroll chunks of K (vector) or ~4 elements (scalar).
  const int64_t per_thread_items = vec ? a.k / kChunk : a.k;
  const int64_t want = vec ? (per_thread_items + kUnroll - 1) / kUnroll : (per_thread_items + 3) / 4;
  const int threads = static_cast<int>(std::clamp<int64_t>((want + 31) / 32 * 32, 32, kMaxThreads));
  // Rows per CTA: 4 unless that leaves fewer than two CTAs per SM.
  const int64_t ctas_rr4 = (n_out + (gated ? 2 : 4) - 1) / (gated ? 2 : 4);
  const bool rr4 = ctas_rr4 >= 2 * static_cast<int64_t>(sm_count());
  const bool pdl = pdl_enabled();

  for (int64_t r0 = 0; r0 < a.m; r0 += kGemvMaxRows) {
    GemvParams p;
    p.out = a.out + r0 * a.out_stride;
    p.x = a.x + r0 * a.x_stride;
    p.w = a.w;
    p.bias = a.bias;
    p.g = a.norm_weight;
    p.n = a.n;
    p.k = a.k;
    p.out_stride = a.out_stride;
    p.x_stride = a.x_stride;
    p.n_out = n_out;
    p.m = static_cast<int>(std::min<int64_t>(a.m - r0, kGemvMaxRows));
    p.eps = a.norm_eps;
    p.g_offset = a.norm_weight_offset;
    p.gated = gated;
    p.gelu = a.gated == GatedAct::kGeluTanh;
    p.accumulate = a.accumulate;
    if (!vec) {
      launch_one<W, static_cast<int>(kGemvMaxRows), 2, false>(p, threads, pdl, stream);
    } else if (rr4) {
      launch_vec<W, 4>(p, threads, pdl, stream);
    } else {
      launch_vec<W, 2>(p, threads, pdl, stream);
    }
  }
}

}  // namespace

void gemv_bf16_cuda(const void* args, const ExecContext& ctx) { gemv_cuda<uint16_t>(args, ctx); }
void gemv_f16_cuda(const void* args, const ExecContext& ctx) { gemv_cuda<__half>(args, ctx); }
void gemv_f32_cuda(const void* args, const ExecContext& ctx) { gemv_cuda<float>(args, ctx); }

}  // namespace eli
