// bench/cuda_gguf_gemv_bench.cc: the CUDA kernels of GGUF block-quantized weights
// (kernels/cuda/gguf_*.cu) on the Llama-3.1-8B matrix shapes, per block type, in one run on one GPU:
//   1. the read-only ceiling (a streaming-sum kernel over 2 GiB, best of a few launch shapes),
//   2. Op::kGemv (kGgufBlocks) at m = 1, 4, 8 for 4096x4096, 14336x4096, 4096x14336 and
//      128256x4096 (n x k): time per call, GB/s of weight bytes as stored and the fraction of the
//      read ceiling; the bf16 dense GEMV of the same shape beside it (time, and the speed-up),
//   3. Op::kGemm (kGgufBlocks, bf16 x) at m = 16, 128, 512: TFLOP/s.
// Weights rotate among copies whose total is >= 4x the L2 (DRAM is measured); calls are replayed
// from a CUDA graph as in a decode step (the quantize-x kernel included, it is part of the GEMV).
// Weight bytes are random with bit 6 of every byte clear, so every fp16 scale is finite; the
// values do not change the work. Table on stdout; JSON to argv[1] if given. Correctness is the
// tests' job (tests/cpp/test_cuda_gguf_kernels.cc), not this program's.
//
// It holds kernels of its own (fills, the read ceiling), so it is compiled as CUDA:
//   nvcc -x cu -O2 -std=c++17 -arch=sm_90 -I include -I . bench/cuda_gguf_gemv_bench.cc \
//        -L build/<dir> -leli_engine -lcublasLt -o /tmp/gguf_bench
//   /tmp/gguf_bench [out.json] [type ...]      (types by name, e.g. q4_k q8_0; default: all 12)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/cuda_bench_util.cuh"
#include "kernels/cuda/gguf_kernels.h"
#include "kernels/ops.h"
#include "kernels/registry.h"

using namespace eli;
using namespace eli::bench;

namespace {

const NamedShape kShapes[] = {{"qo 4096x4096", 4096, 4096},
                         {"up 14336x4096", 14336, 4096},
                         {"down 4096x14336", 4096, 14336},
                         {"lm_head 128256x4096", 128256, 4096}};

const DType kTypes[] = {DType::kQ4_K, DType::kQ6_K, DType::kQ8_0, DType::kQ4_0, DType::kQ5_K,  DType::kQ4_1,
                        DType::kQ5_0, DType::kQ5_1, DType::kQ2_K, DType::kQ3_K, DType::kIQ4_NL, DType::kIQ4_XS};

DType type_by_name(const std::string& name) {
  for (DType t : kTypes)
    if (name == dtype_name(t)) return t;
  std::fprintf(stderr, "unknown block type '%s'\n", name.c_str());
  std::exit(2);
}

struct Row {
  std::string op, type, shape;
  int64_t m;
  double us, gbps, frac_read, tflops, bf16_us;
};

}  // namespace

int main(int argc, char** argv) {
  const char* json_path = argc > 1 ? argv[1] : nullptr;
  std::vector<DType> types;
  for (int i = 2; i < argc; ++i) types.push_back(type_by_name(argv[i]));
  if (types.empty()) types.assign(std::begin(kTypes), std::end(kTypes));

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

  const double read_bw = read_ceiling<4>(s, prop, [](void* p, size_t bytes) { fill_bits(p, bytes, 2); });
  std::printf("read-only ceiling: %.0f GB/s\n\n", read_bw / 1e9);
  std::printf("%-5s %-7s %-20s %4s %10s %9s %7s %9s %10s %8s\n", "op", "type", "shape", "m", "us", "GB/s", "%read",
              "TFLOP/s", "bf16 us", "speedup");

  const size_t rotate_target = rotate_target_bytes(prop);
  const KernelEntry& dense = get_kernel(Op::kGemv, DeviceKind::kCUDA, DType::kBF16);
  for (const NamedShape& sh : kShapes) {
    // Activations and outputs shared by every type; the bf16 baseline's weights.
    const int64_t max_m = 512;
    float* x = static_cast<float*>(dmalloc(max_m * sh.k * 4));
    void* xb = dmalloc(max_m * sh.k * 2);
    float* out = static_cast<float*>(dmalloc(max_m * sh.n * 4));
    void* ws = dmalloc(gguf_gemv_workspace_bytes(kGemvMaxRows, sh.k));
    fill_uniform_f32(x, max_m * sh.k, 7, -1.f, 2.f);
    fill_bits(xb, max_m * sh.k * 2, 8);
    double bf16_us[kGemvMaxRows + 1] = {};
    {
      const size_t wbytes = static_cast<size_t>(sh.n) * sh.k * 2;
      const int nbuf = rotate_copies(rotate_target, wbytes);
      std::vector<void*> w(nbuf);
      for (int i = 0; i < nbuf; ++i) {
        w[i] = dmalloc(wbytes);
        fill_bits(w[i], wbytes, 100 + i);
      }
      for (int64_t m : {1, 4, 8}) {
        GemvArgs a{out, x, nullptr, nullptr, nullptr, m, sh.n, sh.k, sh.n, sh.k};
        bf16_us[m] = 1e6 * time_rotating(s, dense, a, w, ctx);
      }
      for (void* p : w) CHECK_CUDA(cudaFree(p));
    }
    for (DType t : types) {
      const DTypeInfo& info = dtype_info(t);
      const KernelEntry* gemv = find_kernel(Op::kGemv, DeviceKind::kCUDA, WeightFormat::kGgufBlocks, t);
      const KernelEntry* gemm = find_kernel(Op::kGemm, DeviceKind::kCUDA, WeightFormat::kGgufBlocks, t);
      if (gemv == nullptr || gemm == nullptr) {
        std::printf("%s: no CUDA kernel in this build\n", info.name);
        continue;
      }
      const size_t wbytes = static_cast<size_t>(sh.n) * (sh.k / info.block_elems) * info.block_bytes;
      const int nbuf = rotate_copies(rotate_target, wbytes);
      std::vector<void*> w(nbuf);
      for (int i = 0; i < nbuf; ++i) {
        w[i] = dmalloc(wbytes);
        fill_bits(w[i], wbytes, 200 + i);
      }
      for (int64_t m : {1, 4, 8}) {
        GemvArgs a{out, x, nullptr, nullptr, nullptr, m, sh.n, sh.k, sh.n, sh.k};
        a.workspace = ws;
        a.workspace_bytes = gguf_gemv_workspace_bytes(kGemvMaxRows, sh.k);
        const double sec = time_rotating(s, *gemv, a, w, ctx);
        const double bw = wbytes / sec;
        rows.push_back({"gemv", info.name, sh.name, m, sec * 1e6, bw / 1e9, bw / read_bw, 2.0 * m * sh.n * sh.k / sec / 1e12,
                        bf16_us[m]});
      }
      for (int64_t m : {16, 128, 512}) {
        GemmArgs a{out, xb, nullptr, nullptr, m, sh.n, sh.k, sh.n, sh.k};
        a.x_dtype = DType::kBF16;
        const double sec = time_rotating(s, *gemm, a, w, ctx);
        const double bw = wbytes / sec;
        rows.push_back({"gemm", info.name, sh.name, m, sec * 1e6, bw / 1e9, bw / read_bw, 2.0 * m * sh.n * sh.k / sec / 1e12, 0.0});
      }
      for (size_t i = rows.size() - 6; i < rows.size(); ++i) {
        const Row& r = rows[i];
        std::printf("%-5s %-7s %-20s %4lld %10.1f %9.0f %6.1f%% %9.2f", r.op.c_str(), r.type.c_str(), r.shape.c_str(),
                    (long long)r.m, r.us, r.gbps, 100.0 * r.frac_read, r.tflops);
        if (r.bf16_us > 0) std::printf(" %10.1f %7.2fx", r.bf16_us, r.bf16_us / r.us);
        std::printf("\n");
      }
      for (void* p : w) CHECK_CUDA(cudaFree(p));
    }
    CHECK_CUDA(cudaFree(x));
    CHECK_CUDA(cudaFree(xb));
    CHECK_CUDA(cudaFree(out));
    CHECK_CUDA(cudaFree(ws));
  }

  // JSON: one record per table row.
  if (json_path != nullptr &&
      !write_json_rows(json_path, prop.name, read_bw, "", rows.size(), [&](FILE* f, size_t i) {
        const Row& r = rows[i];
        std::fprintf(f,
                     "    {\"op\": \"%s\", \"dtype\": \"%s\", \"shape\": \"%s\", \"m\": %lld, \"us\": %.2f, \"gbps\": %.1f, "
                     "\"frac_read\": %.4f, \"tflops\": %.3f, \"bf16_gemv_us\": %.2f}",
                     r.op.c_str(), r.type.c_str(), r.shape.c_str(), (long long)r.m, r.us, r.gbps, r.frac_read, r.tflops,
                     r.bf16_us);
      })) {
    return 1;
  }
  return 0;
}
