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
#include "kernels/cuda/gguf_kernels.h"
#include "kernels/ops.h"
#include "kernels/registry.h"

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
const Shape kShapes[] = {{"qo 4096x4096", 4096, 4096},
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
  std::printf("%-5s %-7s %-20s %4s %10s %9s %7s %9s %10s %8s\n", "op", "type", "shape", "m", "us", "GB/s", "%read",
              "TFLOP/s", "bf16 us", "speedup");

  const size_t rotate_target = std::max<size_t>(4 * static_cast<size_t>(prop.l2CacheSize), size_t{256} << 20);
  const KernelEntry& dense = get_kernel(Op::kGemv, DeviceKind::kCUDA, DType::kBF16);
  for (const Shape& sh : kShapes) {
    // Activations and outputs shared by every type; the bf16 baseline's weights.
    const int64_t max_m = 512;
    float* x = static_cast<float*>(dmalloc(max_m * sh.k * 4));
    void* xb = dmalloc(max_m * sh.k * 2);
    float* out = static_cast<float*>(dmalloc(max_m * sh.n * 4));
    void* ws = dmalloc(gguf_gemv_workspace_bytes(kGemvMaxRows, sh.k));
    fill(x, max_m * sh.k * 4, 7, true);
    fill(xb, max_m * sh.k * 2, 8, false);
    double bf16_us[kGemvMaxRows + 1] = {};
    {
      const size_t wbytes = static_cast<size_t>(sh.n) * sh.k * 2;
      const int nbuf = static_cast<int>(std::max<size_t>(2, (rotate_target + wbytes - 1) / wbytes));
      std::vector<void*> w(nbuf);
      for (int i = 0; i < nbuf; ++i) {
        w[i] = dmalloc(wbytes);
        fill(w[i], wbytes, 100 + i, false);
      }
      for (int64_t m : {1, 4, 8}) {
        GemvArgs a{out, x, nullptr, nullptr, nullptr, m, sh.n, sh.k, sh.n, sh.k};
        bf16_us[m] = 1e6 * graph_time(s, nbuf, [&](int i) {
          a.w = w[i];
          dense.fn(&a, ctx);
        });
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
      const int nbuf = static_cast<int>(std::max<size_t>(2, (rotate_target + wbytes - 1) / wbytes));
      std::vector<void*> w(nbuf);
      for (int i = 0; i < nbuf; ++i) {
        w[i] = dmalloc(wbytes);
        fill(w[i], wbytes, 200 + i, false);
      }
      for (int64_t m : {1, 4, 8}) {
        GemvArgs a{out, x, nullptr, nullptr, nullptr, m, sh.n, sh.k, sh.n, sh.k};
        a.workspace = ws;
        a.workspace_bytes = gguf_gemv_workspace_bytes(kGemvMaxRows, sh.k);
        const double sec = graph_time(s, nbuf, [&](int i) {
          a.w = w[i];
          gemv->fn(&a, ctx);
        });
        const double bw = wbytes / sec;
        rows.push_back({"gemv", info.name, sh.name, m, sec * 1e6, bw / 1e9, bw / read_bw, 2.0 * m * sh.n * sh.k / sec / 1e12,
                        bf16_us[m]});
      }
      for (int64_t m : {16, 128, 512}) {
        GemmArgs a{out, xb, nullptr, nullptr, m, sh.n, sh.k, sh.n, sh.k};
        a.x_dtype = DType::kBF16;
        const double sec = graph_time(s, nbuf, [&](int i) {
          a.w = w[i];
          gemm->fn(&a, ctx);
        });
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

  if (json_path != nullptr) {
    FILE* f = std::fopen(json_path, "w");
    if (f == nullptr) {
      std::perror(json_path);
      return 1;
    }
    std::fprintf(f, "{\n  \"device\": \"%s\",\n  \"read_ceiling_gbps\": %.1f,\n  \"rows\": [\n", prop.name, read_bw / 1e9);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f,
                   "    {\"op\": \"%s\", \"dtype\": \"%s\", \"shape\": \"%s\", \"m\": %lld, \"us\": %.2f, \"gbps\": %.1f, "
                   "\"frac_read\": %.4f, \"tflops\": %.3f, \"bf16_gemv_us\": %.2f}%s\n",
                   r.op.c_str(), r.type.c_str(), r.shape.c_str(), (long long)r.m, r.us, r.gbps, r.frac_read, r.tflops,
                   r.bf16_us, i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    std::printf("\nwrote %s\n", json_path);
  }
  return 0;
}
