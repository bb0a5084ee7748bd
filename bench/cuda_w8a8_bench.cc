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
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/cuda_bench_util.cuh"
#include "kernels/cuda/wq_w8a8.h"
#include "kernels/ops.h"
#include "kernels/registry.h"
#include "kernels/wq_matrix.h"

using namespace eli;
using namespace eli::bench;

namespace {

const NamedShape kShapes[] = {{"qkv 6144x4096", 6144, 4096},
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

  const double read_bw = read_ceiling<4>(s, prop, [](void* p, size_t bytes) { fill_bits(p, bytes, 2); });
  std::printf("read-only ceiling: %.0f GB/s\n\n", read_bw / 1e9);
  std::printf("%-5s %-10s %-20s %5s %10s %9s %7s %9s %11s\n", "op", "dtype", "shape", "m", "us", "GB/s", "%read",
              "TFLOP/s", "bf16 TF/s");

  const int64_t kGemmM[] = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
  const int64_t max_m = 4096;
  const size_t rotate_target = rotate_target_bytes(prop);
  const KernelEntry& bf16_gemm = get_kernel(Op::kGemm, DeviceKind::kCUDA, DType::kBF16);
  for (const NamedShape& sh : kShapes) {
    float* x = static_cast<float*>(dmalloc(max_m * sh.k * 4));
    void* xb = dmalloc(max_m * sh.k * 2);
    float* out = static_cast<float*>(dmalloc(max_m * sh.n * 4));
    const size_t ws_bytes = wq_w8a8_workspace_bytes(max_m, sh.k);
    void* ws = dmalloc(ws_bytes);
    const size_t blas_bytes = size_t{32} << 20;
    void* blas = dmalloc(blas_bytes);
    float* sw = static_cast<float*>(dmalloc(sh.n * 4));
    fill_uniform_f32(x, max_m * sh.k, 7, -1.f, 2.f);
    fill_bits(xb, max_m * sh.k * 2, 8);
    fill_uniform_f32(sw, sh.n, 9, -1.f, 2.f);
    // The bf16 baseline (compute-bound: one weight copy).
    double bf16_tflops[sizeof(kGemmM) / sizeof(kGemmM[0])] = {};
    {
      void* wb = dmalloc(static_cast<size_t>(sh.n) * sh.k * 2);
      fill_bits(wb, static_cast<size_t>(sh.n) * sh.k * 2, 10);
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
      const int nbuf = rotate_copies(rotate_target, wbytes);
      std::vector<void*> w(nbuf);
      std::vector<WqMatrix> mats(nbuf);
      for (int i = 0; i < nbuf; ++i) {
        w[i] = dmalloc(wbytes);
        fill_bits(w[i], wbytes, 200 + i);
        mats[i].q = w[i];
        mats[i].scales = sw;
        mats[i].format = f.format;
      }
      const size_t first = rows.size();
      for (int64_t m = 1; m <= 8; ++m) {
        GemvArgs a{out, x, nullptr, nullptr, nullptr, m, sh.n, sh.k, sh.n, sh.k};
        a.workspace = ws;
        a.workspace_bytes = ws_bytes;
        const double sec = time_rotating(s, *gemv, a, mats, ctx);
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
        const double sec = time_rotating(s, *gemm, a, mats, ctx);
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

  // JSON: one record per table row.
  const std::string extra =
      std::string("  \"fp8_gemm_path\": \"") + (wq_w8a8_fp8_native_gemm() ? "e4m3-mma" : "f16-widen") + "\",\n";
  if (json_path != nullptr &&
      !write_json_rows(json_path, prop.name, read_bw, extra, rows.size(), [&](FILE* f, size_t i) {
        const Row& r = rows[i];
        std::fprintf(f,
                     "    {\"op\": \"%s\", \"dtype\": \"%s\", \"shape\": \"%s\", \"m\": %lld, \"us\": %.2f, \"gbps\": %.1f, "
                     "\"frac_read\": %.4f, \"tflops\": %.3f, \"bf16_cublaslt_tflops\": %.3f}",
                     r.op.c_str(), r.dtype.c_str(), r.shape.c_str(), (long long)r.m, r.us, r.gbps, r.frac_read, r.tflops,
                     r.bf16_tflops);
      })) {
    return 1;
  }
  return 0;
}
