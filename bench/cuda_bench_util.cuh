// bench/cuda_bench_util.cuh: the pieces the CUDA matrix-product benchmarks (bench/cuda_*_bench.cc)
// share: device allocation, seeded random fills, event timing (warm-up, then the median of many
// runs), graph replay over rotating weight copies, the read-only bandwidth ceiling, and the JSON
// row list. Benchmark code only (not library code): a failed CUDA call ends the program
// (CHECK_CUDA). Holds kernels, so it is included only by files compiled as CUDA; its name does not
// match the bench/cuda_*_bench.cc glob of CMakeLists.txt, so it is not built as a program itself.
// Every fill runs on the legacy stream and synchronizes the device before it returns.
#pragma once

#ifndef __CUDACC__
#error "compile the benchmark as CUDA: nvcc -x cu ... (see its header)"
#endif

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/cuda_bench_check.h"
#include "kernels/ops.h"
#include "kernels/registry.h"
#include "kernels/wq_matrix.h"

namespace eli::bench {

// A matrix of the benchmarked model shapes: n x k, and its name in the table and JSON.
struct NamedShape {
  const char* name;
  int64_t n, k;
};

// ---- random fills -------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t hash32(uint64_t i, uint32_t seed) {
  uint64_t h = i * 0x9e3779b97f4a7c15ull + seed;
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 29;
  return static_cast<uint32_t>(h);
}

// uniform: f32 in [lo, lo + span); else random 32-bit words with bit 6 of every byte clear (finite
// fp16 / bf16 halves, no e4m3 NaN byte).
__global__ void fill_words_kernel(uint32_t* p, size_t n, uint32_t seed, bool uniform, float lo, float span) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint32_t h = hash32(i, seed);
    p[i] = uniform ? __float_as_uint(lo + span * (h >> 8) * (1.0f / 16777216.0f)) : (h & 0xBFBFBFBFu);
  }
}

// bf16 bits (truncated) of f32 uniform in [lo, lo + span).
__global__ void fill_bf16_kernel(uint16_t* p, size_t n, uint32_t seed, float lo, float span) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float v = lo + span * (hash32(i, seed) >> 8) * (1.0f / 16777216.0f);
    p[i] = static_cast<uint16_t>(__float_as_uint(v) >> 16);
  }
}

inline void fill_sync() {
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());  // the fills run on the legacy stream; the bench stream does not wait for it
}

// `bytes` (a multiple of 4) of random words with bit 6 of every byte clear.
inline void fill_bits(void* p, size_t bytes, uint32_t seed) {
  fill_words_kernel<<<1024, 256>>>(static_cast<uint32_t*>(p), bytes / 4, seed, false, 0.f, 0.f);
  fill_sync();
}
// n f32 uniform in [lo, lo + span).
inline void fill_uniform_f32(void* p, size_t n, uint32_t seed, float lo, float span) {
  fill_words_kernel<<<1024, 256>>>(static_cast<uint32_t*>(p), n, seed, true, lo, span);
  fill_sync();
}
// n bf16 uniform in [lo, lo + span) (the f32 value's top 16 bits).
inline void fill_uniform_bf16(void* p, size_t n, uint32_t seed, float lo, float span) {
  fill_bf16_kernel<<<1024, 256>>>(static_cast<uint16_t*>(p), n, seed, lo, span);
  fill_sync();
}

// ---- memory ------------------------------------------------------------------------------------

inline void* dmalloc(size_t bytes) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, std::max<size_t>(bytes, 256)));
  return p;
}

// Weight copies are rotated so that their total is >= 4x the L2 (at least 256 MiB): DRAM is
// measured, not the cache. How many copies of `wbytes` that takes (at least 2).
inline size_t rotate_target_bytes(const cudaDeviceProp& prop) {
  return std::max<size_t>(4 * static_cast<size_t>(prop.l2CacheSize), size_t{256} << 20);
}
inline int rotate_copies(size_t rotate_target, size_t wbytes) {
  return static_cast<int>(std::max<size_t>(2, (rotate_target + wbytes - 1) / wbytes));
}

// ---- timing ------------------------------------------------------------------------------------

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// Median over `reps` of the time (seconds) of `enqueue` on `s`, after `warmup` untimed runs.
inline double time_median(cudaStream_t s, int warmup, int reps, const std::function<void()>& enqueue) {
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

// Seconds per call of `call(i)` (i: which weight copy), replayed from a graph of `iters` calls
// (a multiple of nbuf, >= 20) after one untimed call per copy outside the capture.
inline double graph_time(cudaStream_t s, int nbuf, const std::function<void(int)>& call) {
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

// The kernel's weight argument for one copy: a raw buffer as it is, a WqMatrix by address.
inline const void* weight_arg(void* p) { return p; }
inline const void* weight_arg(const WqMatrix& m) { return &m; }

// graph_time of kernel `k` on `a` (GemvArgs or GemmArgs), a.w rotating over the copies `w`.
template <class Args, class W>
double time_rotating(cudaStream_t s, const KernelEntry& k, Args& a, const std::vector<W>& w, const ExecContext& ctx) {
  return graph_time(s, static_cast<int>(w.size()), [&](int i) {
    a.w = weight_arg(w[i]);
    k.fn(&a, ctx);
  });
}

// ---- the read-only ceiling ---------------------------------------------------------------------

__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// Reads n16 16-byte words; kU independent loads in flight per thread. Writes only if the sum hits
// an (almost) impossible value, so the loads cannot be dropped.
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

constexpr size_t kReadCeilingBytes = size_t{2} << 30;

// The read-only ceiling (bytes/s): read_sum<kU> over 2 GiB (filled by `fill(buffer, bytes)`), the
// best of 2 / 4 / 8 blocks per SM x 256 / 512 / 1024 threads (at most 2048 threads per SM), each
// the median of 15 runs after 2. `best_cfg`, if given, gets the winning "<per_sm>x<threads>".
template <int kU>
double read_ceiling(cudaStream_t s, const cudaDeviceProp& prop, const std::function<void(void*, size_t)>& fill,
                    std::string* best_cfg = nullptr) {
  const size_t bytes = kReadCeilingBytes;
  void* buf = dmalloc(bytes);
  uint32_t* sink = static_cast<uint32_t*>(dmalloc(256));
  fill(buf, bytes);
  double read_bw = 0.0;
  for (int per_sm : {2, 4, 8}) {
    for (int threads : {256, 512, 1024}) {
      if (per_sm * threads > 2048) continue;
      const int blocks = per_sm * prop.multiProcessorCount;
      const double t = time_median(s, 2, 15, [&] {
        read_sum<kU><<<blocks, threads, 0, s>>>(static_cast<const uint4*>(buf), bytes / 16, sink);
      });
      CHECK_CUDA(cudaGetLastError());
      if (bytes / t > read_bw) {
        read_bw = bytes / t;
        if (best_cfg != nullptr) *best_cfg = std::to_string(per_sm) + "x" + std::to_string(threads);
      }
    }
  }
  CHECK_CUDA(cudaFree(buf));
  CHECK_CUDA(cudaFree(sink));
  return read_bw;
}

// ---- JSON --------------------------------------------------------------------------------------

// Writes `path`: {"device", "read_ceiling_gbps" (read_bw / 1e9), the lines of `extra` (each
// '  "key": value,\n'), "rows": [...]} with row(f, i) printing row i (one line, without its
// separator; a comma between rows). Prints "\nwrote <path>"; false (after perror) if it cannot be
// opened.
inline bool write_json_rows(const char* path, const char* device, double read_bw, const std::string& extra, size_t n,
                            const std::function<void(FILE*, size_t)>& row) {
  FILE* f = std::fopen(path, "w");
  if (f == nullptr) {
    std::perror(path);
    return false;
  }
  std::fprintf(f, "{\n  \"device\": \"%s\",\n  \"read_ceiling_gbps\": %.1f,\n%s  \"rows\": [\n", device, read_bw / 1e9,
               extra.c_str());
  for (size_t i = 0; i < n; ++i) {
    row(f, i);
    std::fprintf(f, "%s\n", i + 1 < n ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
  std::printf("\nwrote %s\n", path);
  return true;
}

}  // namespace eli::bench
