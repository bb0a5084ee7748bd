// kernels/cuda/wq_w4a16_gemm.cu: the tensor-core GEMM (Op::kGemm, m > kGemvMaxRows) of the
// grouped integer layouts kInt4Grouped / kInt8Grouped (kernels/cuda/wq_w4a16.cuh):
//   out[m, n] (+)= x[m, k][perm] @ W^T + bias,  x bf16 (or f32, converted), out f32 (or bf16, without
//   accumulate: the pre-activation rows of a gated product whose activation is written in bf16).
//
// CTA: 4 warps side by side along n, BN = 128 output columns (32 per warp = 4 n8 tiles), BM = 16 MT
// rows (MT = 1, 2, 4 m16 tiles, every warp takes all of them). Each 32-column k-tile (one group)
// goes through an S-stage cp.async pipeline into shared memory: the bf16 x tile (BM x 32, rows
// padded to 80 bytes: conflict-free fragment reads), the packed weight rows as stored (128 x 16
// bytes int4, 128 x 32 bytes int8 padded to 48) and the 128 scales / zeros of the tile's group.
// A warp reads its A fragments (m16n8k16, row) from the x tile, dequantizes its B fragments in
// registers ((q - zero) * scale in f32, rounded once to bf16; one 16-bit shared load per fragment
// register, wq_cuda::frag_pair_offset / frag_pair_q, int4 pairs serving both k-steps) and issues
// mma.sync.m16n8k16 bf16 -> f32.
// Split-K (wq_cuda::gemm_splits) when the output tiles alone are too few: split s writes its f32
// partial sums to the workspace, and a reduction kernel adds them in split order (deterministic),
// then bias and the accumulate. Rows past m are zero-filled, weight rows past n clamped (their
// outputs are dropped). x rows that are f32, gathered by an act-order permutation, or not 16-byte
// addressable are first written as bf16 (m, k) into the workspace.
// From wq_cuda::dequant_gemm_rows() rows on (compute-bound products) the weight is instead
// dequantized to bf16 in row chunks (the same rounding) and each chunk multiplied by eli's bf16
// cuBLASLt GEMM (registry Op::kGemm, kBF16), bias / accumulate / bf16 out passed through.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "eli/error.h"
#include "kernels/cuda/wq_w4a16.cuh"
#include "kernels/ops.h"
#include "kernels/registry.h"
#include "kernels/wq_matrix.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

using wq_cuda::kGemmBK;
using wq_cuda::kGemmBN;
using wq_cuda::kGemmThreads;

constexpr int kAStride = 40;  // bf16 per x-tile row in shared memory (32 + 8 padding)

struct GemmParams {
  const __nv_bfloat16* x;  // (m, k), row stride xs; rows 16-byte aligned
  const uint8_t* q;
  const float* scales;
  const float* zeros;
  const float* bias;
  void* out;       // (m, n), row stride out_stride, f32 or bf16 (out_bf16)
  float* partial;  // (splits, m, n) or nullptr (splits == 1)
  int64_t m, n, k, xs, out_stride, groups, gs, row_bytes, split_tiles;
  bool accumulate, out_bf16;
};

// out[r, c] (+)= v (+ bias[c]).
__device__ __forceinline__ void store_out(const GemmParams& p, int64_t r, int64_t c, float v) {
  if (p.bias != nullptr) v += p.bias[c];
  if (p.out_bf16) {
    static_cast<__nv_bfloat16*>(p.out)[r * p.out_stride + c] = __float2bfloat16_rn(v);
    return;
  }
  float* dst = static_cast<float*>(p.out) + r * p.out_stride + c;
  *dst = p.accumulate ? *dst + v : v;
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// float(q) for q < 2^23, exactly, without an int-to-float conversion.
__device__ __forceinline__ float q_float(uint32_t q) { return __int_as_float(0x4B000000u | q) - 8388608.0f; }

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lo) in the low half
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int BITS>
struct Tile {
  static constexpr int kStages = BITS == 4 ? 4 : 3;
  static constexpr int kBRow = BITS == 4 ? 16 : 48;  // bytes per weight row in shared memory
  static constexpr int kBSegs = BITS == 4 ? 1 : 2;   // 16-byte pieces per weight row per k-tile
};

template <int BITS, int MT>
__global__ void __launch_bounds__(kGemmThreads) wq_gemm_kernel(const GemmParams p) {
  using T = Tile<BITS>;
  constexpr int S = T::kStages;
  constexpr int BM = 16 * MT;
  __shared__ __align__(16) __nv_bfloat16 sA[S][BM * kAStride];
  __shared__ __align__(16) uint8_t sB[S][kGemmBN * T::kBRow];
  __shared__ float sS[S][kGemmBN];
  __shared__ float sZ[S][kGemmBN];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kGemmBN;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM;
  const int64_t kt_begin = static_cast<int64_t>(blockIdx.z) * p.split_tiles;
  int64_t kt_end = kt_begin + p.split_tiles;
  if (kt_end > p.k / kGemmBK) kt_end = p.k / kGemmBK;
  const int ntiles = kt_end > kt_begin ? static_cast<int>(kt_end - kt_begin) : 0;

  auto load_tile = [&](int stage, int64_t kt) {
    const int64_t kb = kt * kGemmBK;
#pragma unroll
    for (int i = tid; i < BM * 4; i += kGemmThreads) {
      const int row = i >> 2, seg = i & 3;
      const int64_t gr = m0 + row;
      const bool valid = gr < p.m;
      const __nv_bfloat16* src = p.x + (valid ? gr : p.m - 1) * p.xs + kb + seg * 8;
      cp_async16(&sA[stage][row * kAStride + seg * 8], src, valid);
    }
#pragma unroll
    for (int i = tid; i < kGemmBN * T::kBSegs; i += kGemmThreads) {
      const int row = i / T::kBSegs, seg = i % T::kBSegs;
      int64_t gr = n0 + row;
      if (gr > p.n - 1) gr = p.n - 1;
      cp_async16(&sB[stage][row * T::kBRow + seg * 16], p.q + gr * p.row_bytes + kb * BITS / 8 + seg * 16, true);
    }
    {
      int64_t gr = n0 + tid;  // kGemmThreads == kGemmBN: one scale and one zero per thread
      if (gr > p.n - 1) gr = p.n - 1;
      const int64_t gi = gr * p.groups + kb / p.gs;
      cp_async4(&sS[stage][tid], p.scales + gi);
      cp_async4(&sZ[stage][tid], p.zeros + gi);
    }
  };

  float acc[MT][4][4];
#pragma unroll
  for (int i = 0; i < MT; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;
    }
  }

#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    if (s < ntiles) load_tile(s, kt_begin + s);
    cp_async_commit();
  }

  for (int it = 0; it < ntiles; ++it) {
    cp_async_wait<S - 2>();
    __syncthreads();  // tile `it` is visible to all; every warp is done with the stage refilled next
    {
      const int nx = it + S - 1;
      if (nx < ntiles) load_tile(nx % S, kt_begin + nx);
      cp_async_commit();
    }
    const int st = it % S;
    uint32_t a[2][MT][4];  // A fragments of both k-steps
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        const __nv_bfloat16* base = &sA[st][(i * 16 + g) * kAStride + wq_cuda::frag_col(ks, 0, t, 0)];
        a[ks][i][0] = *reinterpret_cast<const uint32_t*>(base);
        a[ks][i][1] = *reinterpret_cast<const uint32_t*>(base + 8 * kAStride);
        a[ks][i][2] = *reinterpret_cast<const uint32_t*>(base + 8);
        a[ks][i][3] = *reinterpret_cast<const uint32_t*>(base + 8 * kAStride + 8);
      }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int row = warp * 32 + j * 8 + g;
      const uint8_t* wrow = &sB[st][row * T::kBRow];
      const float sc = sS[st][row], zr = sZ[st][row];
      uint32_t pr[2][2];  // 16-bit byte pairs [k-step][register] (int4: the same pair for both k-steps)
#pragma unroll
      for (int ks = 0; ks < 2; ++ks) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          pr[ks][r] = (BITS == 4 && ks == 1)
                          ? pr[0][r]
                          : *reinterpret_cast<const uint16_t*>(wrow + wq_cuda::frag_pair_offset(BITS, ks, r, t));
        }
      }
#pragma unroll
      for (int ks = 0; ks < 2; ++ks) {
        uint32_t b[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const float w0 = (q_float(wq_cuda::frag_pair_q(BITS, pr[ks][r], ks, 0)) - zr) * sc;
          const float w1 = (q_float(wq_cuda::frag_pair_q(BITS, pr[ks][r], ks, 1)) - zr) * sc;
          b[r] = pack_bf16(w0, w1);
        }
#pragma unroll
        for (int i = 0; i < MT; ++i) mma_bf16(acc[i][j], a[ks][i], b[0], b[1]);
      }
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int i = 0; i < MT; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t r = m0 + i * 16 + g + (e >= 2 ? 8 : 0);
        const int64_t c = n0 + warp * 32 + j * 8 + 2 * t + (e & 1);
        if (r >= p.m || c >= p.n) continue;
        const float v = acc[i][j][e];
        if (p.partial != nullptr) {
          p.partial[(static_cast<int64_t>(blockIdx.z) * p.m + r) * p.n + c] = v;
        } else {
          store_out(p, r, c, v);
        }
      }
    }
  }
}

// out = sum over splits (in order) + bias (+ out).
__global__ void wq_gemm_reduce(const GemmParams p, int splits) {
  const int64_t total = p.m * p.n;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / p.n, c = i - r * p.n;
    float v = 0.f;
    for (int s = 0; s < splits; ++s) v += p.partial[s * total + i];
    store_out(p, r, c, v);
  }
}

// bf16 x rows (m, k) into dst: x (f32 or bf16, row stride xs) gathered through perm (if any).
template <typename T>
__global__ void wq_gemm_convert_x(__nv_bfloat16* dst, const T* x, int64_t xs, int64_t m, int64_t k,
                                  const int32_t* perm) {
  const int64_t total = m * k;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / k, j = i - r * k;
    const int64_t src = perm != nullptr ? perm[j] : j;
    dst[i] = __float2bfloat16_rn(static_cast<float>(x[r * xs + src]));
  }
}

// Rows [r0, r0 + rows) of the weight as bf16 (rows, k) into dst: one thread per 16-byte chunk.
template <int BITS>
__global__ void wq_dequant_rows(__nv_bfloat16* dst, const GemmParams p, int64_t r0, int64_t rows) {
  constexpr int VC = BITS == 4 ? 32 : 16;
  const int64_t chunks = p.row_bytes / 16, total = rows * chunks;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / chunks, c = i - r * chunks;
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p.q + (r0 + r) * p.row_bytes) + c);
    const int64_t gi = (r0 + r) * p.groups + c * VC / p.gs;
    const float sc = p.scales[gi], zr = p.zeros[gi];
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
    float vals[VC];
#pragma unroll
    for (int w = 0; w < 4; ++w) {
#pragma unroll
      for (int e = 0; e < wq_cuda::word_vals(BITS); ++e) {
        vals[wq_cuda::word_col(BITS, w, e)] = wq_cuda::dequant(wq_cuda::word_q(BITS, words[w], e), sc, zr);
      }
    }
    uint4* out = reinterpret_cast<uint4*>(dst + r * p.k + c * VC);
#pragma unroll
    for (int o = 0; o < VC / 8; ++o) {
      out[o] = make_uint4(pack_bf16(vals[8 * o], vals[8 * o + 1]), pack_bf16(vals[8 * o + 2], vals[8 * o + 3]),
                          pack_bf16(vals[8 * o + 4], vals[8 * o + 5]), pack_bf16(vals[8 * o + 6], vals[8 * o + 7]));
    }
  }
}

unsigned grid_for(int64_t total) {
  const int64_t b = (total + 255) / 256;
  return static_cast<unsigned>(b < 4096 ? (b < 1 ? 1 : b) : 4096);
}

template <int BITS, int MT>
void launch_gemm(const GemmParams& p, int splits, cudaStream_t stream) {
  const int64_t gx = (p.n + kGemmBN - 1) / kGemmBN, gy = (p.m + 16 * MT - 1) / (16 * MT);
  ELI_CHECK(gx <= INT_MAX && gy <= 65535, "wq gemm: m=", p.m, " n=", p.n, " exceed the grid limits");
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(splits));
  wq_gemm_kernel<BITS, MT><<<grid, kGemmThreads, 0, stream>>>(p);
  ELI_CUDA_CHECK_LAUNCH();
}

template <int BITS>
void wq_gemm(const void* args_ptr, const ExecContext& ctx) {
  const GemmArgs& a = *static_cast<const GemmArgs*>(args_ptr);
  const char* name = BITS == 4 ? "w4a16 gemm" : "w8a16 gemm";
  ELI_CHECK_ARG(a.m >= 0 && a.n >= 0 && a.k > 0, name, ": bad shape m=", a.m, " n=", a.n, " k=", a.k);
  ELI_CHECK_ARG(a.w != nullptr, name, ": null weight");
  const WqMatrix& w = *static_cast<const WqMatrix*>(a.w);
  const WeightFormat want = BITS == 4 ? WeightFormat::kInt4Grouped : WeightFormat::kInt8Grouped;
  ELI_CHECK_ARG(w.format == want, name, ": got a ", weight_format_name(w.format), " weight");
  ELI_CHECK_KIND(kUnsupported, a.x_dtype == DType::kBF16 || a.x_dtype == DType::kF32, name,
                 ": x must be bf16 or float32, got ", dtype_name(a.x_dtype));
  ELI_CHECK_KIND(kUnsupported, a.out_dtype == DType::kF32 || (a.out_dtype == DType::kBF16 && !a.accumulate), name,
                 ": out must be float32 (or bf16 without accumulate), got ", dtype_name(a.out_dtype));
  ELI_CHECK_KIND(kUnsupported, a.k % 32 == 0, name, ": k=", a.k, " is not a multiple of 32");
  const int64_t gs = w.group_size > 0 ? w.group_size : a.k;
  ELI_CHECK_KIND(kUnsupported, a.k % gs == 0 && gs % 32 == 0, name, ": group size ", gs,
                 " must divide k=", a.k, " and be a multiple of 32");
  ELI_CHECK_ARG(a.m <= 1 || (a.x_stride >= a.k && a.out_stride >= a.n), name, ": row stride below the row width");
  if (a.m == 0 || a.n == 0) return;
  ELI_CHECK_ARG(a.out != nullptr && a.x != nullptr && w.q != nullptr && w.scales != nullptr && w.zeros != nullptr,
                name, ": null pointer");
  ELI_CHECK_ARG(reinterpret_cast<uintptr_t>(w.q) % 16 == 0, name, ": weights not 16-byte aligned");
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const int64_t xs = a.m > 1 ? a.x_stride : a.k;
  const bool convert = a.x_dtype != DType::kBF16 || w.perm != nullptr ||
                       reinterpret_cast<uintptr_t>(a.x) % 16 != 0 || (a.m > 1 && xs % 8 != 0);
  const int splits = wq_cuda::gemm_splits(a.m, a.n, a.k);
  const size_t need = wq_cuda::gemm_workspace_bytes(a.m, a.n, a.k, convert);
  ELI_CHECK_ARG(need == 0 || (a.workspace != nullptr && a.workspace_bytes >= need &&
                              reinterpret_cast<uintptr_t>(a.workspace) % 16 == 0),
                name, ": needs a 16-byte aligned workspace of ", need, " bytes (m=", a.m, " n=", a.n, " k=", a.k,
                "), got ", a.workspace_bytes);
  uint8_t* ws = static_cast<uint8_t*>(a.workspace);

  GemmParams p;
  p.x = static_cast<const __nv_bfloat16*>(a.x);
  p.xs = xs;
  if (convert) {
    auto* dst = reinterpret_cast<__nv_bfloat16*>(ws);
    const unsigned grid = grid_for(a.m * a.k);
    if (a.x_dtype == DType::kF32) {
      wq_gemm_convert_x<float><<<grid, 256, 0, stream>>>(dst, static_cast<const float*>(a.x), xs, a.m, a.k, w.perm);
    } else {
      wq_gemm_convert_x<__nv_bfloat16>
          <<<grid, 256, 0, stream>>>(dst, static_cast<const __nv_bfloat16*>(a.x), xs, a.m, a.k, w.perm);
    }
    ELI_CUDA_CHECK_LAUNCH();
    p.x = dst;
    p.xs = a.k;
  }
  p.q = static_cast<const uint8_t*>(w.q);
  p.scales = w.scales;
  p.zeros = w.zeros;
  p.bias = a.bias;
  p.out = a.out;
  p.out_bf16 = a.out_dtype == DType::kBF16;
  p.partial = splits > 1 && a.m < wq_cuda::dequant_gemm_rows()
                  ? reinterpret_cast<float*>(ws + wq_cuda::gemm_x_bytes(a.m, a.k, convert))
                  : nullptr;
  p.m = a.m;
  p.n = a.n;
  p.k = a.k;
  p.out_stride = a.m > 1 ? a.out_stride : a.n;
  p.groups = a.k / gs;
  p.gs = gs;
  p.row_bytes = a.k * BITS / 8;
  p.split_tiles = wq_cuda::gemm_split_tiles(a.k, splits);
  p.accumulate = a.accumulate;
  if (a.m >= wq_cuda::dequant_gemm_rows()) {  // compute-bound: bf16 weight chunks through cuBLASLt
    const int64_t rows = wq_cuda::dequant_chunk_rows(a.n, a.k);
    auto* wb = reinterpret_cast<__nv_bfloat16*>(ws + wq_cuda::gemm_x_bytes(a.m, a.k, convert));
    uint8_t* blas_ws = ws + wq_cuda::gemm_x_bytes(a.m, a.k, convert) + wq_cuda::dequant_chunk_bytes(a.n, a.k);
    const KernelEntry& dense = get_kernel(Op::kGemm, DeviceKind::kCUDA, DType::kBF16);
    const size_t out_elem = p.out_bf16 ? 2 : 4;
    for (int64_t r0 = 0; r0 < a.n; r0 += rows) {
      const int64_t nr = std::min<int64_t>(rows, a.n - r0);
      wq_dequant_rows<BITS><<<grid_for(nr * (p.row_bytes / 16)), 256, 0, stream>>>(wb, p, r0, nr);
      ELI_CUDA_CHECK_LAUNCH();
      GemmArgs g{};
      g.out = static_cast<uint8_t*>(a.out) + static_cast<size_t>(r0) * out_elem;
      g.x = p.x;
      g.w = wb;
      g.bias = a.bias != nullptr ? a.bias + r0 : nullptr;
      g.m = a.m;
      g.n = nr;
      g.k = a.k;
      g.out_stride = p.out_stride;
      g.x_stride = p.xs;
      g.x_dtype = DType::kBF16;
      g.out_dtype = a.out_dtype;
      g.accumulate = a.accumulate;
      g.workspace = blas_ws;
      g.workspace_bytes = wq_cuda::kDequantBlasBytes;
      dense.fn(&g, ctx);
    }
    return;
  }
  switch (wq_cuda::gemm_mt(a.m)) {
    case 1: launch_gemm<BITS, 1>(p, splits, stream); break;
    case 2: launch_gemm<BITS, 2>(p, splits, stream); break;
    default: launch_gemm<BITS, 4>(p, splits, stream); break;
  }
  if (splits > 1) {
    wq_gemm_reduce<<<grid_for(a.m * a.n), 256, 0, stream>>>(p, splits);
    ELI_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void wq_w4a16_gemm_cuda(const void* args, const ExecContext& ctx) { wq_gemm<4>(args, ctx); }
void wq_w8a16_gemm_cuda(const void* args, const ExecContext& ctx) { wq_gemm<8>(args, ctx); }

}  // namespace eli
