// kernels/cuda/gguf_gemm.cuh: the prefill / batched GEMM over GGUF weight blocks (Op::kGemm,
// WeightFormat::kGgufBlocks; instantiated per block type in gguf_gemm_<types>.cu):
//   out[m, n] (+)= x[m, k] @ w[n, k]^T + bias[n],   x bf16 (or f32, rounded to bf16 in the tile
//   loads), out f32 or bf16, f32 accumulation.
//
// Tiles of BM x BN = 64 x 64 outputs per CTA of 4 warps (2 x 2, 32 x 32 each as 2 x 2 WMMA
// 16x16x16 bf16 fragments), K in steps of BK = 64 (two weight items per row), two shared-memory
// stages:
//  - x tile (64 x 64 bf16): cp.async 16-byte copies (zero-filled past m and k) into the next stage
//    while the current one is multiplied; rows of x that are not 16-byte aligned, and f32 x, take
//    plain loads (converted to bf16) stored before the MMAs.
//  - w tile: thread t decodes item (t & 1) of tile row t / 2 (gguf_blocks.cuh) to 32 bf16 values
//    (a * q + b in f32, rounded once) and stores them to the next stage after the current MMAs.
//    Rows past n and items past k are zeros.
//  - one __syncthreads per K step: after it, stage cur is complete (cp.async waited, stores
//    ordered) and nobody reads stage nxt any more, so the loads into nxt may start.
// Epilogue: the accumulators go through shared memory (aliasing the stages) so the global stores
// are row-contiguous; bias, accumulate (f32 out only) and the bf16 conversion happen there.
// Error vs the exact product of the same x and the reference weights: each weight is rounded to
// bf16 once (relative 2^-9), then f32 accumulation.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <climits>
#include <cstdint>

#include "eli/error.h"
#include "kernels/cuda/gguf_blocks.cuh"
#include "kernels/ops.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace gguf {

constexpr int kGemmBM = 64, kGemmBN = 64, kGemmBK = 64, kGemmThreads = 128;
constexpr int kGemmLds = kGemmBK + 8;          // bf16 per shared row: 144 bytes (16-byte multiple, skews banks)
constexpr int kGemmLdc = kGemmBN + 4;          // f32 per row of the epilogue tile
constexpr int kGemmStageElems = kGemmBM * kGemmLds;  // x and w stages have the same shape (BM == BN)
constexpr int kGemmSmemBytes = 4 * kGemmStageElems * 2;  // 2 stages of x, 2 of w
static_assert(kGemmBM == kGemmBN, "x and w stages share one shape");
static_assert(kGemmBM * kGemmLdc * 4 <= kGemmSmemBytes, "the epilogue tile aliases the stages");
static_assert(kGemmBN * (kGemmBK / kItemElems) == kGemmThreads, "one weight item per thread per K step");

struct GemmParams {
  void* out;
  const void* x;       // bf16 bits or f32
  const uint8_t* w;
  const float* bias;
  int64_t m, n, k, nb, row_bytes, out_stride, x_stride;
  bool out_bf16, accumulate, x_f32, x_vec;  // x_vec: 16-byte loads of x
};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? 16 : 0;  // 0: the 16 bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lo) at the lower address
  uint32_t u;
  memcpy(&u, &v, 4);
  return u;
}

// x tile of K step kt into stage xs (BM x BK bf16): 512 chunks of 8 elements, 4 per thread.
// bf16 x: cp.async (x_vec) or plain 2-byte loads; f32 x: loads (16-byte where x_vec), rounded to bf16.
__device__ __forceinline__ void gemm_load_x(const GemmParams& p, int64_t m0, int64_t kt, uint16_t* xs) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int c = tid + j * kGemmThreads;
    const int row = c >> 3, col = (c & 7) * 8;
    const int64_t gr = m0 + row, gk = kt * kGemmBK + col;
    const bool valid = gr < p.m && gk < p.k;  // k is a multiple of 32: a chunk never straddles it
    uint16_t* dst = xs + row * kGemmLds + col;
    const int64_t off = gr * p.x_stride + gk;
    if (!p.x_f32) {
      const uint16_t* x = static_cast<const uint16_t*>(p.x);
      if (p.x_vec) {
        cp_async16(dst, valid ? static_cast<const void*>(x + off) : p.x, valid);
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) dst[e] = valid ? x[off + e] : static_cast<uint16_t>(0);
      }
    } else {
      const float* x = static_cast<const float*>(p.x);
      float f[8];
      if (!valid) {
#pragma unroll
        for (int e = 0; e < 8; ++e) f[e] = 0.f;
      } else if (p.x_vec) {
        const float4 a = *reinterpret_cast<const float4*>(x + off);
        const float4 b = *(reinterpret_cast<const float4*>(x + off) + 1);
        f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) f[e] = x[off + e];
      }
      *reinterpret_cast<uint4*>(dst) =
          make_uint4(pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]), pack_bf16x2(f[4], f[5]), pack_bf16x2(f[6], f[7]));
    }
  }
}

// The weight item of this thread for K step kt (zeros past n and k).
template <class B>
__device__ __forceinline__ void gemm_decode_w(const GemmParams& p, int64_t n0, int64_t kt, WItem& it) {
  const int tid = threadIdx.x;
  const int64_t row = n0 + (tid >> 1);
  const int64_t item = kt * (kGemmBK / kItemElems) + (tid & 1);
  if (row < p.n && item < p.nb) {
    const int64_t sb = item / B::kItems;
    B::item(p.w + row * p.row_bytes + sb * B::kBytes, static_cast<int>(item - sb * B::kItems), it);
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) it.q[i] = 0;
    it.a[0] = it.a[1] = it.b[0] = it.b[1] = 0.f;
  }
}

__device__ __forceinline__ void gemm_store_w(const WItem& it, uint16_t* ws) {
  const int tid = threadIdx.x;
  uint16_t* dst = ws + (tid >> 1) * kGemmLds + (tid & 1) * kItemElems;
#pragma unroll
  for (int c = 0; c < 4; ++c) {  // 8 weights -> one 16-byte store
    uint32_t u[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) u[j] = pack_bf16x2(item_value(it, 8 * c + 2 * j), item_value(it, 8 * c + 2 * j + 1));
    *reinterpret_cast<uint4*>(dst + 8 * c) = make_uint4(u[0], u[1], u[2], u[3]);
  }
}

template <class B>
__global__ void __launch_bounds__(kGemmThreads) gguf_gemm_kernel(const GemmParams p) {
  using namespace nvcuda;
  __shared__ __align__(128) unsigned char smem[kGemmSmemBytes];
  uint16_t* xs = reinterpret_cast<uint16_t*>(smem);          // [2][BM][LDS]
  uint16_t* wsm = xs + 2 * kGemmStageElems;                   // [2][BN][LDS]
  const int warp = threadIdx.x >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kGemmBN, m0 = static_cast<int64_t>(blockIdx.y) * kGemmBM;
  const int64_t kt_count = (p.k + kGemmBK - 1) / kGemmBK;

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
  }

  WItem it;
  gemm_load_x(p, m0, 0, xs);
  cp_async_commit();
  gemm_decode_w<B>(p, n0, 0, it);
  gemm_store_w(it, wsm);

  for (int64_t kt = 0; kt < kt_count; ++kt) {
    const int cur = static_cast<int>(kt & 1), nxt = cur ^ 1;
    cp_async_wait_all();
    __syncthreads();
    const bool more = kt + 1 < kt_count;
    if (more) {
      gemm_load_x(p, m0, kt + 1, xs + nxt * kGemmStageElems);
      cp_async_commit();
      gemm_decode_w<B>(p, n0, kt + 1, it);
    }
    const uint16_t* xc = xs + cur * kGemmStageElems;
    const uint16_t* wc = wsm + cur * kGemmStageElems;
#pragma unroll
    for (int kk = 0; kk < kGemmBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(fa[i], reinterpret_cast<const __nv_bfloat16*>(xc + (wm * 32 + i * 16) * kGemmLds + kk),
                               kGemmLds);
        wmma::load_matrix_sync(fb[i], reinterpret_cast<const __nv_bfloat16*>(wc + (wn * 32 + i * 16) * kGemmLds + kk),
                               kGemmLds);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
    }
    if (more) gemm_store_w(it, wsm + nxt * kGemmStageElems);
  }

  cp_async_wait_all();
  __syncthreads();  // every warp is done with the stages: the epilogue tile may overwrite them
  float* ct = reinterpret_cast<float*>(smem);  // [BM][LDC]
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(ct + (wm * 32 + i * 16) * kGemmLdc + wn * 32 + j * 16, acc[i][j], kGemmLdc,
                              wmma::mem_row_major);
    }
  }
  __syncthreads();
  for (int t = threadIdx.x; t < kGemmBM * kGemmBN; t += kGemmThreads) {
    const int r = t / kGemmBN, c = t % kGemmBN;
    const int64_t gr = m0 + r, gc = n0 + c;
    if (gr >= p.m || gc >= p.n) continue;
    float y = ct[r * kGemmLdc + c];
    if (p.bias != nullptr) y += p.bias[gc];
    if (p.out_bf16) {
      static_cast<__nv_bfloat16*>(p.out)[gr * p.out_stride + gc] = __float2bfloat16_rn(y);
    } else {
      float* o = static_cast<float*>(p.out) + gr * p.out_stride + gc;
      *o = p.accumulate ? *o + y : y;
    }
  }
}

// The registry entry of block type B.
template <class B>
void gemm_cuda(const void* args_ptr, const ExecContext& ctx) {
  const GemmArgs& a = *static_cast<const GemmArgs*>(args_ptr);
  const char* name = dtype_name(B::kType);
  ELI_CHECK_ARG(a.m >= 0 && a.n >= 0 && a.k > 0, "gguf gemm ", name, ": bad shape m=", a.m, " n=", a.n, " k=", a.k);
  ELI_CHECK_ARG(a.k % B::kElems == 0, "gguf gemm ", name, ": k=", a.k, " is not a multiple of ", B::kElems);
  ELI_CHECK_ARG(a.x_dtype == DType::kBF16 || a.x_dtype == DType::kF32, "gguf gemm ", name, ": x must be bf16 or f32, got ",
                dtype_name(a.x_dtype));
  ELI_CHECK_ARG(a.out_dtype == DType::kF32 || a.out_dtype == DType::kBF16, "gguf gemm ", name,
                ": out must be f32 or bf16, got ", dtype_name(a.out_dtype));
  ELI_CHECK_ARG(!a.accumulate || a.out_dtype == DType::kF32, "gguf gemm: accumulate needs an f32 output");
  ELI_CHECK_ARG(a.m <= 1 || (a.x_stride >= a.k && a.out_stride >= a.n), "gguf gemm: row stride below the row width");
  if (a.m == 0 || a.n == 0) return;
  ELI_CHECK_ARG(a.out != nullptr && a.x != nullptr && a.w != nullptr, "gguf gemm: null pointer");
  ELI_CHECK_ARG(reinterpret_cast<uintptr_t>(a.w) % B::kAlign == 0, "gguf gemm ", name, ": weights not ", B::kAlign,
                "-byte aligned");
  GemmParams p;
  p.out = a.out;
  p.x = a.x;
  p.w = static_cast<const uint8_t*>(a.w);
  p.bias = a.bias;
  p.m = a.m;
  p.n = a.n;
  p.k = a.k;
  p.nb = a.k / kItemElems;
  p.row_bytes = a.k / B::kElems * B::kBytes;
  p.out_stride = a.out_stride;
  p.x_stride = a.m <= 1 ? a.k : a.x_stride;
  p.out_bf16 = a.out_dtype == DType::kBF16;
  p.accumulate = a.accumulate;
  p.x_f32 = a.x_dtype == DType::kF32;
  p.x_vec = (reinterpret_cast<uintptr_t>(a.x) & 15u) == 0 && p.x_stride % (p.x_f32 ? 4 : 8) == 0;
  const int64_t gx = (a.n + kGemmBN - 1) / kGemmBN, gy = (a.m + kGemmBM - 1) / kGemmBM;
  ELI_CHECK(gx <= INT_MAX && gy <= 65535, "gguf gemm: m=", a.m, " n=", a.n, " exceeds the grid limit");
  gguf_gemm_kernel<B><<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), kGemmThreads, 0,
                        static_cast<cudaStream_t>(ctx.stream)>>>(p);
  ELI_CUDA_CHECK(cudaGetLastError());
}

}  // namespace gguf
}  // namespace eli
