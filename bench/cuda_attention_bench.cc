// bench/cuda_attention_bench.cc: timing of the CUDA 16-bit-KV-cache attention (Op::kAttention,
// CUDA, bf16 by default, f16 with the argument "f16"; q and out in the cache's type) through the
// registry, i.e. the production kernels: decode (split-K, batch 1 and 32, with
// and without workspace) as GB/s of K+V read, and prefill of one sequence as TFLOP/s of causal
// attention (2 * 2 * T * T / 2 * hd * n_heads), for head_dim 64 and 128, 32 q / 8 kv heads, block
// size 16. Also a device-to-device copy for the bandwidth ceiling, and a check of decode (all)
// and prefill 512 outputs against attention_ref_bf16 / _f16 (max error relative to max |ref|).
//
// Decode caches are rotated over enough copies (> 256 MiB in all) that the L2 cache does not
// serve them; times are medians over repeats of back-to-back launches timed with CUDA events.
// Decode is timed twice: eager launches (time_us: includes the host's launch cost where it exceeds
// the kernel's), and inside captured CUDA graphs of kGraphLaunches launches each (graph_us: the
// graph's time / kGraphLaunches; one graph per group of cache copies), which is how the engine
// runs decode. A graph of kGraphLaunches 4-byte memsets gives the per-node floor (node_us).
// Build: cmake -DELI_BUILD_BENCH=ON -DELI_CUDA=ON ... && cmake --build BUILD --target eli_cuda_attention_bench
// Run:   BUILD/eli_cuda_attention_bench [bf16|f16]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "bench/cuda_bench_check.h"
#include "eli/dtype.h"
#include "kernels/ops.h"
#include "kernels/ref/float_convert.h"
#include "kernels/registry.h"

using namespace eli;

namespace {

template <typename T>
T* to_device(const std::vector<T>& h) {
  T* d = nullptr;
  CHECK_CUDA(cudaMalloc(&d, std::max<size_t>(1, h.size()) * sizeof(T)));
  if (!h.empty()) CHECK_CUDA(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

DType g_cache = DType::kBF16;  // the KV-cache (and q, out) type under test: bf16 or f16

uint16_t to16(float f) { return g_cache == DType::kF16 ? f32_to_f16(f) : f32_to_bf16(f); }
float from16(uint16_t h) { return g_cache == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h); }

std::vector<uint16_t> random16(size_t n, uint32_t seed) {
  std::vector<uint16_t> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (uint16_t& b : v) {
    x = x * 1664525u + 1013904223u;
    b = to16((static_cast<float>(x >> 8) / 16777216.0f) * 2.f - 1.f);
  }
  return v;
}

// Median seconds per call of fn(i) (i counts calls), over `repeats` events-timed groups of `inner`.
template <typename F>
double median_seconds(cudaStream_t stream, int repeats, int inner, F fn) {
  for (int i = 0; i < 3; ++i) fn(i);
  CHECK_CUDA(cudaStreamSynchronize(stream));
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  std::vector<double> t;
  int call = 0;
  for (int r = 0; r < repeats; ++r) {
    CHECK_CUDA(cudaEventRecord(a, stream));
    for (int i = 0; i < inner; ++i) fn(call++);
    CHECK_CUDA(cudaEventRecord(b, stream));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1e-3 / inner);
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

constexpr int kGraphLaunches = 20;

// Median seconds per call of launch(i) (i: the copy to use) inside CUDA graphs of kGraphLaunches
// back-to-back calls; graph g holds calls g * kGraphLaunches .. + kGraphLaunches - 1 (mod copies),
// enough graphs that every copy is used; graphs are replayed round robin.
template <typename F>
double graph_seconds(cudaStream_t stream, int copies, F launch) {
  const int n_graphs = std::max(1, (copies + kGraphLaunches - 1) / kGraphLaunches);
  std::vector<cudaGraphExec_t> execs;
  for (int g = 0; g < n_graphs; ++g) {
    cudaGraph_t graph = nullptr;
    CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < kGraphLaunches; ++i) launch((g * kGraphLaunches + i) % copies);
    CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t exec = nullptr;
    CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    CHECK_CUDA(cudaGraphDestroy(graph));
    execs.push_back(exec);
  }
  const int inner = std::max(n_graphs, 5);
  const double t = median_seconds(stream, 15, inner, [&](int i) {
    CHECK_CUDA(cudaGraphLaunch(execs[static_cast<size_t>(i % n_graphs)], stream));
  });
  for (cudaGraphExec_t e : execs) CHECK_CUDA(cudaGraphExecDestroy(e));
  return t / kGraphLaunches;
}

// max |got - ref| / max |ref| over T rows of nh * hd (device output 16-bit, contiguous).
double rel_error(const uint16_t* d_out, const std::vector<float>& ref) {
  std::vector<uint16_t> got(ref.size());
  CHECK_CUDA(cudaMemcpy(got.data(), d_out, got.size() * 2, cudaMemcpyDeviceToHost));
  double mx = 0, err = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    mx = std::max(mx, static_cast<double>(std::fabs(ref[i])));
    const double g = from16(got[i]);
    err = std::isfinite(g) ? std::max(err, std::fabs(g - ref[i])) : INFINITY;
  }
  return mx > 0 ? err / mx : err;
}

struct Setup {
  int64_t n_seqs, q_len, ctx, nh = 32, nkv = 8, hd, bs = 16;
};

// Host + device batch: n_seqs sequences of ctx positions, the last q_len of them queries;
// block tables sequential per copy. Returns AttentionArgs pointing at copy 0.
struct Batch {
  Setup s;
  int64_t T, mbps, n_blocks, cache_elems;
  std::vector<int32_t> cu, pos, ctx, tables;
  std::vector<uint16_t> q, kc, vc;
  int32_t *d_cu, *d_pos, *d_ctx, *d_tab;
  uint16_t *d_q, *d_out;
  std::vector<uint16_t*> d_k, d_v;  // copies of the caches (rotated for decode)
  float* d_ws;
  size_t ws_bytes;

  Batch(Setup st, int copies) : s(st) {
    T = s.n_seqs * s.q_len;
    mbps = (s.ctx + s.bs - 1) / s.bs;
    n_blocks = s.n_seqs * mbps;
    cache_elems = n_blocks * s.bs * s.nkv * s.hd;
    cu.push_back(0);
    for (int64_t i = 0; i < s.n_seqs; ++i) {
      for (int64_t j = 0; j < s.q_len; ++j) pos.push_back(static_cast<int32_t>(s.ctx - s.q_len + j));
      cu.push_back(static_cast<int32_t>(pos.size()));
      ctx.push_back(static_cast<int32_t>(s.ctx));
      for (int64_t b = 0; b < mbps; ++b) tables.push_back(static_cast<int32_t>(i * mbps + b));
    }
    q = random16(static_cast<size_t>(T * s.nh * s.hd), 1);
    kc = random16(static_cast<size_t>(cache_elems), 2);
    vc = random16(static_cast<size_t>(cache_elems), 3);
    d_cu = to_device(cu);
    d_pos = to_device(pos);
    d_ctx = to_device(ctx);
    d_tab = to_device(tables);
    d_q = to_device(q);
    d_out = to_device(std::vector<uint16_t>(q.size()));
    for (int c = 0; c < copies; ++c) {
      d_k.push_back(to_device(kc));
      d_v.push_back(to_device(vc));
    }
    ws_bytes = attention_workspace_bytes(T, s.nh, s.hd);
    CHECK_CUDA(cudaMalloc(&d_ws, ws_bytes));
  }
  ~Batch() {
    cudaFree(d_cu);
    cudaFree(d_pos);
    cudaFree(d_ctx);
    cudaFree(d_tab);
    cudaFree(d_q);
    cudaFree(d_out);
    for (auto* p : d_k) cudaFree(p);
    for (auto* p : d_v) cudaFree(p);
    cudaFree(d_ws);
  }
  AttentionArgs args(bool workspace) const {
    AttentionArgs a{d_out, d_q, d_k[0], d_v[0], d_cu, d_pos, d_ctx, d_tab, s.n_seqs, s.nh, s.nkv, s.hd, s.bs, mbps,
                    s.nh * s.hd, s.nh * s.hd, 0, 1.0f / std::sqrt(static_cast<float>(s.hd))};
    a.q_dtype = g_cache;
    a.out_dtype = g_cache;
    a.max_query_len = s.q_len;
    a.max_context_len = s.ctx;
    a.workspace = workspace ? d_ws : nullptr;
    a.workspace_bytes = workspace ? ws_bytes : 0;
    return a;
  }
  std::vector<float> reference(const KernelEntry& ref) const {
    std::vector<float> out(q.size());
    AttentionArgs a{out.data(), q.data(), kc.data(), vc.data(), cu.data(), pos.data(), ctx.data(), tables.data(),
                    s.n_seqs, s.nh, s.nkv, s.hd, s.bs, mbps, s.nh * s.hd, s.nh * s.hd, 0,
                    1.0f / std::sqrt(static_cast<float>(s.hd))};
    a.q_dtype = g_cache;
    a.out_dtype = DType::kF32;
    ref.fn(&a, ExecContext{});
    return out;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) g_cache = parse_dtype(argv[1]);
  if (g_cache != DType::kBF16 && g_cache != DType::kF16) {
    std::fprintf(stderr, "usage: %s [bf16|f16]\n", argv[0]);
    return 2;
  }
  const KernelEntry* e = find_kernel(Op::kAttention, DeviceKind::kCUDA, g_cache);
  const KernelEntry* ref = find_kernel(Op::kAttention, DeviceKind::kCPU, g_cache, "ref");
  if (e == nullptr || ref == nullptr) {
    std::fprintf(stderr, "no CUDA %s attention in this build\n", dtype_name(g_cache));
    return 1;
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ExecContext ctx;
  ctx.stream = stream;
  std::printf("device: %s, %d SMs; %s KV cache\n", prop.name, prop.multiProcessorCount, dtype_name(g_cache));

  {  // copy ceiling: 512 MiB device to device, bytes read + written
    const size_t n = size_t{512} << 20;
    void *a = nullptr, *b = nullptr;
    CHECK_CUDA(cudaMalloc(&a, n));
    CHECK_CUDA(cudaMalloc(&b, n));
    CHECK_CUDA(cudaMemset(a, 1, n));
    const double t = median_seconds(stream, 9, 3, [&](int) {
      CHECK_CUDA(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, stream));
    });
    std::printf("d2d copy: %.0f GB/s (read + write)\n\n", 2.0 * n / t / 1e9);
    cudaFree(a);
    cudaFree(b);
  }

  {  // per-node floor of a graph: kGraphLaunches dependent 4-byte memsets
    void* m = nullptr;
    CHECK_CUDA(cudaMalloc(&m, 4));
    const double t = graph_seconds(stream, 1, [&](int) { CHECK_CUDA(cudaMemsetAsync(m, 0, 4, stream)); });
    std::printf("graph node floor (4-byte memset): node_us %.2f\n\n", t * 1e6);
    cudaFree(m);
  }

  std::printf("%-8s %5s %4s %6s %-6s %10s %12s %10s %12s %10s\n", "kind", "batch", "hd", "ctx", "ws", "time_us", "rate",
              "graph_us", "graph_rate", "max_err");
  for (int64_t hd : {64, 128}) {
    for (int64_t batch : {1, 32}) {
      for (int64_t ctx_len : {128, 4096}) {
        const int64_t kv_bytes = batch * ctx_len * 8 * hd * 2 * 2;  // K + V, 8 kv heads, 2 bytes
        const int copies = static_cast<int>(std::min<int64_t>(1024, (int64_t{256} << 20) / kv_bytes + 1));
        Batch b(Setup{batch, 1, ctx_len, 32, 8, hd}, copies);
        const std::vector<float> want = b.reference(*ref);
        for (bool ws : {true, false}) {
          AttentionArgs a = b.args(ws);
          e->fn(&a, ctx);
          CHECK_CUDA(cudaStreamSynchronize(stream));
          const double err = rel_error(b.d_out, want);
          auto launch = [&](int i) {
            AttentionArgs ai = a;
            ai.k_cache = b.d_k[static_cast<size_t>(i % copies)];
            ai.v_cache = b.d_v[static_cast<size_t>(i % copies)];
            e->fn(&ai, ctx);
          };
          const double t = median_seconds(stream, 15, 20, launch);
          // Poisoned (0xffff: a NaN in bf16 and f16) before the graphs, whose launches must all write out again, with
          // the same values (every cache copy holds the same data).
          CHECK_CUDA(cudaMemsetAsync(b.d_out, 0xff, b.q.size() * sizeof(uint16_t), stream));
          const double tg = graph_seconds(stream, copies, launch);
          CHECK_CUDA(cudaStreamSynchronize(stream));
          const double err_after = rel_error(b.d_out, want);
          std::printf("%-8s %5lld %4lld %6lld %-6s %10.2f %8.0f GB/s %10.2f %7.0f GB/s %10.2e\n", "decode", (long long)batch,
                      (long long)hd, (long long)ctx_len, ws ? "yes" : "no", t * 1e6, kv_bytes / t / 1e9, tg * 1e6,
                      kv_bytes / tg / 1e9, std::max(err, err_after));
        }
      }
    }
  }
  for (int64_t hd : {64, 128}) {
    for (int64_t len : {512, 2048}) {
      Batch b(Setup{1, len, len, 32, 8, hd}, 1);
      AttentionArgs a = b.args(false);
      e->fn(&a, ctx);
      CHECK_CUDA(cudaStreamSynchronize(stream));
      const double err = len <= 512 ? rel_error(b.d_out, b.reference(*ref)) : NAN;
      const double t = median_seconds(stream, 11, 5, [&](int) { e->fn(&a, ctx); });
      const double flops = 2.0 * 2.0 * static_cast<double>(len) * len / 2.0 * hd * 32;
      std::printf("%-8s %5d %4lld %6lld %-6s %10.2f %7.1f TFLOP/s %10s %12s %10.2e\n", "prefill", 1, (long long)hd,
                  (long long)len, "-", t * 1e6, flops / t / 1e12, "-", "-", err);
    }
  }
  CHECK_CUDA(cudaStreamDestroy(stream));
  return 0;
}
