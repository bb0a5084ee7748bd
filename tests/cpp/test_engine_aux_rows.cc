// tests/cpp/test_engine_aux_rows.cc: the engine's aux rows (runtime/engine/engine.cc): prompt
// logprobs against a log-softmax of score()'s full-sequence logits (one forward per chunk of its
// own), also for prompts longer than the per-step aux-row budget, batched with other requests and
// in small prefill chunks, with asynchronous scheduling; at most 128 aux rows per step (a longer
// prompt takes more steps); never taken from the prefix cache; embedding requests (last / mean
// pooling) equal whatever chunking and batching they run in, sample nothing, end after their
// prompt and free their blocks; the validation of the new fields. The transformers references of the pooled states are checked in
// tests/python/test_embeddings.py.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "eli/engine.h"
#include "eli/error.h"

namespace eli {
namespace {

EngineConfig config(int64_t max_batched, int async_scheduling = 0) {
  EngineConfig c;
  c.async_scheduling = async_scheduling;  // 1: the lookahead path (placeholders) on the CPU too
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_base";
  c.dtype = "float32";
  c.n_threads = 2;
  c.num_kv_blocks = 160;
  c.block_size = 4;
  c.max_num_batched_tokens = max_batched;
  return c;
}

std::vector<int32_t> prompt_of(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(3 + (i * 37 + salt * 11) % 250);
  return p;
}

std::map<int64_t, std::vector<TokenOutput>> run(Engine& e) {
  std::map<int64_t, std::vector<TokenOutput>> by_id;
  while (e.has_unfinished()) {
    for (TokenOutput& o : e.step()) by_id[o.request_id].push_back(std::move(o));
  }
  return by_id;
}

// log-softmax of row r of (n, V) logits, in double.
double logprob(const std::vector<float>& logits, int64_t V, int64_t r, int32_t token) {
  const float* row = &logits[static_cast<size_t>(r * V)];
  double mx = row[0], sum = 0.0;
  for (int64_t v = 0; v < V; ++v) mx = std::max<double>(mx, row[v]);
  for (int64_t v = 0; v < V; ++v) sum += std::exp(row[v] - mx);
  return row[token] - mx - std::log(sum);
}

void expect_prompt_logprobs(Engine& e, const std::vector<int32_t>& prompt, const TokenOutput& first, int k) {
  const int64_t V = e.info().spec.vocab_size;
  const std::vector<float> logits = e.score(prompt);
  ASSERT_EQ(first.prompt_logprobs.size(), prompt.size() - 1);
  for (size_t p = 1; p < prompt.size(); ++p) {
    const auto& entry = first.prompt_logprobs[p - 1];
    ASSERT_EQ(entry.size(), static_cast<size_t>(k) + 1) << "position " << p;
    EXPECT_EQ(entry[0].first, prompt[p]);
    EXPECT_NEAR(entry[0].second, logprob(logits, V, static_cast<int64_t>(p) - 1, prompt[p]), 1e-4) << "position " << p;
    for (int j = 1; j <= k; ++j) {  // the top k, best first
      EXPECT_NEAR(entry[j].second, logprob(logits, V, static_cast<int64_t>(p) - 1, entry[j].first), 1e-4);
      if (j > 1) EXPECT_GE(entry[j - 1].second, entry[j].second);
    }
  }
}

TEST(EngineAuxRows, PromptLogprobsMatchScoreAcrossChunksAndBudget) {
  for (int64_t max_batched : {256, 24, 25}) {
    Engine e(config(max_batched, max_batched == 25 ? 1 : 0));
    SamplingParams lp;
    lp.max_tokens = 3;
    lp.temperature = 0.0;
    lp.ignore_eos = true;
    lp.prompt_logprobs = 2;
    SamplingParams plain = lp;
    plain.prompt_logprobs = -1;
    // 200 prompt rows > the 128 aux rows of a step: the engine splits the prompt itself.
    const std::vector<int32_t> long_prompt = prompt_of(200, 1), short_prompt = prompt_of(9, 2);
    const int64_t a = e.add_request(long_prompt, lp);
    const int64_t b = e.add_request(prompt_of(30, 3), plain);
    const int64_t c = e.add_request(short_prompt, lp);
    auto outs = run(e);
    for (int64_t id : {a, b, c}) {
      ASSERT_EQ(outs[id].size(), 3u) << "request " << id;
      EXPECT_EQ(outs[id].back().finish, FinishReason::kLength);
      for (size_t i = 1; i < outs[id].size(); ++i) EXPECT_TRUE(outs[id][i].prompt_logprobs.empty());
    }
    EXPECT_TRUE(outs[b][0].prompt_logprobs.empty());
    expect_prompt_logprobs(e, long_prompt, outs[a][0], 2);
    expect_prompt_logprobs(e, short_prompt, outs[c][0], 2);
    EngineStats s = e.stats();
    EXPECT_EQ(s.kv_blocks_free, s.kv_blocks_total);
  }
}

TEST(EngineAuxRows, AStepHoldsAtMost128AuxRows) {
  // 199 prompt rows fit one step's token budget but not its 128 aux rows: two prefill steps (the
  // first token comes from the second), then one decode step.
  Engine e(config(256));
  SamplingParams p;
  p.max_tokens = 2;
  p.ignore_eos = true;
  p.prompt_logprobs = 0;
  const int64_t id = e.add_request(prompt_of(200, 6), p);
  auto outs = run(e);
  ASSERT_EQ(outs[id].size(), 2u);
  EXPECT_EQ(outs[id][0].prompt_logprobs.size(), 199u);
  EXPECT_EQ(e.stats().steps, 3);
  // without prompt logprobs the same prompt is one prefill step
  Engine plain(config(256));
  p.prompt_logprobs = -1;
  plain.add_request(prompt_of(200, 6), p);
  run(plain);
  EXPECT_EQ(plain.stats().steps, 2);
}

TEST(EngineAuxRows, PromptLogprobsAreComputedNotTakenFromThePrefixCache) {
  EngineConfig c = config(256);
  c.enable_prefix_caching = true;
  Engine e(c);
  const std::vector<int32_t> prompt = prompt_of(40, 7);
  SamplingParams p;
  p.max_tokens = 1;
  e.add_request(prompt, p);  // fills the cache with the prompt's blocks
  run(e);
  const int64_t hits = e.stats().prefix_cache_hits;
  p.prompt_logprobs = 1;
  const int64_t id = e.add_request(prompt, p);
  auto outs = run(e);
  EXPECT_EQ(e.stats().prefix_cache_hits, hits);
  expect_prompt_logprobs(e, prompt, outs[id][0], 1);
}

TEST(EngineAuxRows, PromptLogprobsOfAOneTokenPromptAreEmpty) {
  Engine e(config(256));
  SamplingParams p;
  p.max_tokens = 2;
  p.prompt_logprobs = 0;
  const int64_t id = e.add_request({7}, p);
  auto outs = run(e);
  ASSERT_EQ(outs[id].size(), 2u);
  EXPECT_TRUE(outs[id][0].prompt_logprobs.empty());
}

std::vector<float> embed(Engine& e, const std::vector<int32_t>& prompt, int pooling, std::vector<int32_t> others = {}) {
  SamplingParams p;
  p.max_tokens = 1;
  p.pooling = pooling;
  const int64_t id = e.add_request(prompt, p);
  if (!others.empty()) {
    SamplingParams g;
    g.max_tokens = 4;
    e.add_request(others, g);
  }
  auto outs = run(e);
  EXPECT_EQ(outs[id].size(), 1u);
  const TokenOutput& o = outs[id].front();
  EXPECT_EQ(o.token, -1);
  EXPECT_EQ(o.finish, FinishReason::kStop);
  EXPECT_EQ(static_cast<int64_t>(o.embedding.size()), e.info().spec.hidden_size);
  EngineStats s = e.stats();
  EXPECT_EQ(s.kv_blocks_free, s.kv_blocks_total);
  return o.embedding;
}

TEST(EngineAuxRows, EmbeddingsDoNotDependOnChunkingOrBatching) {
  Engine whole(config(256)), chunked(config(8, 1));
  const std::vector<int32_t> prompt = prompt_of(150, 4);  // mean pooling: 150 rows > one step's budget
  for (int pooling : {kPoolingLast, kPoolingMean}) {
    const std::vector<float> ref = embed(whole, prompt, pooling);
    const std::vector<float> got = embed(chunked, prompt, pooling, prompt_of(20, 5));
    ASSERT_EQ(ref.size(), got.size());
    for (size_t d = 0; d < ref.size(); ++d) EXPECT_NEAR(got[d], ref[d], 1e-4 * (1.0 + std::fabs(ref[d]))) << d;
  }
  // a 1-token prompt pools the same both ways
  const std::vector<float> l = embed(whole, {9}, kPoolingLast), m = embed(whole, {9}, kPoolingMean);
  for (size_t d = 0; d < l.size(); ++d) EXPECT_NEAR(l[d], m[d], 1e-6);
  EXPECT_EQ(whole.stats().generated_tokens, 0);  // embeddings sample nothing (no other request ran here)
}

TEST(EngineAuxRows, Validation) {
  Engine e(config(256));
  SamplingParams p;
  p.prompt_logprobs = 21;
  EXPECT_THROW(e.add_request({5, 6}, p), Error);
  p.prompt_logprobs = -1;
  p.pooling = 3;
  EXPECT_THROW(e.add_request({5, 6}, p), Error);
  p.pooling = kPoolingMean;
  p.logprobs = 0;
  EXPECT_THROW(e.add_request({5, 6}, p), Error);
}

}  // namespace
}  // namespace eli
