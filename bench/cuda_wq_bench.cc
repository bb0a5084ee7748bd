// bench/cuda_wq_bench.cc: the CUDA kernels of the weight-only grouped integer layouts
// (kernels/cuda/wq_w4a16*.cu: W4A16 and W8A16, group size 128) on the Llama-3.1-8B matrix shapes,
// in one run on one GPU:
//   1. the read-only ceiling (a streaming-sum kernel over 2 GiB, best of a few launch shapes),
//   2. per shape (n x k: 4096x4096, 14336x4096, 28672x4096 (gate_up), 4096x14336, 128256x4096)
//      and M = 1, 2, 4, 8 (Op::kGemv: f32 x, quantized to int8 by its prep kernel, timed with it)
//      and 16, 32, 64, 128, 256 (Op::kGemm, bf16 x): time
//      per call, GB/s of weight bytes as stored (q + scales + zeros), the fraction of the read
//      ceiling, TFLOP/s, and eli's bf16 route of the same shape beside it (dense bf16 GEMV for
//      M <= 8, the cuBLASLt bf16 GEMM beyond) with the speed-up. For M >= 16 both GEMM routes are
//      timed (wq_cuda::dequant_gemm_rows_setting() set per run): "mma" (the mma.sync kernel) and "dequant"
//      (bf16 weight chunks + cuBLASLt), plus M = 512, 1024 to place the route threshold.
// Weights rotate among copies whose total is >= 4x the L2 (DRAM is measured); calls are replayed
// from a CUDA graph. Random bytes; scales / zeros are filled as small positive floats. Table on
// stdout; JSON to argv[1] if given (records carry "dtype": "w4a16-g128" / "w8a16-g128").
// Correctness is the tests' job (tests/cpp/test_cuda_wq_kernels.cc).
//
// Compiled as CUDA (it has kernels of its own): with -DELI_BUILD_BENCH=ON, or by hand:
//   nvcc -x cu -O2 -std=c++17 -arch=sm_90 -I include -I . bench/cuda_wq_bench.cc \
//        -L build/<dir> -leli_engine -lcublasLt -o /tmp/wq_bench
//   /tmp/wq_bench [out.json] [w4a16|w8a16 ...]
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <string>
#include <vector>

#include "bench/cuda_bench_util.cuh"
#include "kernels/cuda/wq_w4a16.cuh"
#include "kernels/ops.h"
#include "kernels/registry.h"
#include "kernels/wq_matrix.h"

using namespace eli;
using namespace eli::bench;

namespace {

const NamedShape kShapes[] = {{"qo 4096x4096", 4096, 4096},
                         {"up 14336x4096", 14336, 4096},
                         {"gate_up 28672x4096", 28672, 4096},
                         {"down 4096x14336", 4096, 14336},
                         {"lm_head 128256x4096", 128256, 4096}};
const int64_t kMs[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
constexpr int64_t kGroup = 128;

struct Fmt {
  const char* name;
  int bits;
  WeightFormat format;
};
const Fmt kFmts[] = {{"w4a16-g128", 4, WeightFormat::kInt4Grouped}, {"w8a16-g128", 8, WeightFormat::kInt8Grouped}};

struct Row {
  std::string op, route, dtype, shape;
  int64_t m;
  double us, gbps, frac_read, tflops, bf16_us;
};

}  // namespace

int main(int argc, char** argv) {
  const char* json_path = argc > 1 ? argv[1] : nullptr;
  std::vector<Fmt> fmts;
  for (int i = 2; i < argc; ++i) {
    for (const Fmt& f : kFmts) {
      if (std::string(argv[i]) == f.name || std::string(argv[i]) + "-g128" == f.name) fmts.push_back(f);
    }
  }
  if (fmts.empty()) fmts.assign(std::begin(kFmts), std::end(kFmts));

  CHECK_CUDA(cudaSetDevice(0));
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %.0f MB, %.1f GB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize / 1e6,
              prop.totalGlobalMem / 1e9);
  cudaStream_t s;
  CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  ExecContext ctx;
  ctx.stream = s;
  std::vector<Row> rows;

  const double read_bw = read_ceiling<1>(s, prop, [](void* p, size_t bytes) { fill_bits(p, bytes, 2); });
  std::printf("read-only ceiling: %.0f GB/s\n\n", read_bw / 1e9);
  std::printf("%-5s %-7s %-11s %-20s %4s %10s %9s %7s %9s %10s %8s\n", "op", "route", "dtype", "shape", "m", "us",
              "GB/s", "%read",
              "TFLOP/s", "bf16 us", "speedup");

  const size_t rotate_target = rotate_target_bytes(prop);
  const KernelEntry& dense_gemv = get_kernel(Op::kGemv, DeviceKind::kCUDA, DType::kBF16);
  const KernelEntry& dense_gemm = get_kernel(Op::kGemm, DeviceKind::kCUDA, DType::kBF16);
  const size_t blas_ws_bytes = size_t{32} << 20;
  void* blas_ws = dmalloc(blas_ws_bytes);
  for (const NamedShape& sh : kShapes) {
    const int64_t max_m = 1024;
    float* x = static_cast<float*>(dmalloc(max_m * sh.k * 4));
    void* xb = dmalloc(max_m * sh.k * 2);
    float* out = static_cast<float*>(dmalloc(max_m * sh.n * 4));
    size_t ws_bytes = wq_cuda::gemv_workspace_bytes(kGemvMaxRows, sh.k);
    const int64_t default_rows = wq_cuda::dequant_gemm_rows_setting();
    for (int64_t route_rows : {INT64_MAX, int64_t{1}}) {
      wq_cuda::dequant_gemm_rows_setting() = route_rows;
      for (int64_t m : kMs) ws_bytes = std::max(ws_bytes, wq_cuda::gemm_workspace_bytes(m, sh.n, sh.k, true));
    }
    wq_cuda::dequant_gemm_rows_setting() = default_rows;
    void* ws = dmalloc(ws_bytes);
    fill_uniform_f32(x, max_m * sh.k, 7, -0.5f, 1.f);
    fill_bits(xb, max_m * sh.k * 2, 8);
    std::vector<double> bf16_us(std::size(kMs), 0.0);
    {
      const size_t wbytes = static_cast<size_t>(sh.n) * sh.k * 2;
      const int nbuf = rotate_copies(rotate_target, wbytes);
      std::vector<void*> w(nbuf);
      for (int i = 0; i < nbuf; ++i) {
        w[i] = dmalloc(wbytes);
        fill_bits(w[i], wbytes, 100 + i);
      }
      for (size_t mi = 0; mi < std::size(kMs); ++mi) {
        const int64_t m = kMs[mi];
        if (m <= kGemvMaxRows) {
          GemvArgs a{out, x, nullptr, nullptr, nullptr, m, sh.n, sh.k, sh.n, sh.k};
          bf16_us[mi] = 1e6 * time_rotating(s, dense_gemv, a, w, ctx);
        } else {
          GemmArgs a{out, xb, nullptr, nullptr, m, sh.n, sh.k, sh.n, sh.k};
          a.x_dtype = DType::kBF16;
          a.workspace = blas_ws;
          a.workspace_bytes = blas_ws_bytes;
          bf16_us[mi] = 1e6 * time_rotating(s, dense_gemm, a, w, ctx);
        }
      }
      for (void* p : w) CHECK_CUDA(cudaFree(p));
    }
    for (const Fmt& f : fmts) {
      const KernelEntry* gemv = find_kernel(Op::kGemv, DeviceKind::kCUDA, f.format, DType::kU8);
      const KernelEntry* gemm = find_kernel(Op::kGemm, DeviceKind::kCUDA, f.format, DType::kU8);
      if (gemv == nullptr || gemm == nullptr) {
        std::printf("%s: no CUDA kernel in this build\n", f.name);
        continue;
      }
      const size_t qbytes = static_cast<size_t>(sh.n) * sh.k * f.bits / 8;
      const size_t gbytes = static_cast<size_t>(sh.n) * (sh.k / kGroup) * 4;
      const size_t wbytes = qbytes + 2 * gbytes;
      const int nbuf = rotate_copies(rotate_target, wbytes);
      std::vector<void*> q(nbuf), sc(nbuf), zr(nbuf);
      std::vector<WqMatrix> mats(nbuf);
      for (int i = 0; i < nbuf; ++i) {
        q[i] = dmalloc(qbytes);
        sc[i] = dmalloc(gbytes);
        zr[i] = dmalloc(gbytes);
        fill_bits(q[i], qbytes, 200 + i);
        fill_uniform_f32(sc[i], gbytes / 4, 300 + i, 0.001f, 1.f);
        fill_uniform_f32(zr[i], gbytes / 4, 400 + i, f.bits == 4 ? 7.0f : 127.0f, 1.f);
        mats[i].q = q[i];
        mats[i].scales = static_cast<const float*>(sc[i]);
        mats[i].zeros = static_cast<const float*>(zr[i]);
        mats[i].group_size = kGroup;
        mats[i].format = f.format;
      }
      const size_t first = rows.size();
      for (size_t mi = 0; mi < std::size(kMs); ++mi) {
        const int64_t m = kMs[mi];
        for (const char* route : {"mma", "dequant"}) {
          if (m <= kGemvMaxRows && route[0] == 'd') continue;
          double sec = 0.0;
          if (m <= kGemvMaxRows) {
            GemvArgs a{out, x, nullptr, nullptr, nullptr, m, sh.n, sh.k, sh.n, sh.k};
            a.workspace = ws;
            a.workspace_bytes = ws_bytes;
            sec = time_rotating(s, *gemv, a, mats, ctx);
          } else {
            const int64_t default_rows = wq_cuda::dequant_gemm_rows_setting();
            wq_cuda::dequant_gemm_rows_setting() = route[0] == 'm' ? INT64_MAX : 1;
            GemmArgs a{out, xb, nullptr, nullptr, m, sh.n, sh.k, sh.n, sh.k};
            a.x_dtype = DType::kBF16;
            a.workspace = ws;
            a.workspace_bytes = ws_bytes;
            sec = time_rotating(s, *gemm, a, mats, ctx);
            wq_cuda::dequant_gemm_rows_setting() = default_rows;
          }
          const double bw = wbytes / sec;
          rows.push_back({m <= kGemvMaxRows ? "gemv" : "gemm", m <= kGemvMaxRows ? "gemv" : route, f.name, sh.name, m,
                          sec * 1e6, bw / 1e9, bw / read_bw, 2.0 * m * sh.n * sh.k / sec / 1e12, bf16_us[mi]});
        }
      }
      for (size_t i = first; i < rows.size(); ++i) {
        const Row& r = rows[i];
        std::printf("%-5s %-7s %-11s %-20s %4lld %10.1f %9.0f %6.1f%% %9.2f %10.1f %7.2fx\n", r.op.c_str(),
                    r.route.c_str(), r.dtype.c_str(),
                    r.shape.c_str(), (long long)r.m, r.us, r.gbps, 100.0 * r.frac_read, r.tflops, r.bf16_us,
                    r.bf16_us / r.us);
      }
      for (int i = 0; i < nbuf; ++i) {
        CHECK_CUDA(cudaFree(q[i]));
        CHECK_CUDA(cudaFree(sc[i]));
        CHECK_CUDA(cudaFree(zr[i]));
      }
    }
    CHECK_CUDA(cudaFree(x));
    CHECK_CUDA(cudaFree(xb));
    CHECK_CUDA(cudaFree(out));
    CHECK_CUDA(cudaFree(ws));
  }
  CHECK_CUDA(cudaFree(blas_ws));

  // JSON: one record per table row.
  if (json_path != nullptr &&
      !write_json_rows(json_path, prop.name, read_bw, "", rows.size(), [&](FILE* f, size_t i) {
        const Row& r = rows[i];
        std::fprintf(f,
                     "    {\"op\": \"%s\", \"route\": \"%s\", \"dtype\": \"%s\", \"shape\": \"%s\", \"m\": %lld, \"us\": %.2f, "
                     "\"gbps\": %.1f, \"frac_read\": %.4f, \"tflops\": %.3f, \"bf16_us\": %.2f, \"speedup_vs_bf16\": %.3f}",
                     r.op.c_str(), r.route.c_str(), r.dtype.c_str(), r.shape.c_str(), (long long)r.m, r.us, r.gbps,
                     r.frac_read, r.tflops, r.bf16_us, r.bf16_us / r.us);
      })) {
    return 1;
  }
  return 0;
}
