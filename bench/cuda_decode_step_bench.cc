// bench/cuda_decode_step_bench.cc: where the GPU time of one decode step goes, measured through the
// production path: the ModelRunner runs the model's forward exactly as the engine does (batch
// upload, RoPE tables, the CUDA graph of the decode bucket, replays), on a checkpoint of random
// weights at a real shape (bench/gpu/make_weights.py: Llama-3.2-1B, Llama-3.1-8B), for B sequences
// at a context length each. There is no copy of the forward here: what the engine runs is what is
// timed.
//
// Variants run the same forward with one kind of op turned into a no-op (OpAblation,
// kernels/registry.h); the difference to the full step is that kind's marginal cost inside the chain
// (its own time plus the gaps it adds), which is what a fusion or a launch-latency fix can win. Also
// the launch settings' alternatives (kernels/cuda_tuning_knobs.h, set before each capture).
// Sampling is not part of the runner's step (the engine's DeviceSampler follows it): the engine
// benchmarks (bench/gpu) time it with the rest. The
// step's bytes (weights plus the K/V its attention reads) against a read-only bandwidth ceiling
// measured in the same run give its fraction of the memory limit. Ablated variants compute garbage
// on purpose; tests/cpp covers the values.
//
// Build: cmake -DELI_CUDA=ON -DELI_BUILD_BENCH=ON ... && cmake --build B --target eli_cuda_decode_step_bench
// Run:   eli_cuda_decode_step_bench MODEL_DIR [MODEL_DIR...] [--json out.json]
//        env ELI_STEP_BENCH_BATCHES (default "1"; e.g. "1,64,256"), ELI_STEP_BENCH_CONTEXTS
//        (default "128,4096"), ELI_STEP_BENCH_ITERS (timed replays, default 50),
//        ELI_STEP_BENCH_KV_DTYPES (default "bf16"; e.g. "bf16,int8,fp8": the KV cache's dtype;
//        a configuration whose cache does not fit the card is skipped with a note).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/cuda_bench_check.h"
#include "eli/error.h"
#include "kernels/cuda_tuning_knobs.h"
#include "kernels/registry.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/kv/kv_cache.h"
#include "runtime/kv/kv_groups.h"
#include "runtime/model/model.h"
#include "runtime/model/model_files.h"
#include "runtime/model/weight_reader.h"
#include "runtime/runner/model_runner.h"

using namespace eli;

namespace {

constexpr int64_t kBlockSize = 16;

__global__ void read_kernel(const uint4* __restrict__ buf, size_t n, unsigned* sink) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint4 v = __ldg(buf + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Read-only bandwidth ceiling in bytes/s over a 4 GiB buffer (the memory limit a decode step faces).
double read_ceiling() {
  const size_t bytes = size_t{4} << 30;
  uint4* buf = nullptr;
  unsigned* sink = nullptr;
  CHECK_CUDA(cudaMalloc(&buf, bytes));
  CHECK_CUDA(cudaMalloc(&sink, 4));
  CHECK_CUDA(cudaMemset(buf, 1, bytes));
  int sms = 0;
  CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  std::vector<double> t;
  for (int r = 0; r < 12; ++r) {
    CHECK_CUDA(cudaEventRecord(a));
    read_kernel<<<sms * 8, 512>>>(buf, bytes / 16, sink);
    CHECK_CUDA(cudaEventRecord(b));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    if (r >= 2) t.push_back(ms * 1e-3);
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  CHECK_CUDA(cudaFree(buf));
  CHECK_CUDA(cudaFree(sink));
  return static_cast<double>(bytes) / median(t);
}

std::vector<std::string> str_list(const char* env, std::vector<std::string> fallback) {
  const char* text = std::getenv(env);
  if (text == nullptr || *text == '\0') return fallback;
  std::vector<std::string> out;
  std::string s(text);
  for (size_t pos = 0; pos <= s.size();) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    if (comma > pos) out.push_back(s.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out.empty() ? fallback : out;
}

DType kv_dtype_of(const std::string& name) {
  if (name == "int8") return DType::kI8;
  if (name == "fp8") return DType::kF8E4M3;
  return parse_dtype(name);
}

std::vector<int64_t> int_list(const char* env, std::vector<int64_t> fallback) {
  const char* text = std::getenv(env);
  if (text == nullptr || *text == '\0') return fallback;
  std::vector<int64_t> out;
  std::string s(text);
  for (size_t pos = 0; pos <= s.size();) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    if (comma > pos) out.push_back(std::stoll(s.substr(pos, comma - pos)));
    pos = comma + 1;
  }
  return out.empty() ? fallback : out;
}

using cuda::Knob;
using KnobList = std::vector<std::pair<Knob, int>>;

// The production settings: every tuning knob at its default (carveouts at -1, the driver's
// default, rather than unset, because a kernel's carveout attribute outlives the variant that set it).
KnobList base_knobs() {
  return {{Knob::kPdl, 1},          {Knob::kGemvPdl, 1},      {Knob::kAttnTriggerEarly, 0}, {Knob::kAttnMinSplit, 0},
          {Knob::kAttnCarveout, -1}, {Knob::kGemvCarveout, -1}, {Knob::kRopeCarveout, -1},
          {Knob::kAttnStages, 0}};
}
KnobList with(const KnobList& changed) {
  KnobList k = base_knobs();
  for (const auto& c : changed) {
    for (auto& b : k)
      if (b.first == c.first) b.second = c.second;
  }
  return k;
}

// One variant: ops turned off and launch settings (in force when the step is captured).
struct Variant {
  std::string name;
  std::vector<Op> off;
  KnobList knobs;
};

std::vector<Variant> variants(bool gemv_route) {
  const KnobList base = base_knobs();
  std::vector<Variant> v = {
      {"full", {}, base},
      {"full, no PDL", {}, with({{Knob::kPdl, 0}})},
      {"- rope/kv write", {Op::kRopeKvWrite}, base},
      {"- attention", {Op::kAttention}, base},
      {"- embedding", {Op::kEmbedding}, base},
      {"products only", {Op::kRopeKvWrite, Op::kAttention, Op::kEmbedding, Op::kNormCast, Op::kGatedAct}, base},
      {"attn ring 2 stages", {}, with({{Knob::kAttnStages, 2}})},
      {"attn ring 3 stages", {}, with({{Knob::kAttnStages, 3}})},
  };
  if (!gemv_route) v.push_back({"- norm/cast + gated act", {Op::kNormCast, Op::kGatedAct}, base});
  if (gemv_route) {  // the alternatives the defaults were chosen against
    v.push_back({"attn trigger early", {}, with({{Knob::kAttnTriggerEarly, 1}})});
    v.push_back({"attn carveout max", {}, with({{Knob::kAttnCarveout, 100}})});
    v.push_back({"all carveout max", {},
                 with({{Knob::kAttnCarveout, 100}, {Knob::kGemvCarveout, 100}, {Knob::kRopeCarveout, 100}})});
    v.push_back({"min split 128", {}, with({{Knob::kAttnMinSplit, 128}})});
    v.push_back({"min split 1024", {}, with({{Knob::kAttnMinSplit, 1024}})});
  }
  return v;
}

// B decode sequences at context ctx each: sequence s owns blocks [s * per_seq, (s + 1) * per_seq)
// in every KV group.
Batch decode_batch(int64_t b, int64_t ctx, bool two_groups, int32_t vocab) {
  const int64_t per_seq = (ctx + kBlockSize - 1) / kBlockSize;
  Batch batch;
  batch.max_blocks_per_seq = per_seq;
  for (int64_t s = 0; s < b; ++s) {
    const int64_t pos = ctx - 1;
    batch.token_ids.push_back(static_cast<int32_t>((s * 7919 + 17) % vocab));
    batch.positions.push_back(static_cast<int32_t>(pos));
    batch.cu_seqlens.push_back(static_cast<int32_t>(s + 1));
    batch.context_lens.push_back(static_cast<int32_t>(ctx));
    for (int64_t j = 0; j < per_seq; ++j) batch.block_tables.push_back(static_cast<int32_t>(s * per_seq + j));
    batch.slot_mapping.push_back(
        static_cast<int32_t>((s * per_seq + pos / kBlockSize) * kBlockSize + pos % kBlockSize));
    batch.logits_indices.push_back(static_cast<int32_t>(s));
  }
  if (two_groups) {
    batch.block_tables1 = batch.block_tables;
    batch.slot_mapping1 = batch.slot_mapping;
  }
  return batch;
}

struct Row {
  std::string model, variant, kv_dtype;
  int64_t batch = 0, ctx = 0;
  double us = 0, bytes = 0;
};

// Median step time in microseconds of `iters` replays (graphs captured before timing).
double time_steps(ModelRunner& runner, const Batch& batch, KvCache& kv, int iters) {
  for (int i = 0; i < 3; ++i) runner.forward(batch, kv);  // eager, capture, replay
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<double> t;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) runner.forward(batch, kv);
    CHECK_CUDA(cudaDeviceSynchronize());
    const auto t1 = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / iters);
  }
  return median(t);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> dirs;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      dirs.push_back(a);
    }
  }
  if (dirs.empty()) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [MODEL_DIR...] [--json out.json]\n", argv[0]);
    return 2;
  }
  const std::vector<int64_t> batches = int_list("ELI_STEP_BENCH_BATCHES", {1});
  const std::vector<int64_t> contexts = int_list("ELI_STEP_BENCH_CONTEXTS", {128, 4096});
  const int iters = static_cast<int>(int_list("ELI_STEP_BENCH_ITERS", {50})[0]);
  const std::vector<std::string> kv_dtypes = str_list("ELI_STEP_BENCH_KV_DTYPES", {"bf16"});
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  const double read_bw = read_ceiling();
  std::printf("card: %s; read-only ceiling %.0f GB/s\n", prop.name, read_bw * 1e-9);
  std::vector<Row> rows;
  try {
    std::unique_ptr<Device> device = create_device(parse_device("cuda:0"));
    ThreadPool pool(4);
    for (const std::string& dir : dirs) {
      ModelFiles files = open_model_files(dir);
      ModelLoadOptions opt;
      opt.compute_dtype = DType::kBF16;
      opt.device = DeviceKind::kCUDA;
      opt.defer_merges = true;
      opt.gguf_llama_permuted = files.gguf_llama_permuted;
      opt.pool = &pool;
      const ModelSpec spec = files.spec;
      ModelRunner runner(*device, create_model(spec, WeightReader(files.weights, files.name_of), opt), &pool);
      const int64_t max_b = *std::max_element(batches.begin(), batches.end());
      runner.reserve(std::max<int64_t>(max_b, 16), std::max<int64_t>(max_b, 16));
      const KvGroups groups = kv_groups_for(spec);
      for (const std::string& kv_name : kv_dtypes)
      for (int64_t ctx : contexts) {
        for (int64_t b : batches) {
          KvCacheShape ks;
          ks.n_layers = spec.n_layers;
          ks.block_size = kBlockSize;
          ks.n_kv_heads = spec.n_kv_heads;
          ks.head_dim = spec.head_dim;
          ks.dtype = kv_dtype_of(kv_name);
          ks.quantized_query_dtype = DType::kBF16;
          ks.n_blocks = b * ((ctx + kBlockSize - 1) / kBlockSize);
          if (groups.n_groups() == 2) {
            ks.layer_group = groups.layer_group;
            ks.n_blocks1 = ks.n_blocks;
          }
          for (int g = 0; g < groups.n_groups(); ++g) ks.group_window[g] = groups.window[static_cast<size_t>(g)];
          size_t free_b = 0, total_b = 0;
          CHECK_CUDA(cudaMemGetInfo(&free_b, &total_b));
          if (ks.nbytes() + (size_t{2} << 30) > free_b) {
            std::printf("%-32s B=%-4lld ctx=%-6lld kv %-5s skipped: its KV cache (%.1f GB) does not fit\n", dir.c_str(),
                        static_cast<long long>(b), static_cast<long long>(ctx), kv_name.c_str(), ks.nbytes() * 1e-9);
            continue;
          }
          KvCache kv(*device, ks);
          const Batch batch = decode_batch(b, ctx, groups.n_groups() == 2, static_cast<int32_t>(spec.vocab_size));
          // Bytes one step reads: every weight once, and the K/V of the context in every layer.
          const double bytes = static_cast<double>(runner.weight_bytes()) +
                               static_cast<double>(b * ctx) * static_cast<double>(ks.bytes_per_block()) / kBlockSize;
          // The linear products take the GEMV route up to a few rows (linear_dense.cc), else GEMM.
          double full_us = 0;
          for (const Variant& v : variants(b <= 8)) {
            for (const auto& [k, value] : v.knobs) cuda::set_knob(k, value);
            runner.set_graphs_enabled(false);  // drop graphs captured with other kernels / settings
            runner.set_graphs_enabled(true);
            double us = 0;
            {
              OpAblation ablate(v.off);
              us = time_steps(runner, batch, kv, iters);
            }
            rows.push_back({dir, v.name, kv_name, b, ctx, us, bytes});
            std::printf("%-32s B=%-4lld ctx=%-6lld kv %-5s %-26s %9.1f us", dir.c_str(), static_cast<long long>(b),
                        static_cast<long long>(ctx), kv_name.c_str(), v.name.c_str(), us);
            if (v.name == "full") {
              full_us = us;
              std::printf("  %.0f GB/s, %.0f%% of the read ceiling", bytes / (us * 1e-6) * 1e-9,
                          100.0 * bytes / (us * 1e-6) / read_bw);
            } else {
              std::printf("  (%+.1f us vs full)", us - full_us);
            }
            std::printf("\n");
          }
          for (const auto& [k, value] : base_knobs()) cuda::set_knob(k, value);
        }
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::fprintf(f, "{\"card\": \"%s\", \"read_ceiling_gbs\": %.1f, \"dtype\": \"bf16\", \"rows\": [", prop.name,
                 read_bw * 1e-9);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f, "%s\n  {\"model\": \"%s\", \"variant\": \"%s\", \"kv_dtype\": \"%s\", \"batch\": %lld, \"ctx\": %lld, "
                      "\"step_us\": %.2f, \"bytes\": %.0f}",
                   i == 0 ? "" : ",", r.model.c_str(), r.variant.c_str(), r.kv_dtype.c_str(), static_cast<long long>(r.batch),
                   static_cast<long long>(r.ctx), r.us, r.bytes);
    }
    std::fprintf(f, "\n]}\n");
    std::fclose(f);
  }
  return 0;
}
