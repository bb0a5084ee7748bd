// kernels/cuda/wq_w4a16_gemv.cu: the decode GEMV (Op::kGemv, m <= kGemvMaxRows) of the grouped
// integer layouts kInt4Grouped / kInt8Grouped (kernels/cuda/wq_w4a16.cuh), read as stored:
//   out[r, :] (+)= act(norm(x[r, :])[perm] @ W^T + bias)
//
// Why int8 activations and dp4a (and not int4 -> bf16x2 with packed FMAs): the GEMV must be bound
// by reading the weight (~7 int4 weights per SM per clock on an H100 at the read ceiling) for
// every m up to 8. Converting each weight to a float and doing one f32 FMA per weight and x row
// (the kernel this one replaces) made it ALU-bound from m = 1 on. With x rounded to int8 once per
// call, a 32-column tile costs 3 integer operations per 8 int4 codes to unpack (once, for all x
// rows) and one dp4a per 4 weights per x row (exact int32 sums), plus ~4 f32 operations per
// (tile, x row) to scale; the x codes (32 bytes per tile per row) are shared by the warp's 4
// weight rows. Packed bf16 FMAs would keep bf16-level accuracy but cost about as many operations
// per x row as the dp4a route and round the partial sums to bf16 (or convert to f32 every few
// products). The price is the activation rounding, |v - d q| <= d / 2 per element, which is the
// GGUF GEMV's (docs/quantization.md "Tolerance" gives the bound; the tests use it).
//
// 1. Prep kernel (one launch, grid (tiles / 32, m)): the effective x rows (RMSNorm with
//    norm_weight + norm_weight_offset, then the act-order gather x[perm[j]]) quantized per 32-column
//    tile into the workspace (wq_w4a16.cuh: codes + {d, sum of codes}).
// 2. GEMV: a row group of kw warps (1, or the CTA's 4 when one warp per group would leave SMs
//    idle: wq_cuda::gemv_k_warps) owns 4 weight rows (2 gate + 2 up rows when gated); thread j of
//    the group takes tiles j, j + 32 kw, ... of every row, gemv_unroll(bits) tiles per trip: all of
//    a trip's weight loads (16 16-byte loads per thread), scales and zeros are issued before the
//    first is used. Per tile it unpacks the codes of its 4 rows once, then per x row loads the x
//    tile (two 16-byte loads + one float2) and forms 4 integer dot products (tile_dot) scaled in
//    f32 (tile_fma). No split over the grid: the group's rows are finished in one CTA.
// 3. Warp-shuffle sums (kw = 4: then the 4 warps' sums added in warp order through shared memory);
//    the thread owning (row, output) applies bias, the gated activation and the (accumulating)
//    store. Rows past n are clamped for loading and dropped at the store. Deterministic.
// tests/cpp/test_wq_cuda_host.cc emulates this arithmetic (same helpers, same order) on the CPU.
// Programmatic dependent launch (pdl.cuh): the prep kernel waits before reading x; the GEMV issues
// its first trip's weight loads before its wait and reads the workspace, bias and out after it.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>

#include "kernels/cuda/sm_count.h"
#include "eli/error.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/wq_w4a16.cuh"
#include "kernels/cuda/x_quant_tile.cuh"
#include "kernels/ops.h"
#include "kernels/wq_matrix.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

using wq_cuda::kGemvRows;
using wq_cuda::kGemvThreads;
constexpr int kWarps = kGemvThreads / 32;
constexpr int kPrepThreads = 256;
constexpr int kPrepTiles = kPrepThreads / 8;  // 8 threads per tile, 4 elements each

struct PrepParams {
  const float* x;      // (m, k), row stride xs
  const float* g;      // norm weight (k) or nullptr
  const int32_t* perm; // (k) or nullptr
  int8_t* qs;          // (m, k) codes
  float2* ds;          // (m, nt) {d, sum of codes}
  int64_t k, xs;
  int nt;
  float eps, off;
  bool vec;  // 16-byte loads of x (aligned, no gather)
};

__global__ void __launch_bounds__(kPrepThreads) wq_gemv_prep(const PrepParams p) {
  const int tid = threadIdx.x;
  const int64_t r = blockIdx.y;
  const float* x = p.x + r * p.xs;
  cuda::pdl_launch_dependents();
  cuda::pdl_wait();

  // With a norm every CTA of the row sums the whole row (a few 10 KB, through L2).
  const float inv = p.g != nullptr ? cuda::row_rms_inverse<kPrepThreads>(x, p.k, p.eps, p.vec) : 1.f;

  // All threads run the shuffles (8 aligned lanes share a tile); those past the last tile compute
  // on zeros and store nothing.
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kPrepTiles + tid / 8;
  const int sub = tid & 7;
  const bool valid = t < p.nt;
  float v[4] = {0.f, 0.f, 0.f, 0.f};
  if (valid) cuda::load_lane(x, 32 * t + 4 * sub, p.perm, p.g, p.off, inv, p.vec, v);
  const cuda::TileCodes c = cuda::quantize_tile(v);
  if (valid) {
    *reinterpret_cast<uint32_t*>(p.qs + r * p.k + 32 * t + 4 * sub) = c.packed;
    if (sub == 0) p.ds[r * p.nt + t] = make_float2(c.d, static_cast<float>(c.sum));
  }
}

struct GemvParams {
  float* out;          // (m, n_out), row stride out_stride
  const int8_t* xq;    // (m, k) codes
  const float2* xds;   // (m, nt)
  const uint8_t* q;    // (n, row_bytes)
  const float* scales; // (n, groups)
  const float* zeros;  // (n, groups)
  const float* bias;   // (n) or nullptr
  int64_t n, n_out, k, out_stride, groups, row_bytes;
  int nt, tpg, m;      // tiles per row, tiles per group, x rows
  bool gated, gelu, accumulate;
};

// out[i, col] (+)= act(y (+ bias), up (+ bias)) for output col of x row i.
__device__ __forceinline__ void store_out(const GemvParams& p, int i, int64_t col, float y, float up) {
  if (p.bias != nullptr) y += p.bias[col];
  if (p.gated) {
    if (p.bias != nullptr) up += p.bias[p.n_out + col];
    y = (p.gelu ? 0.5f * y * (1.0f + tanhf(0.7978845608f * (y + 0.044715f * y * y * y))) : y / (1.0f + expf(-y))) * up;
  }
  float* dst = p.out + i * p.out_stride + col;
  *dst = p.accumulate ? *dst + y : y;
}

template <int BITS, int M, int KW>
__global__ void __launch_bounds__(kGemvThreads) wq_gemv_kernel(const GemvParams p) {
  static_assert(KW == 1 || KW == kWarps, "a row group is one warp or the whole CTA");
  constexpr int R = kGemvRows;
  constexpr int U = BITS == 4 ? 4 : 2;  // == wq_cuda::gemv_unroll(BITS)
  constexpr int WW = wq_cuda::TileWords<BITS>::kWords;
  constexpr int TB = 4 * WW;  // bytes of a tile of one row
  constexpr int STEP = 32 * KW;  // tiles between a thread's consecutive tiles
  __shared__ float red[KW][M * R];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gl = (warp % KW) * 32 + lane;  // thread index within the row group
  const int64_t grp = static_cast<int64_t>(blockIdx.x) * (kWarps / KW) + warp / KW;
  const int ro = p.gated ? R / 2 : R;
  const int64_t o0 = grp * ro;
  cuda::pdl_launch_dependents();
  if (o0 >= p.n_out) {  // a whole warp (KW = 1) or the whole CTA (KW = 4): no barrier is skipped
    cuda::pdl_wait();
    return;
  }

  const uint8_t* wrow[R];
  const float* srow[R];
  const float* zrow[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t row = wq_cuda::gemv_warp_row(p.n, p.gated, o0, r);
    wrow[r] = p.q + row * p.row_bytes;
    srow[r] = p.scales + row * p.groups;
    zrow[r] = p.zeros + row * p.groups;
  }

  float acc[M][R];
#pragma unroll
  for (int i = 0; i < M; ++i) {
#pragma unroll
    for (int r = 0; r < R; ++r) acc[i][r] = 0.f;
  }

  bool waited = false;
  for (int t0 = 0; t0 < p.nt; t0 += STEP * U) {
    uint32_t w[U][R][WW];
    float s[U][R], z[U][R];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int t = t0 + STEP * u + gl;
      if (t >= p.nt) continue;  // not loaded, skipped below
      const int g = t / p.tpg;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const uint4* src = reinterpret_cast<const uint4*>(wrow[r] + static_cast<int64_t>(t) * TB);
#pragma unroll
        for (int h = 0; h < WW / 4; ++h) {
          const uint4 v = __ldg(src + h);
          w[u][r][4 * h + 0] = v.x;
          w[u][r][4 * h + 1] = v.y;
          w[u][r][4 * h + 2] = v.z;
          w[u][r][4 * h + 3] = v.w;
        }
        s[u][r] = __ldg(srow[r] + g);
        z[u][r] = __ldg(zrow[r] + g);
      }
    }
    if (!waited) {  // the first weights are in flight; the x codes need the prep kernel
      cuda::pdl_wait();
      waited = true;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int t = t0 + STEP * u + gl;
      if (t >= p.nt) continue;
      uint32_t wu[R][8];
#pragma unroll
      for (int r = 0; r < R; ++r) wq_cuda::tile_unpack<BITS>(w[u][r], wu[r]);
#pragma unroll
      for (int i = 0; i < M; ++i) {
        if (i >= p.m) break;
        const int64_t xt = static_cast<int64_t>(i) * p.nt + t;
        const int4* xp = reinterpret_cast<const int4*>(p.xq + 32 * xt);
        const int4 a = xp[0], b = xp[1];
        const float2 ds = p.xds[xt];
        const uint32_t xw[8] = {static_cast<uint32_t>(a.x), static_cast<uint32_t>(a.y), static_cast<uint32_t>(a.z),
                                static_cast<uint32_t>(a.w), static_cast<uint32_t>(b.x), static_cast<uint32_t>(b.y),
                                static_cast<uint32_t>(b.z), static_cast<uint32_t>(b.w)};
#pragma unroll
        for (int r = 0; r < R; ++r) {
          acc[i][r] = wq_cuda::tile_fma(acc[i][r], s[u][r], z[u][r], ds.x, ds.y, wq_cuda::tile_dot(wu[r], xw));
        }
      }
    }
  }
  cuda::pdl_wait();  // (returns at once: every live thread waited in the first trip)

#pragma unroll
  for (int i = 0; i < M; ++i) {
#pragma unroll
    for (int r = 0; r < R; ++r) acc[i][r] = cuda::warp_reduce_sum(acc[i][r]);
  }
  if (KW == 1) {
    // Every lane holds every sum; lane (i * R + o) % 32 stores output o of row i.
#pragma unroll
    for (int i = 0; i < M; ++i) {
#pragma unroll
      for (int o = 0; o < R; ++o) {
        if (i >= p.m || o >= ro || lane != ((i * R + o) & 31)) continue;
        if (o0 + o >= p.n_out) continue;
        store_out(p, i, o0 + o, acc[i][o], p.gated ? acc[i][o + R / 2] : 0.f);
      }
    }
  } else {
    if (lane == 0) {
#pragma unroll
      for (int i = 0; i < M; ++i) {
#pragma unroll
        for (int r = 0; r < R; ++r) red[warp % KW][i * R + r] = acc[i][r];
      }
    }
    __syncthreads();
    const int tid = threadIdx.x;
    if (tid < M * R) {
      const int i = tid / R, o = tid % R;
      if (i < p.m && o < ro && o0 + o < p.n_out) {
        float y = 0.f, up = 0.f;
#pragma unroll
        for (int kw = 0; kw < KW; ++kw) {  // warp order: deterministic
          y += red[kw][i * R + o];
          if (p.gated) up += red[kw][i * R + o + R / 2];
        }
        store_out(p, i, o0 + o, y, up);
      }
    }
  }
}

template <int BITS, int M>
void launch_one(const GemvParams& p, int kw, bool pdl, cudaStream_t stream) {
  const int ro = p.gated ? kGemvRows / 2 : kGemvRows;
  const int64_t groups = (p.n_out + ro - 1) / ro;
  const int64_t blocks = kw == 1 ? (groups + kWarps - 1) / kWarps : groups;
  ELI_CHECK(blocks <= INT_MAX, "wq gemv: n=", p.n, " exceeds the grid limit");
  const dim3 grid(static_cast<unsigned>(blocks));
  if (kw == 1) {
    cuda::launch_kernel(wq_gemv_kernel<BITS, M, 1>, grid, dim3(kGemvThreads), 0, stream, pdl, p);
  } else {
    cuda::launch_kernel(wq_gemv_kernel<BITS, M, kWarps>, grid, dim3(kGemvThreads), 0, stream, pdl, p);
  }
}

template <int BITS>
void launch_rows(const GemvParams& p, int kw, bool pdl, cudaStream_t stream) {
  if (p.m <= 1) {
    launch_one<BITS, 1>(p, kw, pdl, stream);
  } else if (p.m <= 2) {
    launch_one<BITS, 2>(p, kw, pdl, stream);
  } else if (p.m <= 4) {
    launch_one<BITS, 4>(p, kw, pdl, stream);
  } else {
    launch_one<BITS, 8>(p, kw, pdl, stream);
  }
}

using cuda::sm_count;

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
  ELI_CHECK_KIND(kUnsupported, a.k / 32 <= INT_MAX, name, ": k=", a.k, " is too large");
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
  const size_t need = wq_cuda::gemv_workspace_bytes(a.m, a.k);
  ELI_CHECK_ARG(a.workspace != nullptr && a.workspace_bytes >= need &&
                    reinterpret_cast<uintptr_t>(a.workspace) % 16 == 0,
                name, ": needs a 16-byte aligned workspace of ", need, " bytes (the int8 x rows), got ",
                a.workspace_bytes);
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const bool pdl = cuda::pdl_enabled();
  const int nt = static_cast<int>(a.k / 32);
  int8_t* xq = static_cast<int8_t*>(a.workspace);
  float2* xds = reinterpret_cast<float2*>(static_cast<uint8_t*>(a.workspace) + wq_cuda::gemv_xq_bytes(a.m, a.k));

  PrepParams pp;
  pp.x = a.x;
  pp.g = a.norm_weight;
  pp.perm = w.perm;
  pp.qs = xq;
  pp.ds = xds;
  pp.k = a.k;
  pp.xs = a.m > 1 ? a.x_stride : a.k;
  pp.nt = nt;
  pp.eps = a.norm_eps;
  pp.off = a.norm_weight_offset;
  pp.vec = w.perm == nullptr && reinterpret_cast<uintptr_t>(a.x) % 16 == 0 && pp.xs % 4 == 0;
  const int64_t gx = (nt + kPrepTiles - 1) / kPrepTiles;
  cuda::launch_kernel(wq_gemv_prep, dim3(static_cast<unsigned>(gx), static_cast<unsigned>(a.m)), dim3(kPrepThreads), 0,
                      stream, pdl, pp);

  GemvParams p;
  p.out = a.out;
  p.xq = xq;
  p.xds = xds;
  p.q = static_cast<const uint8_t*>(w.q);
  p.scales = w.scales;
  p.zeros = w.zeros;
  p.bias = a.bias;
  p.n = a.n;
  p.n_out = n_out;
  p.k = a.k;
  p.out_stride = a.m > 1 ? a.out_stride : n_out;
  p.groups = a.k / gs;
  p.row_bytes = a.k * BITS / 8;
  p.nt = nt;
  p.tpg = static_cast<int>(gs / 32);
  p.m = static_cast<int>(a.m);
  p.gated = gated;
  p.gelu = a.gated == GatedAct::kGeluTanh;
  p.accumulate = a.accumulate;
  const int kw = wq_cuda::gemv_k_warps(n_out, gated, sm_count(), wq_cuda::gemv_k_warps_setting());
  launch_rows<BITS>(p, kw, pdl, stream);
}

}  // namespace

void wq_w4a16_gemv_cuda(const void* args, const ExecContext& ctx) { wq_gemv<4>(args, ctx); }
void wq_w8a16_gemv_cuda(const void* args, const ExecContext& ctx) { wq_gemv<8>(args, ctx); }

}  // namespace eli
