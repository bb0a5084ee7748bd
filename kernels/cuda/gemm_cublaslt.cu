// kernels/cuda/gemm_cublaslt.cu: Op::kGemm (GemmArgs in kernels/ops.h) through cuBLASLt:
//   out[m, n] = (accumulate ? out : 0) + x[m, k] @ w[n, k]^T + bias[n]      (row-major, f32 accumulation)
// x and w both bf16, both f16 (CUDA_R_16F) or both f32 (always CUBLAS_COMPUTE_32F: f32 accumulation,
// no TF32); out f32 or the 16-bit input type (bf16 or f16; an f32 GEMM may also write bf16 or f16
// through the SIMT fallback); accumulate only with an f32 out (beta = 1). A 16-bit type never meets
// the other one (x f16 with bf16 weights, bf16 out of f16 inputs, ...): rejected (kUnsupported).
// In device code bf16 is carried as raw uint16_t bits and f16 as __half, so the two never share an
// instantiation.
//
// Row-major to cuBLASLt's column-major: a row-major (r, c) matrix with row stride ld is the
// column-major (c, r) matrix with leading dimension ld. So out^T (n, m; ld out_stride) =
// w (n, k) @ x^T (k, m), where w as stored is column-major (k, n; ld k), used transposed (TRANSA = T),
// and x as stored is column-major (k, m; ld x_stride), used as is (TRANSB = N): the "TN" GEMM with
// M = n, N = m, K = k. The BIAS epilogue adds a vector over D's rows, i.e. bias[n] per output column.
//
// Caching (thread-safe): one cuBLASLt handle per device, created by prepare_cuda_kernels (when a
// runner is created) or on first use; one plan (matmul
// descriptor, the four layouts and the heuristic's algorithm) per (device, m, n, k, strides, dtypes,
// bias, accumulate, workspace size, pointer alignments), created on first use under a mutex and kept
// for the life of the process (never destroyed: static teardown order with the CUDA runtime is
// unknown). Steady-state calls do no allocation and no heuristic query: they only enqueue on
// ctx.stream, so they can be captured in a CUDA graph. The FIRST call of a shape creates the plan
// (and the handle if it is not there yet): run every shape once before capturing (the warm-up step).
//
// Bias: the BIAS epilogue with an f32 bias vector (CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = R_32F). If
// the heuristic offers no algorithm with it (possible for a 16-bit out), the plan runs without the
// epilogue and a small kernel adds the bias afterwards (a bf16 / f16 out then rounds twice). k == 0
// is done by that kernel alone. If cuBLASLt has no algorithm at all for a case (f32 x with a 16-bit
// out is not a cuBLASLt type combination; odd alignments may have none), a plain tiled SIMT
// kernel (simt_gemm_kernel, correct for anything, not fast) runs instead; the real model shapes
// never take it. The workspace is args.workspace / workspace_bytes (none: only algorithms that
// need none). Errors throw eli::Error(kDevice) naming the cuBLASLt status.
#include <cublasLt.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "eli/error.h"
#include "kernels/cuda/cuda_kernels.h"
#include "runtime/device/cuda/cuda_check.h"

#define ELI_CUBLASLT_CHECK(expr)                                                                   \
  do {                                                                                             \
    cublasStatus_t eli_lt_status_ = (expr);                                                        \
    if (eli_lt_status_ != CUBLAS_STATUS_SUCCESS) {                                                 \
      ::eli::detail::throw_error(::eli::ErrorKind::kDevice, __FILE__, __LINE__, #expr,             \
                                 ::eli::detail::concat("cuBLASLt error ",                          \
                                                       cublasLtGetStatusName(eli_lt_status_), ": ", \
                                                       cublasLtGetStatusString(eli_lt_status_)));   \
    }                                                                                              \
  } while (0)

namespace eli {
namespace {

// ---- bias / k == 0 kernel -------------------------------------------------------------------

__device__ __forceinline__ float load_out(const float* p) { return *p; }
__device__ __forceinline__ float load_out(const uint16_t* p) { return __uint_as_float(static_cast<uint32_t>(*p) << 16); }
__device__ __forceinline__ float load_out(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void store_out(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_out(uint16_t* p, float v) {
  // Round to nearest even; NaN stays NaN.
  uint32_t u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    *p = static_cast<uint16_t>((u >> 16) | 0x40u);
    return;
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  *p = static_cast<uint16_t>(u >> 16);
}
// f16: round to nearest even, overflow to inf, NaN stays NaN (the hardware conversion).
__device__ __forceinline__ void store_out(__half* p, float v) { *p = __float2half_rn(v); }

// out[i, j] = (keep ? out[i, j] : 0) + (bias ? bias[j] : 0) over an (m, n) matrix, row stride ld.
template <typename OutT>
__global__ void bias_kernel(OutT* out, const float* __restrict__ bias, int64_t m, int64_t n, int64_t ld, bool keep) {
  const int64_t total = m * n;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, j = e % n;
    OutT* p = out + i * ld + j;
    const float v = (keep ? load_out(p) : 0.f) + (bias != nullptr ? bias[j] : 0.f);
    store_out(p, v);
  }
}

void launch_bias(void* out, DType out_dtype, const float* bias, int64_t m, int64_t n, int64_t ld, bool keep,
                 cudaStream_t stream) {
  const int64_t total = m * n;
  if (total == 0) return;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, 65535);
  if (out_dtype == DType::kF32) {
    bias_kernel<float><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(static_cast<float*>(out), bias, m, n,
                                                                            ld, keep);
  } else if (out_dtype == DType::kF16) {
    bias_kernel<__half><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(static_cast<__half*>(out), bias, m, n,
                                                                             ld, keep);
  } else {
    bias_kernel<uint16_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(static_cast<uint16_t*>(out), bias,
                                                                               m, n, ld, keep);
  }
  ELI_CUDA_CHECK_LAUNCH();
}

// ---- fallback SIMT GEMM (no cuBLASLt algorithm) --------------------------------------------

__device__ __forceinline__ float load_in(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_in(const uint16_t* p, int64_t i) {
  return __uint_as_float(static_cast<uint32_t>(p[i]) << 16);
}
__device__ __forceinline__ float load_in(const __half* p, int64_t i) { return __half2float(p[i]); }

constexpr int kSimtTile = 64, kSimtTileK = 16, kSimtThreads = 256;

// A 64x64 tile of out per block, K in steps of 16 through shared memory, 4x4 outputs per thread.
// grid = (ceil(n / 64), ceil(m / 64)) (y may be split by the caller).
template <typename In, typename OutT>
__global__ void simt_gemm_kernel(OutT* out, const In* __restrict__ x, const In* __restrict__ w,
                                 const float* __restrict__ bias, int64_t m, int64_t n, int64_t k, int64_t out_stride,
                                 int64_t x_stride, bool accumulate) {
  __shared__ float xs[kSimtTileK][kSimtTile + 1];  // [k][row]
  __shared__ float ws[kSimtTileK][kSimtTile + 1];  // [k][col]
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kSimtTile;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kSimtTile;
  const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;  // rows tr + 16 i, cols tc + 16 j
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < k; k0 += kSimtTileK) {
    for (int e = threadIdx.x; e < kSimtTile * kSimtTileK; e += kSimtThreads) {
      const int r = e / kSimtTileK, kk = e % kSimtTileK;
      const int64_t gk = k0 + kk, gr = row0 + r, gc = col0 + r;
      xs[kk][r] = (gr < m && gk < k) ? load_in(x, gr * x_stride + gk) : 0.f;
      ws[kk][r] = (gc < n && gk < k) ? load_in(w, gc * k + gk) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kSimtTileK; ++kk) {
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(xs[kk][tr + 16 * i], ws[kk][tc + 16 * j], acc[i][j]);
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
      OutT* p = out + r * out_stride + c;
      const float v = acc[i][j] + (bias != nullptr ? bias[c] : 0.f);
      store_out(p, accumulate ? load_out(p) + v : v);
    }
  }
}

template <typename In>
void launch_simt_typed(const GemmArgs& a, cudaStream_t stream) {
  const int64_t gx = (a.n + kSimtTile - 1) / kSimtTile;
  ELI_CHECK(gx <= INT_MAX, "gemm: n=", a.n, " exceeds the grid limit");
  for (int64_t r0 = 0; r0 < a.m; r0 += int64_t{65535} * kSimtTile) {
    const int64_t rows = std::min<int64_t>(a.m - r0, int64_t{65535} * kSimtTile);
    const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>((rows + kSimtTile - 1) / kSimtTile));
    const In* x = static_cast<const In*>(a.x) + r0 * a.x_stride;
    const In* w = static_cast<const In*>(a.w);
    if (a.out_dtype == DType::kF32) {
      simt_gemm_kernel<In, float><<<grid, kSimtThreads, 0, stream>>>(
          static_cast<float*>(a.out) + r0 * a.out_stride, x, w, a.bias, rows, a.n, a.k, a.out_stride, a.x_stride,
          a.accumulate);
    } else if (a.out_dtype == DType::kF16) {
      simt_gemm_kernel<In, __half><<<grid, kSimtThreads, 0, stream>>>(
          static_cast<__half*>(a.out) + r0 * a.out_stride, x, w, a.bias, rows, a.n, a.k, a.out_stride, a.x_stride,
          a.accumulate);
    } else {
      simt_gemm_kernel<In, uint16_t><<<grid, kSimtThreads, 0, stream>>>(
          static_cast<uint16_t*>(a.out) + r0 * a.out_stride, x, w, a.bias, rows, a.n, a.k, a.out_stride, a.x_stride,
          a.accumulate);
    }
    ELI_CUDA_CHECK_LAUNCH();
  }
}

void launch_simt(const GemmArgs& a, cudaStream_t stream) {
  if (a.x_dtype == DType::kBF16) {
    launch_simt_typed<uint16_t>(a, stream);
  } else if (a.x_dtype == DType::kF16) {
    launch_simt_typed<__half>(a, stream);
  } else {
    launch_simt_typed<float>(a, stream);
  }
}

// ---- handles and plans ----------------------------------------------------------------------

struct PlanKey {
  int device;
  int64_t m, n, k, x_stride, out_stride;
  int x_dtype, out_dtype;
  bool bias, accumulate;
  size_t workspace_bytes;
  uint32_t align_w, align_x, align_out, align_bias;
  bool operator==(const PlanKey& o) const {
    return device == o.device && m == o.m && n == o.n && k == o.k && x_stride == o.x_stride &&
           out_stride == o.out_stride && x_dtype == o.x_dtype && out_dtype == o.out_dtype && bias == o.bias &&
           accumulate == o.accumulate && workspace_bytes == o.workspace_bytes && align_w == o.align_w &&
           align_x == o.align_x && align_out == o.align_out && align_bias == o.align_bias;
  }
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& key) const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) {
      h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    };
    mix(static_cast<uint64_t>(key.device));
    mix(static_cast<uint64_t>(key.m));
    mix(static_cast<uint64_t>(key.n));
    mix(static_cast<uint64_t>(key.k));
    mix(static_cast<uint64_t>(key.x_stride));
    mix(static_cast<uint64_t>(key.out_stride));
    mix(static_cast<uint64_t>(key.x_dtype) * 64 + static_cast<uint64_t>(key.out_dtype) * 4 + key.bias * 2 +
        key.accumulate);
    mix(static_cast<uint64_t>(key.workspace_bytes));
    mix((static_cast<uint64_t>(key.align_w) << 48) ^ (static_cast<uint64_t>(key.align_x) << 32) ^
        (static_cast<uint64_t>(key.align_out) << 16) ^ key.align_bias);
    return static_cast<size_t>(h);
  }
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // D uses c's layout
  cublasLtMatmulAlgo_t algo;
  bool bias_epilogue = false;  // bias through the epilogue (else through bias_kernel)
  bool simt = false;           // cuBLASLt has no algorithm: simt_gemm_kernel does it all
  std::mutex mu;               // guards the descriptor's bias pointer between set and launch
};

struct Cache {
  std::mutex mu;
  std::unordered_map<int, cublasLtHandle_t> handles;
  std::unordered_map<PlanKey, std::unique_ptr<Plan>, PlanKeyHash> plans;
};

Cache& cache() {
  static Cache* c = new Cache;  // intentionally never destroyed (see the header)
  return *c;
}

uint32_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al /= 2;
  return al;
}

cudaDataType_t cuda_type(DType dt) {
  return dt == DType::kBF16 ? CUDA_R_16BF : dt == DType::kF16 ? CUDA_R_16F : CUDA_R_32F;
}

// Fills plan's descriptors and asks the heuristic for an algorithm; false if it has none.
bool build_plan(cublasLtHandle_t handle, const PlanKey& key, DType w_dtype, bool bias_epilogue, const void* bias_ptr,
                Plan& plan) {
  ELI_CUBLASLT_CHECK(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  ELI_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  ELI_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  if (bias_epilogue) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    ELI_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    const int32_t bias_type = CUDA_R_32F;
    ELI_CUBLASLT_CHECK(
        cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
    // The heuristic reads the pointer's alignment (the key holds it).
    ELI_CUBLASLT_CHECK(
        cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof(bias_ptr)));
  }
  const DType x_dtype = static_cast<DType>(key.x_dtype), out_dtype = static_cast<DType>(key.out_dtype);
  ELI_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan.a, cuda_type(w_dtype), static_cast<uint64_t>(key.k),
                                                static_cast<uint64_t>(key.n), key.k));
  ELI_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan.b, cuda_type(x_dtype), static_cast<uint64_t>(key.k),
                                                static_cast<uint64_t>(key.m), key.x_stride));
  ELI_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan.c, cuda_type(out_dtype), static_cast<uint64_t>(key.n),
                                                static_cast<uint64_t>(key.m), key.out_stride));

  cublasLtMatmulPreference_t pref = nullptr;
  ELI_CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  struct PrefGuard {
    cublasLtMatmulPreference_t p;
    ~PrefGuard() { cublasLtMatmulPreferenceDestroy(p); }
  } guard{pref};
  const uint64_t ws = key.workspace_bytes;
  ELI_CUBLASLT_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  // Split-K partial sums stay in the compute type (f32): a reduction in the output type (bf16, f16)
  // loses ~8 bits per partial (seen on H100: m=257 n=96 k=1030 with a 4 MiB workspace, errors of
  // 15% of the value).
  {
    // (INPLACE also sums in the output type, so only COMPUTE_TYPE is allowed.)
    const uint32_t mask = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    ELI_CUBLASLT_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &mask, sizeof(mask)));
  }
  ELI_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                          &key.align_w, sizeof(key.align_w)));
  ELI_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                          &key.align_x, sizeof(key.align_x)));
  ELI_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                          &key.align_out, sizeof(key.align_out)));
  ELI_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                          &key.align_out, sizeof(key.align_out)));
  cublasLtMatmulHeuristicResult_t result;
  std::memset(&result, 0, sizeof(result));
  int returned = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle, plan.desc, plan.a, plan.b, plan.c, plan.c, pref,
                                                           1, &result, &returned);
  // Unsupported type combination / alignment: the caller falls back (no algorithm is not an error).
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE ||
      (st == CUBLAS_STATUS_SUCCESS && returned == 0)) {
    return false;
  }
  ELI_CUBLASLT_CHECK(st);
  plan.algo = result.algo;
  plan.bias_epilogue = bias_epilogue;
  return true;
}

void destroy_plan_descriptors(Plan& plan) {
  if (plan.desc != nullptr) cublasLtMatmulDescDestroy(plan.desc);
  if (plan.a != nullptr) cublasLtMatrixLayoutDestroy(plan.a);
  if (plan.b != nullptr) cublasLtMatrixLayoutDestroy(plan.b);
  if (plan.c != nullptr) cublasLtMatrixLayoutDestroy(plan.c);
  plan.desc = nullptr;
  plan.a = plan.b = plan.c = nullptr;
}

// The handle of `device`, created on first use (the caller holds the cache's lock).
cublasLtHandle_t handle_locked(Cache& c, int device) {
  cublasLtHandle_t& handle = c.handles[device];
  if (handle == nullptr) ELI_CUBLASLT_CHECK(cublasLtCreate(&handle));
  return handle;
}

// The handle of `device` and the plan of `key` (both created on first use).
std::pair<cublasLtHandle_t, Plan*> get_plan(const PlanKey& key, DType w_dtype, const void* bias_ptr) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  const cublasLtHandle_t handle = handle_locked(c, key.device);
  auto it = c.plans.find(key);
  if (it != c.plans.end()) return {handle, it->second.get()};
  auto plan = std::make_unique<Plan>();
  bool ok = false;
  try {
    ok = build_plan(handle, key, w_dtype, key.bias, bias_ptr, *plan);
    if (!ok && key.bias) {
      destroy_plan_descriptors(*plan);
      ok = build_plan(handle, key, w_dtype, false, nullptr, *plan);
    }
  } catch (...) {
    destroy_plan_descriptors(*plan);
    throw;
  }
  if (!ok) {
    destroy_plan_descriptors(*plan);
    plan->simt = true;
  }
  Plan* p = plan.get();
  c.plans.emplace(key, std::move(plan));
  return {handle, p};
}

void gemm_cuda(const void* args_ptr, const ExecContext& ctx, DType w_dtype) {
  const GemmArgs& a = *static_cast<const GemmArgs*>(args_ptr);
  ELI_CHECK(a.m >= 0 && a.n >= 0 && a.k >= 0, "gemm: bad shape m=", a.m, " n=", a.n, " k=", a.k);
  ELI_CHECK_KIND(kUnsupported, a.x_dtype == w_dtype, "gemm: x dtype ", dtype_name(a.x_dtype),
                 " must equal the weight dtype ", dtype_name(w_dtype), " on CUDA");
  ELI_CHECK_KIND(kUnsupported,
                 a.out_dtype == DType::kF32 ||
                     ((a.out_dtype == DType::kBF16 || a.out_dtype == DType::kF16) &&
                      (w_dtype == DType::kF32 || a.out_dtype == w_dtype)),
                 "gemm out must be float32 or the weight dtype ", dtype_name(w_dtype), ", not ",
                 dtype_name(a.out_dtype));
  ELI_CHECK(!a.accumulate || a.out_dtype == DType::kF32, "gemm: accumulate needs a float32 output");
  if (a.m == 0 || a.n == 0) return;
  ELI_CHECK(a.out_stride >= a.n && a.x_stride >= a.k, "gemm: row stride below the row width (out_stride=",
            a.out_stride, " n=", a.n, " x_stride=", a.x_stride, " k=", a.k, ")");
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  if (a.k == 0) {  // x @ w^T is empty: out = (accumulate ? out : 0) + bias
    launch_bias(a.out, a.out_dtype, a.bias, a.m, a.n, a.out_stride, a.accumulate, stream);
    return;
  }
  ELI_CHECK(a.out != nullptr && a.x != nullptr && a.w != nullptr, "gemm: null pointer (out ", a.out == nullptr ? "null" : "set",
            ", x ", a.x == nullptr ? "null" : "set", ", w ", a.w == nullptr ? "null" : "set", "; m ", a.m, ", n ", a.n, ", k ", a.k, ")");

  PlanKey key;
  std::memset(&key, 0, sizeof(key));  // padding too: the key is compared field by field, but keep it clean
  ELI_CUDA_CHECK(cudaGetDevice(&key.device));
  key.m = a.m;
  key.n = a.n;
  key.k = a.k;
  key.x_stride = a.x_stride;
  key.out_stride = a.out_stride;
  key.x_dtype = static_cast<int>(a.x_dtype);
  key.out_dtype = static_cast<int>(a.out_dtype);
  key.bias = a.bias != nullptr;
  key.accumulate = a.accumulate;
  key.workspace_bytes = a.workspace != nullptr ? a.workspace_bytes : 0;
  key.align_w = alignment_of(a.w);
  key.align_x = alignment_of(a.x);
  key.align_out = alignment_of(a.out);
  key.align_bias = a.bias != nullptr ? alignment_of(a.bias) : 0;
  auto [handle, plan] = get_plan(key, w_dtype, a.bias);

  // ELI_GEMM_SIMT=1 (read once) routes every GEMM through the SIMT kernel: a diagnostic switch
  // to tell a vendor-kernel sanitizer report from one of ours (docs/cuda_backend.md).
  static const bool force_simt = [] {
    const char* v = std::getenv("ELI_GEMM_SIMT");
    return v != nullptr && v[0] == '1';
  }();
  if (plan->simt || force_simt) {
    launch_simt(a, stream);
    return;
  }
  const float alpha = 1.0f, beta = a.accumulate ? 1.0f : 0.0f;
  {
    std::lock_guard<std::mutex> lock(plan->mu);
    if (plan->bias_epilogue) {
      const void* bias_ptr = a.bias;
      ELI_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr,
                                                        sizeof(bias_ptr)));
    }
    ELI_CUBLASLT_CHECK(cublasLtMatmul(handle, plan->desc, &alpha, a.w, plan->a, a.x, plan->b, &beta, a.out, plan->c,
                                      a.out, plan->c, &plan->algo, key.workspace_bytes ? a.workspace : nullptr,
                                      key.workspace_bytes, stream));
  }
  if (a.bias != nullptr && !plan->bias_epilogue) {
    launch_bias(a.out, a.out_dtype, a.bias, a.m, a.n, a.out_stride, /*keep=*/true, stream);
  }
}

}  // namespace

void gemm_bf16_cuda(const void* args, const ExecContext& ctx) { gemm_cuda(args, ctx, DType::kBF16); }
void gemm_f16_cuda(const void* args, const ExecContext& ctx) { gemm_cuda(args, ctx, DType::kF16); }
void gemm_f32_cuda(const void* args, const ExecContext& ctx) { gemm_cuda(args, ctx, DType::kF32); }

void prepare_cuda_kernels(int device) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  (void)handle_locked(c, device);
}

}  // namespace eli
