// tests/cpp/test_engine_sampling.cc: seeded sampling through the whole CPU engine (tiny f32 model):
// a seeded request's tokens are reproducible and do not depend on the rest of the batch, the
// order requests arrive in, chunked prefill, asynchronous scheduling or the engine seed; an
// unseeded request is reproducible under a fixed engine seed; and every sampled token is the host
// reference Sampler's draw (seed, output index) on the request's own logits.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "eli/engine.h"
#include "runtime/runner/sampler.h"

namespace eli {
namespace {

EngineConfig tiny_config() {
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_base";
  c.dtype = "float32";
  c.n_threads = 2;
  c.num_kv_blocks = 128;
  c.block_size = 4;
  c.enable_prefix_caching = false;
  return c;
}

const std::vector<int32_t> kPrompt = {5, 17, 42, 9, 100, 3};

// The request under test: every filter, a penalty, a seed.
SamplingParams seeded_params() {
  SamplingParams p;
  p.max_tokens = 24;
  p.temperature = 0.9;
  p.top_k = 40;
  p.top_p = 0.9;
  p.min_p = 0.02;
  p.presence_penalty = 0.2;
  p.seed = 1234;
  p.has_seed = true;
  p.ignore_eos = true;
  p.logprobs = 1;
  return p;
}

// Requests that share the batch with it.
std::vector<std::pair<std::vector<int32_t>, SamplingParams>> neighbours() {
  std::vector<std::pair<std::vector<int32_t>, SamplingParams>> out;
  for (int i = 0; i < 5; ++i) {
    SamplingParams p;
    p.max_tokens = 10 + 7 * i;
    p.ignore_eos = true;
    p.temperature = i == 0 ? 0.0 : 0.5 + 0.3 * i;
    p.top_p = i == 2 ? 0.8 : 1.0;
    p.repetition_penalty = i == 3 ? 1.3 : 1.0;
    if (i == 4) {
      p.has_seed = true;
      p.seed = 1234;  // the same seed, another prompt
    }
    std::vector<int32_t> prompt;
    for (int j = 0; j < 3 + 5 * i; ++j) prompt.push_back((7 * j + 31 * i + 1) % 200);
    out.emplace_back(prompt, p);
  }
  return out;
}

// Runs the engine to the end; returns each request's tokens.
std::map<int64_t, std::vector<int32_t>> run_all(Engine& e) {
  std::map<int64_t, std::vector<int32_t>> tokens;
  while (e.has_unfinished()) {
    for (const TokenOutput& o : e.step()) {
      EXPECT_TRUE(o.error.empty()) << o.error;
      if (o.token >= 0) tokens[o.request_id].push_back(o.token);
    }
  }
  return tokens;
}

// The seeded request's tokens with `n_before` neighbours added before it and the rest after.
std::vector<int32_t> seeded_tokens(const EngineConfig& config, int n_before) {
  Engine e(config);
  const auto others = neighbours();
  for (int i = 0; i < n_before; ++i) e.add_request(others[i].first, others[i].second);
  const int64_t id = e.add_request(kPrompt, seeded_params());
  for (size_t i = static_cast<size_t>(n_before); i < others.size(); ++i) e.add_request(others[i].first, others[i].second);
  auto all = run_all(e);
  EXPECT_EQ(all[id].size(), 24u);
  return all[id];
}

TEST(EngineSampling, SeededRequestIgnoresBatchOrderSchedulingAndEngineSeed) {
  const EngineConfig base = tiny_config();
  const std::vector<int32_t> alone = seeded_tokens(base, 0);  // neighbours after it
  EXPECT_EQ(seeded_tokens(base, 0), alone) << "the same run twice";
  EngineConfig solo = base;
  {
    Engine e(solo);
    const int64_t id = e.add_request(kPrompt, seeded_params());
    EXPECT_EQ(run_all(e)[id], alone) << "alone in the engine";
  }
  EXPECT_EQ(seeded_tokens(base, 5), alone) << "after every neighbour";
  EngineConfig chunked = base;
  chunked.max_num_batched_tokens = 7;
  EXPECT_EQ(seeded_tokens(chunked, 2), alone) << "chunked prefill";
  EngineConfig narrow = base;
  narrow.max_num_seqs = 2;
  EXPECT_EQ(seeded_tokens(narrow, 3), alone) << "two sequences per step";
  EngineConfig async = base;
  async.async_scheduling = 1;
  EXPECT_EQ(seeded_tokens(async, 1), alone) << "asynchronous scheduling";
  EngineConfig seeded_engine = base;
  seeded_engine.seed = 99;
  EXPECT_EQ(seeded_tokens(seeded_engine, 4), alone) << "another engine seed";
  // Not a constant sequence: the draws vary with the output index.
  std::map<int32_t, int> distinct;
  for (int32_t t : alone) ++distinct[t];
  EXPECT_GE(distinct.size(), 4u);
}

TEST(EngineSampling, UnseededRequestsFollowTheEngineSeed) {
  EngineConfig c = tiny_config();
  c.seed = 4242;
  SamplingParams p;
  p.max_tokens = 16;
  p.temperature = 1.2;
  p.ignore_eos = true;
  auto run = [&](const EngineConfig& config) {
    Engine e(config);
    const int64_t a = e.add_request(kPrompt, p);
    const int64_t b = e.add_request({1, 2, 3}, p);
    auto all = run_all(e);
    return std::make_pair(all[a], all[b]);
  };
  const auto first = run(c);
  EXPECT_EQ(run(c), first);
  EXPECT_NE(first.first, first.second);
  c.seed = 4243;
  EXPECT_NE(run(c).first, first.first);
}

// The engine's draw k of a request is the reference's draw (seed, k) on that request's logits.
TEST(EngineSampling, TokensAreTheReferenceDrawsOnTheRequestsLogits) {
  Engine e(tiny_config());
  const SamplingParams p = seeded_params();
  const int64_t id = e.add_request(kPrompt, p);
  const std::vector<int32_t> got = run_all(e)[id];
  ASSERT_EQ(got.size(), 24u);
  std::vector<int32_t> all = kPrompt;
  all.insert(all.end(), got.begin(), got.end());
  const std::vector<float> logits = e.score(all);
  const int64_t V = e.info().spec.vocab_size;
  SequenceSamplingState state(p, kPrompt, /*fallback_seed=*/0);
  Sampler reference;
  for (size_t k = 0; k < got.size(); ++k) {
    const float* row = &logits[(kPrompt.size() - 1 + k) * static_cast<size_t>(V)];
    EXPECT_EQ(reference.sample(row, V, p, state).token, got[k]) << "output " << k;
    state.append_output(got[k]);
  }
}

}  // namespace
}  // namespace eli
