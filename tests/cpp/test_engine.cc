// tests/cpp/test_engine.cc: the C++ embedding API (include/eli/engine.h) without Python: load a
// tiny checkpoint, generate greedily, check consistency with score(), admission errors, abort.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "eli/engine.h"
#include "eli/error.h"

namespace eli {
namespace {

EngineConfig tiny_config() {
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_base";
  c.dtype = "float32";
  c.n_threads = 2;
  c.num_kv_blocks = 64;
  c.block_size = 4;
  return c;
}

std::vector<TokenOutput> run_to_end(Engine& e) {
  std::vector<TokenOutput> all;
  while (e.has_unfinished()) {
    for (auto& o : e.step()) all.push_back(o);
  }
  return all;
}

TEST(EngineApi, GreedyTokensAreArgmaxOfScore) {
  Engine e(tiny_config());
  const int64_t V = e.info().spec.vocab_size;
  SamplingParams p;
  p.max_tokens = 8;
  p.temperature = 0.0;
  p.ignore_eos = true;
  std::vector<int32_t> prompt = {5, 17, 42, 9};
  int64_t id = e.add_request(prompt, p);
  std::vector<int32_t> generated;
  FinishReason reason = FinishReason::kNone;
  for (const TokenOutput& o : run_to_end(e)) {
    ASSERT_EQ(o.request_id, id);
    generated.push_back(o.token);
    if (o.finish != FinishReason::kNone) reason = o.finish;
  }
  ASSERT_EQ(generated.size(), 8u);
  EXPECT_EQ(reason, FinishReason::kLength);
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), generated.begin(), generated.end());
  std::vector<float> logits = e.score(all);
  for (size_t i = 0; i < generated.size(); ++i) {
    const float* row = &logits[(prompt.size() - 1 + i) * V];
    EXPECT_EQ(std::max_element(row, row + V) - row, generated[i]) << "step " << i;
  }
  EngineStats s = e.stats();
  EXPECT_EQ(s.kv_blocks_free, s.kv_blocks_total);
}

TEST(EngineApi, AdmissionRejectsWithNumbers) {
  Engine e(tiny_config());
  SamplingParams p;
  p.max_tokens = 4;
  try {
    e.add_request({1, 2, static_cast<int32_t>(e.info().spec.vocab_size)}, p);
    FAIL() << "out-of-vocabulary id accepted";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(err.what()).find("outside the vocabulary"), std::string::npos);
  }
  p.max_tokens = 300;  // 64 blocks of 4 tokens = 256 slots
  EXPECT_THROW(e.add_request({1, 2, 3}, p), Error);
  EXPECT_FALSE(e.has_unfinished());
}

TEST(EngineApi, AbortFreesBlocksAndReportsOnce) {
  Engine e(tiny_config());
  SamplingParams p;
  p.max_tokens = 50;
  p.temperature = 0.0;
  p.ignore_eos = true;
  int64_t a = e.add_request({1, 2, 3, 4, 5}, p);
  int64_t b = e.add_request({6, 7, 8}, p);
  e.step();
  e.step();
  e.abort_request(a);
  EXPECT_GT(e.stats().kv_blocks_total - e.stats().kv_blocks_free, 0);
  int aborted = 0;
  for (const TokenOutput& o : run_to_end(e)) {
    if (o.request_id == a) {
      EXPECT_EQ(o.finish, FinishReason::kAbort);
      ++aborted;
    }
  }
  EXPECT_EQ(aborted, 1);
  e.abort_request(b);  // already finished: a no-op
  EXPECT_FALSE(e.has_unfinished());
  EXPECT_EQ(e.stats().kv_blocks_free, e.stats().kv_blocks_total);
}

TEST(EngineApi, MissingModelIsModelLoadError) {
  EngineConfig c = tiny_config();
  c.model = "/nonexistent/model";
  try {
    Engine e(c);
    FAIL();
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::kModelLoad);
  }
}

}  // namespace
}  // namespace eli

namespace eli {
namespace {

// The default memory plan (no explicit KV size) on the CPU device: the pool is sized from the
// available memory and the model's context, and the engine runs.
TEST(EngineApi, DefaultKvSizingRuns) {
  EngineConfig c = tiny_config();
  c.num_kv_blocks = 0;
  Engine e(c);
  EXPECT_GT(e.info().num_kv_blocks, 0);
  SamplingParams p;
  p.max_tokens = 3;
  p.temperature = 0.0;
  e.add_request({1, 2, 3}, p);
  EXPECT_EQ(run_to_end(e).size(), 3u);
}

}  // namespace
}  // namespace eli
