// bench/cuda_gemm_algos_bench.cc: how far cuBLASLt's first heuristic choice is from the best of its
// candidates, for the engine's GEMM shapes (bf16, the layouts of kernels/cuda/gemm_cublaslt.cu:
// out[m, n] (+)= x[m, k] @ w[n, k]^T as the column-major TN product, f32 compute, split-K
// reductions in f32, the engine's 32 MiB workspace). For each shape it asks the heuristic for up to
// 32 algorithms, times each (median of 15 after 3 warm-ups, CUDA events) and prints the first
// one's TFLOP/s, the best one's, its index and its tile / split-K / stages. Answers one question:
// would timing the candidates (autotuning) pay, and for which shapes.
// Build: cmake -DELI_BUILD_BENCH=ON -DELI_CUDA=ON ... && cmake --build BUILD --target eli_cuda_gemm_algos_bench
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/cuda_bench_check.h"

#define CHECK_LT(x)                                                                  \
  do {                                                                               \
    cublasStatus_t s_ = (x);                                                         \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                               \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cublasLtGetStatusName(s_)); \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

namespace {

struct Shape {
  const char* name;
  int64_t n, k;
  bool accumulate;  // beta = 1 into an f32 out (the residual adds)
  bool out_bf16;
};

__global__ void fill(uint16_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    const float v = (static_cast<float>(h & 0xffff) / 65535.f - 0.5f) * 0.1f;
    p[i] = __bfloat16_as_ushort(__float2bfloat16(v));
  }
}

int attr(const cublasLtMatmulAlgo_t& a, cublasLtMatmulAlgoConfigAttributes_t what) {
  int v = 0;
  size_t got = 0;
  if (cublasLtMatmulAlgoConfigGetAttribute(&a, what, &v, sizeof(v), &got) != CUBLAS_STATUS_SUCCESS) return -1;
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  cublasLtHandle_t lt;
  CHECK_LT(cublasLtCreate(&lt));
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));
  const size_t ws_bytes = size_t{32} << 20;
  void* ws = nullptr;
  CHECK_CUDA(cudaMalloc(&ws, ws_bytes));
  const Shape shapes[] = {{"8b qkv", 6144, 4096, false, false},    {"8b o", 4096, 4096, true, false},
                          {"8b gate_up", 28672, 4096, false, true}, {"8b down", 4096, 14336, true, false},
                          {"8b lm_head", 128256, 4096, false, false}, {"1b qkv", 3072, 2048, false, false},
                          {"1b o", 2048, 2048, true, false},       {"1b gate_up", 16384, 2048, false, true},
                          {"1b down", 2048, 8192, true, false}};
  std::vector<int64_t> ms = {64, 128, 256, 512, 8192};
  std::printf("card: %s\n%-12s %6s %9s %9s %6s %5s  %s\n", prop.name, "shape", "m", "first", "best", "gain",
              "index", "best: tile splitK stages (of n candidates)");
  std::string json = std::string("{\"card\": \"") + prop.name + "\", \"rows\": [";
  bool first_row = true;
  for (const Shape& s : shapes) {
    for (int64_t m : ms) {
      if (s.n == 128256 && m > 512) continue;
      uint16_t *w = nullptr, *x = nullptr;
      void* out = nullptr;
      CHECK_CUDA(cudaMalloc(&w, s.n * s.k * 2));
      CHECK_CUDA(cudaMalloc(&x, m * s.k * 2));
      CHECK_CUDA(cudaMalloc(&out, m * s.n * 4));
      fill<<<1024, 256, 0, stream>>>(w, s.n * s.k, 1);
      fill<<<1024, 256, 0, stream>>>(x, m * s.k, 2);
      CHECK_CUDA(cudaMemsetAsync(out, 0, m * s.n * 4, stream));
      cublasLtMatmulDesc_t desc;
      CHECK_LT(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      CHECK_LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
      CHECK_LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
      const cudaDataType_t ot = s.out_bf16 ? CUDA_R_16BF : CUDA_R_32F;
      cublasLtMatrixLayout_t la, lb, lc;
      CHECK_LT(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, s.k, s.n, s.k));
      CHECK_LT(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, s.k, m, s.k));
      CHECK_LT(cublasLtMatrixLayoutCreate(&lc, ot, s.n, m, s.n));
      cublasLtMatmulPreference_t pref;
      CHECK_LT(cublasLtMatmulPreferenceCreate(&pref));
      const uint64_t wsb = ws_bytes;
      CHECK_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb)));
      const uint32_t mask = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
      CHECK_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &mask,
                                                    sizeof(mask)));
      cublasLtMatmulHeuristicResult_t res[32];
      int n_res = 0;
      CHECK_LT(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 32, res, &n_res));
      const float alpha = 1.f, beta = s.accumulate ? 1.f : 0.f;
      cudaEvent_t e0, e1;
      CHECK_CUDA(cudaEventCreate(&e0));
      CHECK_CUDA(cudaEventCreate(&e1));
      double first = 0, best = 1e30;
      int best_i = -1;
      for (int i = 0; i < n_res; ++i) {
        auto run = [&] {
          return cublasLtMatmul(lt, desc, &alpha, w, la, x, lb, &beta, out, lc, out, lc, &res[i].algo, ws, ws_bytes,
                                stream);
        };
        if (run() != CUBLAS_STATUS_SUCCESS) continue;
        for (int r = 0; r < 2; ++r) run();
        std::vector<float> t;
        for (int r = 0; r < 15; ++r) {
          CHECK_CUDA(cudaEventRecord(e0, stream));
          run();
          CHECK_CUDA(cudaEventRecord(e1, stream));
          CHECK_CUDA(cudaEventSynchronize(e1));
          float ms_ = 0;
          CHECK_CUDA(cudaEventElapsedTime(&ms_, e0, e1));
          t.push_back(ms_);
        }
        std::sort(t.begin(), t.end());
        const double us = t[t.size() / 2] * 1e3;
        if (i == 0) first = us;
        if (us < best) {
          best = us;
          best_i = i;
        }
      }
      const double flops = 2.0 * m * s.n * s.k;
      const cublasLtMatmulAlgo_t& ba = res[std::max(best_i, 0)].algo;
      std::printf("%-12s %6lld %8.0fT %8.0fT %5.1f%% %5d  tile %d splitK %d stages %d (of %d)\n", s.name,
                  static_cast<long long>(m), flops / first / 1e6, flops / best / 1e6, 100.0 * (first / best - 1),
                  best_i, attr(ba, CUBLASLT_ALGO_CONFIG_TILE_ID), attr(ba, CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
                  attr(ba, CUBLASLT_ALGO_CONFIG_STAGES_ID), n_res);
      std::fflush(stdout);
      json += std::string(first_row ? "" : ",") + "\n {\"shape\": \"" + s.name + "\", \"m\": " + std::to_string(m) +
              ", \"first_us\": " + std::to_string(first) + ", \"best_us\": " + std::to_string(best) +
              ", \"best_index\": " + std::to_string(best_i) + ", \"candidates\": " + std::to_string(n_res) + "}";
      first_row = false;
      cublasLtMatmulPreferenceDestroy(pref);
      cublasLtMatrixLayoutDestroy(la);
      cublasLtMatrixLayoutDestroy(lb);
      cublasLtMatrixLayoutDestroy(lc);
      cublasLtMatmulDescDestroy(desc);
      cudaEventDestroy(e0);
      cudaEventDestroy(e1);
      CHECK_CUDA(cudaFree(w));
      CHECK_CUDA(cudaFree(x));
      CHECK_CUDA(cudaFree(out));
    }
  }
  json += "\n]}\n";
  if (argc > 1) {
    FILE* f = std::fopen(argv[1], "w");
    if (f != nullptr) {
      std::fputs(json.c_str(), f);
      std::fclose(f);
    }
  }
  return 0;
}
