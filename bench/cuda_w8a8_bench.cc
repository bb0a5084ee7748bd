// bench/cuda_w8a8_bench.cc: the CUDA kernels of the W8A8 layouts (kernels/cuda/wq_w8a8*.cu:
// kInt8Channel "int8-w8a8", kFp8Channel "fp8-w8a8") on the Llama-3.1-8B matrix shapes, in one run:
//   1. the read-only ceiling (a streaming-sum kernel over 2 GiB, best of a few launch shapes),
//   2. Op::kGemv at m = 1 .. 8: time per call (the per-token quantize kernel included), GB/s of
//      weight bytes and the fraction of the read ceiling,
//   3. Op::kGemm at m = 16 .. 4096: TFLOP/s, beside eli's bf16 cuBLASLt GEMM (bf16 x and weights,
//      f32 out) of the same shape; FP8 also with the opt-in cuBLASLt path (dtype "fp8-w8a8-cublaslt",
//      ELI_W8A8_CUBLASLT=1; where cuBLASLt has no algorithm that row times the mma kernel again).
// Weights rotate among copies whose total is >= 4x the L2 (DRAM is measured); calls are replayed
// from a CUDA graph. Weight bytes are random with bit 6 of every byte clear (no e4m3 NaN). Table on
// stdout; JSON to argv[1] if given. Correctness is tests/cpp/test_cuda_wq_w8a8.cc's job.
//
// Built with -DELI_BUILD_BENCH=ON (eli_cuda_w8a8_bench), or by hand:
//   nvcc -x cu -O2 -std=c++17 -arch=sm_90 -I include -I . bench/cuda_w8a8_bench.cc \
//        -L build/<dir> -leli_engine -lcublasLt -o /tmp/w8a8_bench
//   /tmp/w8a8_bench [out.json] [int8|fp8 ...]      (default: both)
#ifndef __CUDACC__
#error "compile this file as CUDA: nvcc -x cu ... (see the header)"
#endif

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench/cuda_bench_check.h"
#include "kernels/cuda/wq_w8a8.h"
#include "kernels/ops.h"
#include "kernels/registry.h"
#include "kernels/wq_matrix.h"

using namespace eli;

namespace {

__device__ __forceinline__ uint32_t hash32(uint64_t i, uint32_t seed) {
  uint64_t h = i * 0x9e3779b97f4a7c15ull + seed;
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 29;
  return static_cast<uint32_t>(h);
}

// Random 32-bit words with bit 6 of every byte clear (finite fp16 / bf16 halves); f32 mode: uniform
// floats in [-1, 1).
__global__ void fill_words(uint32_t* p, size_t n, uint32_t seed, bool as_f32) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint32_t h = hash32(i, seed);
    p[i] = as_f32 ? __float_as_uint(-1.f + 2.f * (h >> 8) * (1.0f / 16777216.0f)) : (h & 0xBFBFBFBFu);
  }
}

__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

template <int kU>
__global__ void read_sum(const uint4* __restrict__ p, size_t n16, uint32_t* out) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  uint32_t acc = 0;
  for (; i + (kU - 1) * stride < n16; i += kU * stride) {
    uint4 v[kU];
#pragma unroll
    for (int u = 0; u < kU; ++u) v[u] = ld_stream16(p + i + u * stride);
#pragma unroll
    for (int u = 0; u < kU; ++u) acc += v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n16; i += stride) {
    const uint4 v = ld_stream16(p + i);
    acc += v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) out[0] = acc;
}

void* dmalloc(size_t bytes) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, std::max<size_t>(bytes, 256)));
  return p;
}
void fill(void* p, size_t bytes, uint32_t seed, bool as_f32) {
  fill_words<<<1024, 256>>>(static_cast<uint32_t*>(p), bytes / 4, seed, as_f32);
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

double time_median(cudaStream_t s, int warmup, int reps, const std::function<void()>& enqueue) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < warmup; ++i) enqueue();
  CHECK_CUDA(cudaStreamSynchronize(s));
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    CHECK_CUDA(cudaEventRecord(a, s));
    enqueue();
    CHECK_CUDA(cudaEventRecord(b, s));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0.f;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1e-3);
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  return median(t);
}

// Seconds per call of `call(i)` (i: which weight copy), replayed from a graph of `iters` calls.
double graph_time(cudaStream_t s, int nbuf, const std::function<void(int)>& call) {
  for (int i = 0; i < nbuf; ++i) call(i);  // warm-up outside the capture
  CHECK_CUDA(cudaStreamSynchronize(s));
  const int iters = std::max(nbuf, 20) / nbuf * nbuf;
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CHECK_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < iters; ++i) call(i % nbuf);
  CHECK_CUDA(cudaStreamEndCapture(s, &graph));
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  const double t = time_median(s, 3, 25, [&] { CHECK_CUDA(cudaGraphLaunch(exec, s)); }) / iters;
  CHECK_CUDA(cudaGraphExecDestroy(exec));
  CHECK_CUDA(cudaGraphDestroy(graph));
  return t;
}

struct Shape {
  const char* name;
  int64_t n, k;
};
const Shape kShapes[] = {{"qkv 6144x4096", 6144, 4096},
                         {"o 4096x4096", 4096, 4096},
                         {"gate_up 28672x4096", 28672, 4096},
                         {"down 4096x14336", 4096, 14336}};

struct Format {
  const char* name;  // JSON dtype
  WeightFormat format;
  DType dtype;
};
const Format kFormats[] = {{"int8-w8a8", WeightFormat::kInt8Channel, DType::kI8},
                           {"fp8-w8a8", WeightFormat::kFp8Channel, DType::kF8E4M3}};

struct Row {
  std::string op, dtype, shape;
  int64_t m;
  double us, gbps, frac_read, tflops, bf16_tflops;
};

}  // namespace

int main(int argc, char** argv) {
  const char* json_path = argc > 1 ? argv[1] : nullptr;
  std::vector<Format> formats;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "int8") formats.push_back(kFormats[0]);
    else if (a == "fp8") formats.push_back(kFormats[1]);
    else {
      std::fprintf(stderr, "unknown format '%s' (int8 | fp8)\n", argv[i]);
      return 2;
    }
  }
  if (formats.empty()) formats.assign(std::begin(kFormats), std::end(kFormats));

  CHECK_CUDA(cudaSetDevice(0));
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d), %d SMs, L2 %.0f MB; fp8 gemm path: %s\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, prop.l2CacheSize / 1e6,
              wq_w8a8_fp8_native_gemm() ? "e4m3 tensor cores" : "f16 widening");
  cudaStream_t s;
  CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  ExecContext ctx;
  ctx.stream = s;
  std::vector<Row> rows;

  double read_bw = 0.0;
  {
    const size_t bytes = size_t{2} << 30;
    void* buf = dmalloc(bytes);
    uint32_t* sink = static_cast<uint32_t*>(dmalloc(256));
    fill(buf, bytes, 2, false);
    for (int per_sm : {2, 4, 8}) {
      for (int threads : {256, 512, 1024}) {
        if (per_sm * threads > 2048) continue;
        const double t = time_median(s, 2, 15, [&] {
          read_sum<4><<<per_sm * prop.multiProcessorCount, threads, 0, s>>>(static_cast<const uint4*>(buf), bytes / 16, sink);
        });
        CHECK_CUDA(cudaGetLastError());
        read_bw = std::max(read_bw, bytes / t);
      }
    }
    CHECK_CUDA(cudaFree(buf));
    CHECK_CUDA(cudaFree(sink));
  }
  std::printf("read-only ceiling: %.0f GB/s\n\n", read_bw / 1e9);
  std::printf("%-5s %-10s %-20s %5s %10s %9s %7s %9s %11s\n", "op", "dtype", "shape", "m", "us", "GB/s", "%read",
              "TFLOP/s", "bf16 TF/s");

  const int64_t kGemmM[] = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
  const int64_t max_m = 4096;
  const size_t rotate_target = std::max<size_t>(4 * static_cast<size_t>(prop.l2CacheSize), size_t{256} << 20);
  const KernelEntry& bf16_gemm = get_kernel(Op::kGemm, DeviceKind::kCUDA, DType::kBF16);
  for (const Shape& sh : kShapes) {
    float* x = static_cast<float*>(dmalloc(max_m * sh.k * 4));
    void* xb = dmalloc(max_m * sh.k * 2);
    float* out = static_cast<float*>(dmalloc(max_m * sh.n * 4));
    const size_t ws_bytes = wq_w8a8_workspace_bytes(max_m, sh.k);
    void* ws = dmalloc(ws_bytes);
    const size_t blas_bytes = size_t{32} << 20;
    void* blas = dmalloc(blas_bytes);
    float* sw = static_cast<float*>(dmalloc(sh.n * 4));
    fill(x, max_m * sh.k * 4, 7, true);
    fill(xb, max_m * sh.k * 2, 8, false);
    fill(sw, sh.n * 4, 9, true);
    // The bf16 baseline (compute-bound: one weight copy).
    double bf16_tflops[sizeof(kGemmM) / sizeof(kGemmM[0])] = {};
    {
      void* wb = dmalloc(static_cast<size_t>(sh.n) * sh.k * 2);
      fill(wb, static_cast<size_t>(sh.n) * sh.k * 2, 10, false);
      for (size_t mi = 0; mi < sizeof(kGemmM) / sizeof(kGemmM[0]); ++mi) {
        const int64_t m = kGemmM[mi];
        GemmArgs a{out, xb, wb, nullptr, m, sh.n, sh.k, sh.n, sh.k};
        a.x_dtype = DType::kBF16;
        a.out_dtype = DType::kF32;
        a.workspace = blas;
        a.workspace_bytes = blas_bytes;
        const double sec = graph_time(s, 1, [&](int) { bf16_gemm.fn(&a, ctx); });
        bf16_tflops[mi] = 2.0 * m * sh.n * sh.k / sec / 1e12;
      }
      CHECK_CUDA(cudaFree(wb));
    }
    for (const Format& f : formats) {
      const KernelEntry* gemv = find_kernel(Op::kGemv, DeviceKind::kCUDA, f.format, f.dtype);
      const KernelEntry* gemm = find_kernel(Op::kGemm, DeviceKind::kCUDA, f.format, f.dtype);
      if (gemv == nullptr || gemm == nullptr) {
        std::printf("%s: no CUDA kernel in this build\n", f.name);
        continue;
      }
      const size_t wbytes = static_cast<size_t>(sh.n) * sh.k;
      const int nbuf = static_cast<int>(std::max<size_t>(2, (rotate_target + wbytes - 1) / wbytes));
      std::vector<void*> w(nbuf);
      std::vector<WqMatrix> mats(nbuf);
      for (int i = 0; i < nbuf; ++i) {
        w[i] = dmalloc(wbytes);
        fill(w[i], wbytes, 200 + i, false);
        mats[i].q = w[i];
        mats[i].scales = sw;
        mats[i].format = f.format;
      }
      const size_t first = rows.size();
      for (int64_t m = 1; m <= 8; ++m) {
        GemvArgs a{out, x, nullptr, nullptr, nullptr, m, sh.n, sh.k, sh.n, sh.k};
        a.workspace = ws;
        a.workspace_bytes = ws_bytes;
        const double sec = graph_time(s, nbuf, [&](int i) {
          a.w = &mats[i];
          gemv->fn(&a, ctx);
        });
        const double bw = wbytes / sec;
        rows.push_back({"gemv", f.name, sh.name, m, sec * 1e6, bw / 1e9, bw / read_bw, 2.0 * m * sh.n * sh.k / sec / 1e12, 0.0});
      }
      // FP8: the default mma kernel, then the opt-in cuBLASLt path (ELI_W8A8_CUBLASLT=1, "-cublaslt").
      for (int lt = 0; lt < (f.format == WeightFormat::kFp8Channel ? 2 : 1); ++lt) {
      if (lt == 1) setenv("ELI_W8A8_CUBLASLT", "1", 1);
      const std::string dtype_name = std::string(f.name) + (lt == 1 ? "-cublaslt" : "");
      for (size_t mi = 0; mi < sizeof(kGemmM) / sizeof(kGemmM[0]); ++mi) {
        const int64_t m = kGemmM[mi];
        GemmArgs a{out, x, nullptr, nullptr, m, sh.n, sh.k, sh.n, sh.k};
        a.x_dtype = DType::kF32;
        a.out_dtype = DType::kF32;
        a.workspace = ws;
        a.workspace_bytes = ws_bytes;
        const double sec = graph_time(s, nbuf, [&](int i) {
          a.w = &mats[i];
          gemm->fn(&a, ctx);
        });
        const double bw = wbytes / sec;
        rows.push_back({"gemm", dtype_name, sh.name, m, sec * 1e6, bw / 1e9, bw / read_bw,
                        2.0 * m * sh.n * sh.k / sec / 1e12, bf16_tflops[mi]});
      }
      if (lt == 1) unsetenv("ELI_W8A8_CUBLASLT");
      }
      for (size_t i = first; i < rows.size(); ++i) {
        const Row& r = rows[i];
        std::printf("%-5s %-10s %-20s %5lld %10.1f %9.0f %6.1f%% %9.2f", r.op.c_str(), r.dtype.c_str(), r.shape.c_str(),
                    (long long)r.m, r.us, r.gbps, 100.0 * r.frac_read, r.tflops);
        if (r.bf16_tflops > 0) std::printf(" %11.2f", r.bf16_tflops);
        std::printf("\n");
      }
      for (void* p : w) CHECK_CUDA(cudaFree(p));
    }
    for (void* p : {static_cast<void*>(x), xb, static_cast<void*>(out), ws, blas, static_cast<void*>(sw)}) CHECK_CUDA(cudaFree(p));
  }

  if (json_path != nullptr) {
    FILE* f = std::fopen(json_path, "w");
    if (f == nullptr) {
      std::perror(json_path);
      return 1;
    }
    std::fprintf(f, "{\n  \"device\": \"%s\",\n  \"read_ceiling_gbps\": %.1f,\n  \"fp8_gemm_path\": \"%s\",\n  \"rows\": [\n",
                 prop.name, read_bw / 1e9, wq_w8a8_fp8_native_gemm() ? "e4m3-mma" : "f16-widen");
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f,
                   "    {\"op\": \"%s\", \"dtype\": \"%s\", \"shape\": \"%s\", \"m\": %lld, \"us\": %.2f, \"gbps\": %.1f, "
                   "\"frac_read\": %.4f, \"tflops\": %.3f, \"bf16_cublaslt_tflops\": %.3f}%s\n",
                   r.op.c_str(), r.dtype.c_str(), r.shape.c_str(), (long long)r.m, r.us, r.gbps, r.frac_read, r.tflops,
                   r.bf16_tflops, i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    std::printf("\nwrote %s\n", json_path);
  }
  return 0;
}
