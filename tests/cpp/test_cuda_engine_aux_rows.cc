// tests/cpp/test_cuda_engine_aux_rows.cc: prompt logprobs and embeddings (the engine's aux rows,
// runtime/engine/engine.cc) on a real GPU (skips without one), f32 weights, asynchronous
// scheduling and CUDA graphs on (the defaults there): the prompt logprobs of a prompt longer than
// one step's aux-row budget, batched with plain decodes, and last / mean pooled embeddings equal
// the CPU engine's; a decode batched with them runs to its end; blocks come back.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "eli/engine.h"
#include "eli/error.h"
#include "runtime/device/device.h"

namespace eli {
namespace {

class CudaEngineAuxRows : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

EngineConfig config(const char* device) {
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_base";
  c.dtype = "float32";
  c.device = device;
  c.num_kv_blocks = 160;
  c.block_size = 4;
  c.max_num_batched_tokens = 64;
  if (std::string(device) == "cuda") c.gpu_memory_bytes = uint64_t{1} << 30;
  return c;
}

struct Results {
  std::vector<std::vector<std::pair<int32_t, float>>> prompt_lps;
  std::vector<float> last, mean;
  std::vector<int32_t> decoded;
};

Results run(const char* device) {
  Engine e(config(device));
  std::vector<int32_t> prompt;
  for (int i = 0; i < 180; ++i) prompt.push_back(3 + (i * 37) % 250);
  SamplingParams lp;
  lp.max_tokens = 2;
  lp.temperature = 0.0;
  lp.ignore_eos = true;
  lp.prompt_logprobs = 3;
  SamplingParams dec = lp;
  dec.prompt_logprobs = -1;
  dec.max_tokens = 40;
  SamplingParams last, mean;
  last.max_tokens = mean.max_tokens = 1;
  last.pooling = kPoolingLast;
  mean.pooling = kPoolingMean;
  const int64_t d = e.add_request({5, 6, 7}, dec);
  std::map<int64_t, std::vector<TokenOutput>> outs;
  for (int i = 0; i < 5; ++i) {  // the decode runs (and its graph warms up) first
    for (TokenOutput& o : e.step()) outs[o.request_id].push_back(std::move(o));
  }
  const int64_t a = e.add_request(prompt, lp);
  const int64_t b = e.add_request(prompt, last);
  const int64_t c = e.add_request(prompt, mean);
  while (e.has_unfinished()) {
    for (TokenOutput& o : e.step()) outs[o.request_id].push_back(std::move(o));
  }
  EngineStats s = e.stats();
  EXPECT_EQ(s.kv_blocks_free, s.kv_blocks_total) << device;
  Results r;
  EXPECT_FALSE(outs[a].empty());
  if (!outs[a].empty()) r.prompt_lps = outs[a][0].prompt_logprobs;
  EXPECT_EQ(outs[b].size(), 1u);
  EXPECT_EQ(outs[c].size(), 1u);
  if (!outs[b].empty()) r.last = outs[b][0].embedding;
  if (!outs[c].empty()) r.mean = outs[c][0].embedding;
  for (const TokenOutput& o : outs[d]) r.decoded.push_back(o.token);
  return r;
}

TEST_F(CudaEngineAuxRows, MatchesCpu) {
  const Results want = run("cpu"), got = run("cuda");
  ASSERT_EQ(got.prompt_lps.size(), want.prompt_lps.size());
  ASSERT_EQ(got.prompt_lps.size(), 179u);
  for (size_t p = 0; p < want.prompt_lps.size(); ++p) {
    ASSERT_EQ(got.prompt_lps[p].size(), 4u);
    EXPECT_EQ(got.prompt_lps[p][0].first, want.prompt_lps[p][0].first);
    EXPECT_NEAR(got.prompt_lps[p][0].second, want.prompt_lps[p][0].second, 1e-3) << "position " << p + 1;
  }
  ASSERT_EQ(got.last.size(), want.last.size());
  ASSERT_EQ(got.mean.size(), want.mean.size());
  for (size_t i = 0; i < want.last.size(); ++i) {
    EXPECT_NEAR(got.last[i], want.last[i], 1e-3 * (1 + std::fabs(want.last[i])));
    EXPECT_NEAR(got.mean[i], want.mean[i], 1e-3 * (1 + std::fabs(want.mean[i])));
  }
  EXPECT_EQ(got.decoded.size(), 40u);  // the decode batched with them ran to its length
}

}  // namespace
}  // namespace eli
