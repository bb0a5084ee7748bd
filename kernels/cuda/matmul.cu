// kernels/cuda/matmul.cu: out[M,N] (+)= x[M,K] @ w[N,K]^T + bias[N] with f32 activations and f32
// or bf16 weights, f32 accumulation (the CPU contract of kernels/ops.h MatmulArgs).
//
// Two kernels, chosen by M:
// - M <= kGemvMaxRows (decode): one warp per output column n; the warp streams w[n, :] once and
//   dots it against every activation row (up to kGemvMaxRows, kept in registers as partial sums).
//   16-byte loads of w when K and the pointers allow it.
// - larger M (prefill): a 64x64 output tile per 256-thread block, K in steps of 16 through shared
//   memory (weights converted to f32 as they are staged), 4x4 outputs per thread.
// Both handle any M, N, K and strides (bounds-checked loads); bias and accumulate are applied in
// the epilogue, so out may not alias x. This is the correctness-first version; a tensor-core path
// (cuBLASLt / wgmma) replaces the large-M kernel later without changing the registry entry.
#include <algorithm>
#include <climits>
#include <cstdint>

#include "eli/error.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

constexpr int kGemvMaxRows = 8;
constexpr int kGemvWarps = 4;  // warps (output columns) per block

__device__ __forceinline__ float load_w(const float* w, int64_t i) { return w[i]; }
__device__ __forceinline__ float load_w(const uint16_t* w, int64_t i) {
  return __uint_as_float(static_cast<uint32_t>(w[i]) << 16);
}

// Four consecutive weights starting at i (i a multiple of 4, 16/8-byte aligned).
__device__ __forceinline__ float4 load_w4(const float* w, int64_t i) {
  return *reinterpret_cast<const float4*>(w + i);
}
__device__ __forceinline__ float4 load_w4(const uint16_t* w, int64_t i) {
  const uint2 u = *reinterpret_cast<const uint2*>(w + i);
  return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u),
                     __uint_as_float(u.y << 16), __uint_as_float(u.y & 0xffff0000u));
}

template <typename W, bool kVec>
__global__ void gemv_kernel(float* __restrict__ out, const float* __restrict__ x, const W* __restrict__ w,
                            const float* __restrict__ bias, int m, int64_t n, int64_t k, int64_t out_stride,
                            int64_t x_stride, bool accumulate) {
  const int lane = threadIdx.x & 31;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  if (col >= n) return;
  const W* wr = w + col * k;
  float acc[kGemvMaxRows];
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) acc[r] = 0.f;
  if (kVec) {
    for (int64_t i = static_cast<int64_t>(lane) * 4; i < k; i += 32 * 4) {
      const float4 wv = load_w4(wr, i);
#pragma unroll
      for (int r = 0; r < kGemvMaxRows; ++r) {
        if (r < m) {
          const float4 xv = *reinterpret_cast<const float4*>(x + r * x_stride + i);
          acc[r] += wv.x * xv.x + wv.y * xv.y + wv.z * xv.z + wv.w * xv.w;
        }
      }
    }
  } else {
    for (int64_t i = lane; i < k; i += 32) {
      const float wv = load_w(wr, i);
#pragma unroll
      for (int r = 0; r < kGemvMaxRows; ++r) {
        if (r < m) acc[r] += wv * x[r * x_stride + i];
      }
    }
  }
  const float b = bias ? bias[col] : 0.f;
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) {
    if (r < m) {
      const float v = cuda::warp_reduce_sum(acc[r]) + b;
      if (lane == 0) {
        float* o = out + r * out_stride + col;
        *o = accumulate ? *o + v : v;
      }
    }
  }
}

constexpr int kTile = 64, kTileK = 16, kGemmThreads = 256;

template <typename W>
__global__ void gemm_kernel(float* __restrict__ out, const float* __restrict__ x, const W* __restrict__ w,
                            const float* __restrict__ bias, int64_t m, int64_t n, int64_t k, int64_t out_stride,
                            int64_t x_stride, bool accumulate) {
  __shared__ float xs[kTileK][kTile + 1];  // [k][row]
  __shared__ float ws[kTileK][kTile + 1];  // [k][col]
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;  // thread's 4x4 outputs: rows tr+16i, cols tc+16j
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < k; k0 += kTileK) {
    // Stage 64 rows x 16 k of x and of w: 1024 values each, 4 per thread.
    for (int e = threadIdx.x; e < kTile * kTileK; e += kGemmThreads) {
      const int r = e / kTileK, kk = e % kTileK;
      const int64_t gk = k0 + kk;
      const int64_t gr = row0 + r, gc = col0 + r;
      xs[kk][r] = (gr < m && gk < k) ? x[gr * x_stride + gk] : 0.f;
      ws[kk][r] = (gc < n && gk < k) ? load_w(w, gc * k + gk) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      float xv[4], wv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) xv[i] = xs[kk][tr + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) wv[j] = ws[kk][tc + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += xv[i] * wv[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = row0 + tr + 16 * i;
    if (r >= m) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t c = col0 + tc + 16 * j;
      if (c >= n) continue;
      const float v = acc[i][j] + (bias ? bias[c] : 0.f);
      float* o = out + r * out_stride + c;
      *o = accumulate ? *o + v : v;
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename W>
void matmul_cuda(const void* args_ptr, const ExecContext& ctx) {
  const MatmulArgs& a = *static_cast<const MatmulArgs*>(args_ptr);
  ELI_CHECK(a.m >= 0 && a.n >= 0 && a.k >= 0, "matmul: bad shape m=", a.m, " n=", a.n, " k=", a.k);
  ELI_CHECK(a.out_stride >= a.n && a.x_stride >= a.k, "matmul: stride below width");
  if (a.m == 0 || a.n == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const W* w = static_cast<const W*>(a.w);
  for (int64_t r0 = 0; r0 < a.m;) {
    if (a.m - r0 <= kGemvMaxRows) {
      const int64_t blocks = (a.n + kGemvWarps - 1) / kGemvWarps;
      ELI_CHECK(blocks <= INT_MAX, "matmul: n=", a.n, " exceeds the grid limit");
      const float* x = a.x + r0 * a.x_stride;
      const bool vec = a.k % 4 == 0 && a.x_stride % 4 == 0 && aligned16(x) && aligned16(a.w) &&
                       (sizeof(W) == 4 || (reinterpret_cast<uintptr_t>(a.w) & 7u) == 0);
      const int rows = static_cast<int>(a.m - r0);
      float* out = a.out + r0 * a.out_stride;
      if (vec) {
        gemv_kernel<W, true><<<static_cast<unsigned>(blocks), 32 * kGemvWarps, 0, stream>>>(
            out, x, w, a.bias, rows, a.n, a.k, a.out_stride, a.x_stride, a.accumulate);
      } else {
        gemv_kernel<W, false><<<static_cast<unsigned>(blocks), 32 * kGemvWarps, 0, stream>>>(
            out, x, w, a.bias, rows, a.n, a.k, a.out_stride, a.x_stride, a.accumulate);
      }
      ELI_CUDA_CHECK_LAUNCH();
      break;
    }
    // Tiled GEMM over up to 65535 row tiles per launch (the grid's y limit).
    const int64_t rows = std::min<int64_t>(a.m - r0, int64_t{65535} * kTile);
    const int64_t gx = (a.n + kTile - 1) / kTile, gy = (rows + kTile - 1) / kTile;
    ELI_CHECK(gx <= INT_MAX, "matmul: n=", a.n, " exceeds the grid limit");
    gemm_kernel<W><<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), kGemmThreads, 0, stream>>>(
        a.out + r0 * a.out_stride, a.x + r0 * a.x_stride, w, a.bias, rows, a.n, a.k, a.out_stride, a.x_stride,
        a.accumulate);
    ELI_CUDA_CHECK_LAUNCH();
    r0 += rows;
  }
}

}  // namespace

void matmul_f32_cuda(const void* args, const ExecContext& ctx) { matmul_cuda<float>(args, ctx); }
void matmul_bf16_cuda(const void* args, const ExecContext& ctx) { matmul_cuda<uint16_t>(args, ctx); }

}  // namespace eli
