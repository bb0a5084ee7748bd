// tests/cpp/test_parallel.cc: tensor and pipeline parallelism on the CPU (ranks as threads through
// the in-process communicator), through the public Engine API: for every tiny reference model,
// TP = 2, 3, 4, PP = 2, 3 and TP 2 x PP 2 give the greedy tokens of TP = 1 and logits within 1e-5
// of the row's scale, with continuous batching, prefix caching and preemption (a tiny KV pool),
// and TP 2 x PP 2 with asynchronous scheduling.
// Configurations a model cannot take (more stages than layers) must fail with a clear error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "eli/engine.h"
#include "eli/error.h"
#include "runtime/device/device.h"  // cuda_device_count

namespace eli {
namespace {

const std::vector<std::string> kModels = {
    "models/llama_base", "models/llama_mqa", "models/llama_bias", "models/llama_tied", "models/llama_bf16",
    "models/llama_f16", "models/llama_sharded", "models/llama_rope_dynamic", "models/llama_rope_linear",
    "models/llama_rope_llama3", "models/llama_rope_yarn", "models/mistral_sw_small", "models/mistral_sw_large",
    "models/qwen2", "models/qwen3", "models/phi3", "models/phi3_sw", "models/gemma3", "models/gemma3_gguf",
    "gguf/tiny_llama.gguf"};  // llama.cpp's Q/K row permutation, undone per rank

const std::vector<std::pair<int, int>> kLayouts = {{2, 1}, {3, 1}, {4, 1}, {1, 2}, {1, 3}, {2, 2}};

EngineConfig config_for(const std::string& model, int tp, int pp) {
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/" + model;
  c.dtype = "float32";
  c.n_threads = 2;
  c.block_size = 4;
  // A tiny pool: the concurrent requests below preempt each other. Models whose every layer has a
  // window of 6 release their blocks as they leave it (runtime/kv/kv_groups.h): a smaller one.
  c.num_kv_blocks = model.find("_sw_small") != std::string::npos || model.find("phi3_sw") != std::string::npos ? 7 : 14;
  c.max_num_seqs = 4;
  c.max_num_batched_tokens = 24;  // chunked prefills, mixed prefill + decode steps
  c.enable_prefix_caching = true;
  c.tensor_parallel_size = tp;
  c.pipeline_parallel_size = pp;
  c.seed = 1;
  return c;
}

struct RunResult {
  std::map<int64_t, std::vector<int32_t>> tokens;
  std::vector<float> scored;
  EngineStats stats;
  ModelSpec spec;
};

// Six concurrent greedy requests sharing an 8-token prefix (two blocks: prefix-cache hits), then a
// score() of one prompt plus its output.
RunResult run(const EngineConfig& c) {
  Engine e(c);
  const int64_t V = e.info().spec.vocab_size;
  SamplingParams p;
  p.max_tokens = 10;
  p.temperature = 0.0;
  p.ignore_eos = true;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 6; ++i) {
    std::vector<int32_t> prompt;
    for (int32_t t : {3, 14, 15, 92, 65, 35, 89, 79}) prompt.push_back(static_cast<int32_t>(t % V));
    for (int j = 0; j <= i; ++j) prompt.push_back(static_cast<int32_t>((7 * i + 13 * j + 1) % V));
    prompts.push_back(prompt);
  }
  RunResult r;
  r.spec = e.info().spec;
  std::map<int64_t, size_t> prompt_of;
  for (size_t i = 0; i < prompts.size(); ++i) prompt_of[e.add_request(prompts[i], p)] = i;
  while (e.has_unfinished()) {
    for (const TokenOutput& o : e.step()) {
      EXPECT_TRUE(o.error.empty()) << o.error;
      if (o.token >= 0) r.tokens[o.request_id].push_back(o.token);
    }
  }
  r.stats = e.stats();
  std::vector<int32_t> all = prompts[5];
  all.insert(all.end(), r.tokens.rbegin()->second.begin(), r.tokens.rbegin()->second.end());
  r.scored = e.score(all);
  return r;
}

// |got - want| <= rel x the row's largest |logit| + floor (a float32 rounding floor).
void expect_logits_close(const std::vector<float>& got, const std::vector<float>& want, int64_t V,
                         const std::string& what, float rel = 1e-5f, float floor = 1e-6f) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t row = 0; row < want.size() / static_cast<size_t>(V); ++row) {
    const float* w = &want[row * V];
    const float* g = &got[row * V];
    float scale = 0.0f;
    for (int64_t v = 0; v < V; ++v) scale = std::max(scale, std::fabs(w[v]));
    const float tol = rel * scale + floor;
    for (int64_t v = 0; v < V; ++v) {
      ASSERT_NEAR(g[v], w[v], tol) << what << " row " << row << " token " << v;
    }
  }
}

class ParallelParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ParallelParity, EveryLayoutMatchesOneRank) {
  const std::string model = GetParam();
  const RunResult ref = run(config_for(model, 1, 1));
  // The workload exercises what it claims to (on the reference; the parallel runs share the scheduler).
  EXPECT_GT(ref.stats.preemptions, 0) << model;
  EXPECT_GT(ref.stats.prefix_cache_hits, 0) << model;
  const ModelSpec& spec = ref.spec;
  for (auto [tp, pp] : kLayouts) {
    const std::string what = model + " tp " + std::to_string(tp) + " pp " + std::to_string(pp);
    if (pp > spec.n_layers || tp > spec.n_heads) {
      EXPECT_THROW(Engine(config_for(model, tp, pp)), Error) << what;
      continue;
    }
    RunResult got;
    try {
      got = run(config_for(model, tp, pp));
    } catch (const Error& e) {
      ADD_FAILURE() << what << ": " << e.what();
      continue;
    }
    EXPECT_EQ(got.tokens, ref.tokens) << what;
    EXPECT_EQ(got.stats.preemptions, ref.stats.preemptions) << what;
    expect_logits_close(got.scored, ref.scored, spec.vocab_size, what);
  }
  // Asynchronous scheduling (placeholders for tokens not yet sampled) over TP x PP.
  // Compared with one rank under the same scheduling (async and sync runs of one rank are the
  // scheduler's business, not parallelism's).
  if (spec.n_layers >= 2 && spec.n_heads >= 2) {
    EngineConfig one = config_for(model, 1, 1), par = config_for(model, 2, 2);
    one.async_scheduling = par.async_scheduling = 1;
    const RunResult want = run(one), got = run(par);
    EXPECT_EQ(got.tokens, want.tokens) << model << " async tp 2 pp 2";
    expect_logits_close(got.scored, want.scored, spec.vocab_size, model + " async tp 2 pp 2");
  }
}

// GPU ranks through the Engine (the GPU machine; skipped without a GPU): ranks sharing GPU 0
// (eli's peer communicator) on any GPU machine, and one GPU per rank (NCCL) where there are
// enough GPUs; f32 weights, CUDA graphs and asynchronous scheduling at their defaults. Greedy
// tokens equal one rank's on the same GPU; logits within 2e-4 of the row scale (the GPU's GEMMs
// may sum in another order for a sharded shape).
TEST(CudaParallelEngine, RanksMatchOneGpu) {
  const int n_gpus = cuda_device_count();
  if (n_gpus < 1) GTEST_SKIP() << "needs a GPU";
  for (const std::string model : {"models/llama_base", "models/qwen3", "models/phi3", "models/gemma3",
                                  "models/mistral_sw_small", "gguf/tiny_llama.gguf"}) {
    EngineConfig one = config_for(model, 1, 1);
    one.device = "cuda";
    const RunResult ref = run(one);
    for (auto [tp, pp] : std::vector<std::pair<int, int>>{{2, 1}, {1, 2}, {2, 2}, {3, 1}}) {
      if (pp > ref.spec.n_layers || tp > ref.spec.n_heads) continue;
      for (const bool shared : {true, false}) {
        if (!shared && n_gpus < tp * pp) continue;
        EngineConfig c = config_for(model, tp, pp);
        c.device = "cuda";
        for (int r = 0; r < tp * pp; ++r) c.devices += (r ? ",cuda:" : "cuda:") + std::to_string(shared ? 0 : r);
        const std::string what = model + " tp " + std::to_string(tp) + " pp " + std::to_string(pp) + " on " + c.devices;
        RunResult got;
        try {
          got = run(c);
        } catch (const Error& e) {
          ADD_FAILURE() << what << ": " << e.what();
          continue;
        }
        EXPECT_EQ(got.tokens, ref.tokens) << what;
        expect_logits_close(got.scored, ref.scored, ref.spec.vocab_size, what, 2e-4f, 1e-5f);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TinyModels, ParallelParity, ::testing::ValuesIn(kModels),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           std::string n = i.param;
                           for (char& ch : n) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace eli
