// kernels/cuda/wq_w8a8_gemm.cu: the tensor-core GEMM of the W8A8 layouts (Op::kGemm, kInt8Channel
// and kFp8Channel; wq_w8a8.h):
//   out[m, n] (+)= (codes_x[m, :] . w[n, :]) * s_x[m] * s_w[n] + bias[n],   x and out f32.
// x is first quantized per row into the workspace (wq_w8a8_quant.cu, rows padded with zero codes to
// kp = round_up(k, 64)); then a CTA of 256 threads (8 warps, 2 x 4, each 64 x 32) computes a
// 128 x 128 tile of out over k in steps of 64 bytes (m <= 64: 64 x 128 or 32 x 128 tiles, warps of
// 32 x 32 or 16 x 32, so short prefills waste fewer MMAs), double-buffered in shared memory by cp.async
// (row stride 80 bytes: the 32-bit fragment loads of a warp hit 32 distinct banks). Per 32 of k
// each warp issues 4 x 4 MMAs with fragments read straight from shared memory:
//   kInt8       mma.sync m16n8k32 s8.s8 -> s32 (exact integer dot products, as the CPU)
//   kFp8Native  mma.sync m16n8k32 e4m3.e4m3 -> f32 (sm_89+; chosen at run time when the device
//               has it and the binary that runs was compiled for it)
//   kFp8Widen   each 32-bit fragment of 4 e4m3 codes widened to two f16 pairs (value * 2^-8, exact)
//               and fed to two mma.sync m16n8k16 f16 -> f32 (sm_80 / 86 / 87 or an sm_80 binary).
//               The 8-bit fragment layout's k positions map consistently onto the f16 layout's
//               (each thread's A and B pairs hold the same k), so the sum is the same dot product.
// Rows of w that are not 16-byte aligned (k % 16 != 0) are loaded byte-wise with plain stores
// into the same shared tiles; rows past m or n and columns past k load as zeros.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>

#include "eli/error.h"
#include "kernels/cuda/wq_w8a8_internal.cuh"
#include "kernels/cuda/wq_w8a8_numerics.cuh"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace w8a8 {
namespace {

// kMI m16 tiles per warp in m: a CTA tile of kBM(kMI) = 32 * kMI rows (128, or 64 / 32 for short m).
constexpr int kBN = 128, kBK = 64, kLds = kBK + 16, kThreads = 256;
template <int kMI>
constexpr int kBM = 32 * kMI;
enum Mode { kInt8 = 0, kFp8Native = 1, kFp8Widen = 2 };

struct GemmParams {
  float* out;
  const uint8_t* xq;  // (m, kp)
  const float* sx;    // (m)
  const uint8_t* w;   // (n, k)
  const float* sw;    // (n)
  const float* bias;  // (n) or nullptr
  int64_t m, n, k, kp, out_stride;
  bool aligned, accumulate;
};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait1() { asm volatile("cp.async.wait_group 1;\n" ::); }

__device__ __forceinline__ uint32_t lds32(const uint8_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

// One 64-byte k step of the x and w tiles into stage buffers sa / sb.
template <int kMI>
__device__ __forceinline__ void load_tile(const GemmParams& p, int64_t bm, int64_t bn, int64_t k0, uint8_t* sa,
                                          uint8_t* sb) {
  const int tid = threadIdx.x;
  constexpr int kAChunks = kBM<kMI> * kBK / 16;  // 16-byte chunks of the x tile
#pragma unroll
  for (int i = 0; i < (kAChunks + kThreads - 1) / kThreads; ++i) {
    const int idx = tid + i * kThreads, row = idx >> 2, cc = (idx & 3) * 16;
    if (kAChunks % kThreads != 0 && idx >= kAChunks) break;
    const int64_t gm = bm + row;
    const uint8_t* src = p.xq + min(gm, p.m - 1) * p.kp + k0 + cc;
    cp_async16(sa + row * kLds + cc, src, gm < p.m ? 16 : 0);
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int idx = tid + i * kThreads, row = idx >> 2, cc = (idx & 3) * 16;
    const int64_t gn = bn + row, col = k0 + cc;
    const uint8_t* wrow = p.w + min(gn, p.n - 1) * p.k;
    if (p.aligned) {
      const bool valid = gn < p.n && col < p.k;  // k % 16 == 0: a chunk is all in or all out
      cp_async16(sb + row * kLds + cc, wrow + (valid ? col : 0), valid ? 16 : 0);
    } else {
      uint32_t v[4] = {0u, 0u, 0u, 0u};
      if (gn < p.n) {
#pragma unroll
        for (int e = 0; e < 16; ++e) {
          if (col + e < p.k) v[e >> 2] |= static_cast<uint32_t>(wrow[col + e]) << (8 * (e & 3));
        }
      }
      *reinterpret_cast<uint4*>(sb + row * kLds + cc) = make_uint4(v[0], v[1], v[2], v[3]);
    }
  }
}

__device__ __forceinline__ void mma_s8(int* d, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void mma_e4m3(float* d, const uint32_t* a, const uint32_t* b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap();  // never launched: the host picks kFp8Widen for binaries below sm_89
#endif
}

__device__ __forceinline__ void mma_f16(float* d, const uint32_t* a, const uint32_t* b) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// The 8-bit m16n8k32 MMA as two f16 m16n8k16 MMAs on widened codes (see the header).
__device__ __forceinline__ void mma_e4m3_widen(float* d, const uint32_t* a, const uint32_t* b) {
  const uint32_t a1[4] = {e4m3x4_to_f16x2(a[0], false), e4m3x4_to_f16x2(a[1], false), e4m3x4_to_f16x2(a[0], true),
                          e4m3x4_to_f16x2(a[1], true)};
  const uint32_t b1[2] = {e4m3x4_to_f16x2(b[0], false), e4m3x4_to_f16x2(b[0], true)};
  mma_f16(d, a1, b1);
  const uint32_t a2[4] = {e4m3x4_to_f16x2(a[2], false), e4m3x4_to_f16x2(a[3], false), e4m3x4_to_f16x2(a[2], true),
                          e4m3x4_to_f16x2(a[3], true)};
  const uint32_t b2[2] = {e4m3x4_to_f16x2(b[1], false), e4m3x4_to_f16x2(b[1], true)};
  mma_f16(d, a2, b2);
}

template <int kMode, int kMI>
__global__ void __launch_bounds__(kThreads, 2) gemm_kernel(const GemmParams p) {
  using Acc = typename std::conditional<kMode == kInt8, int, float>::type;
  __shared__ __align__(16) uint8_t sa[2][kBM<kMI> * kLds];
  __shared__ __align__(16) uint8_t sb[2][kBN * kLds];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int wm = (warp >> 2) * 16 * kMI, wn = (warp & 3) * 32;
  const int64_t bn = static_cast<int64_t>(blockIdx.x) * kBN, bm = static_cast<int64_t>(blockIdx.y) * kBM<kMI>;

  Acc acc[kMI][4][4];
#pragma unroll
  for (int mi = 0; mi < kMI; ++mi) {
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0;
    }
  }

  const int64_t nk = p.kp / kBK;
  load_tile<kMI>(p, bm, bn, 0, sa[0], sb[0]);
  cp_async_commit();
  for (int64_t kt = 0; kt < nk; ++kt) {
    const int st = static_cast<int>(kt & 1);
    if (kt + 1 < nk) load_tile<kMI>(p, bm, bn, (kt + 1) * kBK, sa[st ^ 1], sb[st ^ 1]);
    cp_async_commit();
    cp_async_wait1();
    __syncthreads();
    const uint8_t* A = sa[st];
    const uint8_t* B = sb[st];
#pragma unroll
    for (int ks = 0; ks < kBK; ks += 32) {
      uint32_t af[kMI][4], bf[4][2];
#pragma unroll
      for (int mi = 0; mi < kMI; ++mi) {
        const uint8_t* r0 = A + (wm + mi * 16 + g) * kLds + ks + 4 * t;
        af[mi][0] = lds32(r0);
        af[mi][1] = lds32(r0 + 8 * kLds);
        af[mi][2] = lds32(r0 + 16);
        af[mi][3] = lds32(r0 + 8 * kLds + 16);
      }
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const uint8_t* c0 = B + (wn + ni * 8 + g) * kLds + ks + 4 * t;
        bf[ni][0] = lds32(c0);
        bf[ni][1] = lds32(c0 + 16);
      }
#pragma unroll
      for (int mi = 0; mi < kMI; ++mi) {
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          if constexpr (kMode == kInt8) {
            mma_s8(acc[mi][ni], af[mi], bf[ni]);
          } else if constexpr (kMode == kFp8Native) {
            mma_e4m3(acc[mi][ni], af[mi], bf[ni]);
          } else {
            mma_e4m3_widen(acc[mi][ni], af[mi], bf[ni]);
          }
        }
      }
    }
    __syncthreads();  // the next iteration's loads overwrite this stage
  }

  const float unscale = kMode == kFp8Widen ? kF16WidenUnscale : 1.0f;
#pragma unroll
  for (int mi = 0; mi < kMI; ++mi) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t row = bm + wm + mi * 16 + g + 8 * half;
      if (row >= p.m) continue;
      const float sx = p.sx[row];
      float* orow = p.out + row * p.out_stride;
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t col = bn + wn + ni * 8 + 2 * t + e;
          if (col >= p.n) continue;
          float v = static_cast<float>(acc[mi][ni][2 * half + e]) * unscale * (sx * p.sw[col]);
          if (p.bias != nullptr) v += p.bias[col];
          orow[col] = p.accumulate ? orow[col] + v : v;
        }
      }
    }
  }
}

// Whether the e4m3 tensor-core path runs on the current device (cached per device).
bool fp8_native() {
  static std::atomic<int> cache[64];  // 0 unknown, 1 no, 2 yes
  int dev = 0;
  ELI_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64) dev = 0;
  int v = cache[dev].load(std::memory_order_relaxed);
  if (v == 0) {
    int major = 0, minor = 0;
    ELI_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    ELI_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    bool yes = major * 10 + minor >= 89;
    if (yes) {
      cudaFuncAttributes attr{};
      ELI_CUDA_CHECK(cudaFuncGetAttributes(&attr, gemm_kernel<kFp8Native, 4>));
      yes = attr.binaryVersion >= 89 && attr.ptxVersion >= 89;  // SASS or JIT from compute_89+ PTX
    }
    v = yes ? 2 : 1;
    cache[dev].store(v, std::memory_order_relaxed);
  }
  return v == 2;
}

template <int kMI>
void launch(int mode, const GemmParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((p.n + kBN - 1) / kBN), static_cast<unsigned>((p.m + kBM<kMI> - 1) / kBM<kMI>));
  if (mode == kInt8) {
    gemm_kernel<kInt8, kMI><<<grid, kThreads, 0, stream>>>(p);
  } else if (mode == kFp8Native) {
    gemm_kernel<kFp8Native, kMI><<<grid, kThreads, 0, stream>>>(p);
  } else {
    gemm_kernel<kFp8Widen, kMI><<<grid, kThreads, 0, stream>>>(p);
  }
  ELI_CUDA_CHECK_LAUNCH();
}

template <bool kFp8>
void gemm_cuda(const void* args, const ExecContext& ctx) {
  const GemmArgs& a = *static_cast<const GemmArgs*>(args);
  const char* op = kFp8 ? "fp8 gemm" : "int8 gemm";
  check_shape(a.m, a.n, a.k, op);
  ELI_CHECK_KIND(kUnsupported, a.x_dtype == DType::kF32 && a.out_dtype == DType::kF32, "w8a8 ", op,
                 " (cuda): x and out must be float32, got ", dtype_name(a.x_dtype), " and ", dtype_name(a.out_dtype));
  ELI_CHECK_ARG(a.m <= 1 || (a.x_stride >= a.k && a.out_stride >= a.n), "w8a8 ", op,
                ": row stride below the row width");
  if (a.m == 0 || a.n == 0) return;
  ELI_CHECK_ARG(a.out != nullptr && a.x != nullptr && a.w != nullptr, "w8a8 ", op, ": null pointer");
  const WqMatrix& w = *static_cast<const WqMatrix*>(a.w);
  check_weight(w, kFp8, op);
  check_workspace(a.workspace, a.workspace_bytes, a.m, a.k, op);
  const int64_t grid_m = (a.m + kBM<4> - 1) / kBM<4>, grid_n = (a.n + kBN - 1) / kBN;
  ELI_CHECK_ARG(grid_m <= 65535 && grid_n <= 0x7FFFFFFF, "w8a8 ", op, ": m=", a.m, " n=", a.n, " too large");
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const ActView v = act_view(a.workspace, a.m, a.k);
  quantize_rows(static_cast<const float*>(a.x), a.x_stride, a.m, a.k, nullptr, 0.0f, 0.0f, kFp8, w.act_scale, v,
                stream);
  GemmParams p;
  p.out = static_cast<float*>(a.out);
  p.xq = v.codes;
  p.sx = v.scales;
  p.w = static_cast<const uint8_t*>(w.q);
  p.sw = w.scales;
  p.bias = a.bias;
  p.m = a.m;
  p.n = a.n;
  p.k = a.k;
  p.kp = v.kp;
  p.out_stride = a.out_stride;
  p.aligned = a.k % 16 == 0 && (reinterpret_cast<uintptr_t>(w.q) & 15u) == 0;
  p.accumulate = a.accumulate;
  if (kFp8 && cublaslt_fp8_requested() &&
      fp8_gemm_cublaslt(p.out, p.out_stride, p.xq, p.sx, p.kp, p.w, p.sw, p.bias, p.m, p.n, p.k, p.accumulate,
                        stream)) {
    return;
  }
  const int mode = !kFp8 ? kInt8 : fp8_native() ? kFp8Native : kFp8Widen;
  if (a.m <= kBM<1>) {
    launch<1>(mode, p, stream);
  } else if (a.m <= kBM<2>) {
    launch<2>(mode, p, stream);
  } else {
    launch<4>(mode, p, stream);
  }
}

}  // namespace
}  // namespace w8a8

void wq_gemm_int8_channel_cuda(const void* args, const ExecContext& ctx) { w8a8::gemm_cuda<false>(args, ctx); }
void wq_gemm_fp8_channel_cuda(const void* args, const ExecContext& ctx) { w8a8::gemm_cuda<true>(args, ctx); }
bool wq_w8a8_fp8_native_gemm() { return w8a8::fp8_native(); }

}  // namespace eli
