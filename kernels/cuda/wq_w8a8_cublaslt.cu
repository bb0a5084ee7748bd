// kernels/cuda/wq_w8a8_cublaslt.cu: an optional cuBLASLt path for the FP8 W8A8 GEMM (opt-in with
// ELI_W8A8_CUBLASLT=1, read at every call; the default is the mma.sync kernel of wq_w8a8_gemm.cu):
// e4m3 x e4m3 with per-row / per-column f32 scales applied by cuBLASLt's outer-vector scaling
// (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F: product (i, j) times a_scale[i] * b_scale[j]), f32 C
// and D. As in gemm_cublaslt.cu, row-major out^T (n, m) = w (n, k) @ codes_x^T: A = w (TRANSA = T,
// scales s_w), B = the x codes in the workspace (ld kp, scales s_x). Bias is added before the
// matmul by a small kernel (out = (accumulate ? out : 0) + bias, then beta = 1).
// Returns false (the caller runs its own kernel) where cuBLASLt offers no algorithm: FP8 needs
// sm_89+, k % 16 == 0 and 16-byte aligned rows; older libraries lack the scale mode. The plan of a
// shape is built on its first call (run every shape once before capturing a CUDA graph).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "eli/error.h"
#include "kernels/cuda/wq_w8a8_internal.cuh"
#include "runtime/device/cuda/cublaslt_dynamic.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace w8a8 {
namespace {

#define ELI_W8A8_LT_CHECK(expr)                                                                          \
  do {                                                                                                  \
    cublasStatus_t st_ = (expr);                                                                        \
    if (st_ != CUBLAS_STATUS_SUCCESS) {                                                                 \
      ::eli::detail::throw_error(::eli::ErrorKind::kDevice, __FILE__, __LINE__, #expr,                  \
                                 ::eli::detail::concat("cuBLASLt error ", cublasLtGetStatusName(st_))); \
    }                                                                                                   \
  } while (0)

struct Key {
  int device;
  int64_t m, n, k, kp, out_stride;
  bool operator==(const Key& o) const {
    return device == o.device && m == o.m && n == o.n && k == o.k && kp == o.kp && out_stride == o.out_stride;
  }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t v : {static_cast<uint64_t>(k.device), static_cast<uint64_t>(k.m), static_cast<uint64_t>(k.n),
                       static_cast<uint64_t>(k.k), static_cast<uint64_t>(k.kp), static_cast<uint64_t>(k.out_stride)}) {
      h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    }
    return static_cast<size_t>(h);
  }
};

struct Plan {
  bool ok = false;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo;
  std::mutex mu;  // the scale pointers live in the descriptor: set and launch under it
  void destroy() {
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    desc = nullptr;
    a = b = c = nullptr;
  }
};

struct Cache {
  std::mutex mu;
  std::unordered_map<int, cublasLtHandle_t> handles;
  std::unordered_map<Key, std::unique_ptr<Plan>, KeyHash> plans;
};
Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: handles may outlive static destruction order
  return *c;
}

bool build(cublasLtHandle_t handle, const Key& key, Plan& p) {
  ELI_W8A8_LT_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  ELI_W8A8_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  ELI_W8A8_LT_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
  if (cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof(mode)) !=
          CUBLAS_STATUS_SUCCESS ||
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof(mode)) !=
          CUBLAS_STATUS_SUCCESS) {
    return false;  // a library without the scale mode
  }
  ELI_W8A8_LT_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_8F_E4M3, static_cast<uint64_t>(key.k),
                                               static_cast<uint64_t>(key.n), key.k));
  ELI_W8A8_LT_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_8F_E4M3, static_cast<uint64_t>(key.k),
                                               static_cast<uint64_t>(key.m), key.kp));
  ELI_W8A8_LT_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, static_cast<uint64_t>(key.n),
                                               static_cast<uint64_t>(key.m), key.out_stride));
  cublasLtMatmulPreference_t pref = nullptr;
  ELI_W8A8_LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = 0;  // algorithms that need no workspace
  const cublasStatus_t set_ws =
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  const uint32_t align = 16;  // every pointer is checked to be 16-byte aligned, not more
  cublasStatus_t set_align = CUBLAS_STATUS_SUCCESS;
  for (cublasLtMatmulPreferenceAttributes_t at :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    if (set_align == CUBLAS_STATUS_SUCCESS) set_align = cublasLtMatmulPreferenceSetAttribute(pref, at, &align, sizeof(align));
  }
  cublasLtMatmulHeuristicResult_t result;
  std::memset(&result, 0, sizeof(result));
  int returned = 0;
  const cublasStatus_t st =
      set_ws == CUBLAS_STATUS_SUCCESS && set_align == CUBLAS_STATUS_SUCCESS
          ? cublasLtMatmulAlgoGetHeuristic(handle, p.desc, p.a, p.b, p.c, p.c, pref, 1, &result, &returned)
          : CUBLAS_STATUS_NOT_SUPPORTED;
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || returned == 0) return false;
  p.algo = result.algo;
  return true;
}

__global__ void bias_fill(float* out, const float* bias, int64_t m, int64_t n, int64_t ld, bool keep) {
  const int64_t total = m * n;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, j = e % n;
    float* p = out + i * ld + j;
    *p = (keep ? *p : 0.0f) + bias[j];
  }
}

}  // namespace

bool cublaslt_fp8_requested() {
  const char* v = std::getenv("ELI_W8A8_CUBLASLT");
  return v != nullptr && v[0] == '1';
}

bool fp8_gemm_cublaslt(float* out, int64_t out_stride, const uint8_t* xq, const float* sx, int64_t kp,
                       const uint8_t* w, const float* sw, const float* bias, int64_t m, int64_t n, int64_t k,
                       bool accumulate, cudaStream_t stream) {
  if (k % 16 != 0 || (reinterpret_cast<uintptr_t>(w) & 15u) != 0 || (reinterpret_cast<uintptr_t>(xq) & 15u) != 0 ||
      (reinterpret_cast<uintptr_t>(out) & 15u) != 0 || out_stride % 4 != 0) {
    return false;
  }
  cuda::require_cublaslt();
  Key key{};
  ELI_CUDA_CHECK(cudaGetDevice(&key.device));
  key.m = m;
  key.n = n;
  key.k = k;
  key.kp = kp;
  key.out_stride = out_stride;
  Cache& c = cache();
  cublasLtHandle_t handle = nullptr;
  Plan* plan = nullptr;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    cublasLtHandle_t& h = c.handles[key.device];
    if (h == nullptr) ELI_W8A8_LT_CHECK(cublasLtCreate(&h));
    handle = h;
    auto it = c.plans.find(key);
    if (it == c.plans.end()) {
      auto p = std::make_unique<Plan>();
      try {
        p->ok = build(handle, key, *p);
      } catch (...) {
        p->destroy();
        throw;
      }
      if (!p->ok) p->destroy();
      it = c.plans.emplace(key, std::move(p)).first;
    }
    plan = it->second.get();
  }
  if (!plan->ok) return false;
  if (bias != nullptr) {
    const int64_t total = m * n;
    const int blocks = static_cast<int>(std::min<int64_t>((total + 255) / 256, 4096));
    bias_fill<<<blocks, 256, 0, stream>>>(out, bias, m, n, out_stride, accumulate);
    ELI_CUDA_CHECK_LAUNCH();
  }
  const float alpha = 1.0f, beta = (accumulate || bias != nullptr) ? 1.0f : 0.0f;
  std::lock_guard<std::mutex> lock(plan->mu);
  ELI_W8A8_LT_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sw, sizeof(sw)));
  ELI_W8A8_LT_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sx, sizeof(sx)));
  ELI_W8A8_LT_CHECK(cublasLtMatmul(handle, plan->desc, &alpha, w, plan->a, xq, plan->b, &beta, out, plan->c, out,
                                   plan->c, &plan->algo, nullptr, 0, stream));
  return true;
}

}  // namespace w8a8
}  // namespace eli
