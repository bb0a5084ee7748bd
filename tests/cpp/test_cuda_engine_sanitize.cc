// tests/cpp/test_cuda_engine_sanitize.cc: a whole-engine workload for compute-sanitizer
// (bench/device_sanitize.sh runs it under memcheck, racecheck and initcheck): the tiny bf16
// checkpoint on CUDA with a KV pool of 14 blocks of 16 tokens, so that
//   1. two ~200-step greedy decodes run one after the other in the same blocks (recycled),
//   2. the first prompt runs again after the second dirtied those blocks: identical tokens
//      (a stale-KV read or an uninitialized one would show here, and under initcheck),
//   3. two concurrent requests that do not both fit force preemption, recompute and block reuse
//      in the middle of decoding.
// Checks: exact lengths and finish reasons, token ids in the vocabulary, preemptions > 0, every
// block free at the end. Small on purpose: sanitizers slow kernels 10-100x. Skipped without a GPU.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "eli/engine.h"
#include "eli/error.h"
#include "runtime/device/device.h"

namespace eli {
namespace {

SamplingParams greedy(int64_t n) {
  SamplingParams p;
  p.max_tokens = n;
  p.temperature = 0.0;
  p.ignore_eos = true;
  return p;
}

std::vector<int32_t> prompt_of(int seed, int len) {
  std::vector<int32_t> p;
  for (int j = 0; j < len; ++j) p.push_back(static_cast<int32_t>(3 + (seed * 41 + j * 17) % 250));
  return p;
}

// Runs the given requests concurrently to their end; tokens and finish reason per request index.
std::vector<std::pair<std::vector<int32_t>, FinishReason>> run(Engine& e, const std::vector<std::vector<int32_t>>& prompts,
                                                              int64_t max_tokens) {
  std::map<int64_t, size_t> index;
  for (size_t i = 0; i < prompts.size(); ++i) index[e.add_request(prompts[i], greedy(max_tokens))] = i;
  std::vector<std::pair<std::vector<int32_t>, FinishReason>> out(prompts.size());
  int steps = 0;
  while (e.has_unfinished() && ++steps < 10000) {
    for (const TokenOutput& o : e.step()) {
      auto& r = out[index.at(o.request_id)];
      EXPECT_NE(o.finish, FinishReason::kError) << o.error;
      if (o.token >= 0) r.first.push_back(o.token);
      if (o.finish != FinishReason::kNone) r.second = o.finish;
    }
  }
  EXPECT_FALSE(e.has_unfinished());
  return out;
}

TEST(CudaEngineSanitize, DecodeRecyclesBlocks) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_bf16";
  c.device = "cuda";
  c.dtype = "bfloat16";
  c.block_size = 16;
  c.num_kv_blocks = 14;  // 224 tokens: one 8 + 200 request fits (13 blocks), two 8 + 110 do not (16)
  c.max_num_seqs = 4;
  c.max_num_batched_tokens = 64;  // the recompute after a preemption runs in chunks
  c.seed = 1;
  // An absolute budget: the sanitizer script runs several tools side by side on one GPU, where
  // 90% of the card is not free for each of them.
  c.gpu_memory_bytes = uint64_t{1} << 30;
  Engine e(c);
  const int64_t V = e.info().spec.vocab_size;
  ASSERT_EQ(e.info().num_kv_blocks, 14);
  const std::vector<int32_t> a = prompt_of(1, 8), b = prompt_of(2, 8);

  auto first = run(e, {a}, 200);
  auto second = run(e, {b}, 200);
  auto again = run(e, {a}, 200);
  for (const auto* r : {&first[0], &second[0], &again[0]}) {
    ASSERT_EQ(r->first.size(), 200u);
    EXPECT_EQ(r->second, FinishReason::kLength);
    for (int32_t t : r->first) ASSERT_TRUE(t >= 0 && t < V) << t;
  }
  EXPECT_EQ(again[0].first, first[0].first) << "the same prompt in recycled blocks gave other tokens";
  EngineStats s = e.stats();
  EXPECT_EQ(s.preemptions, 0);
  EXPECT_EQ(s.kv_blocks_free, s.kv_blocks_total);

  auto pair = run(e, {prompt_of(3, 8), prompt_of(4, 8)}, 110);
  for (const auto& r : pair) {
    EXPECT_EQ(r.first.size(), 110u);
    EXPECT_EQ(r.second, FinishReason::kLength);
    for (int32_t t : r.first) ASSERT_TRUE(t >= 0 && t < V) << t;
  }
  s = e.stats();
  EXPECT_GT(s.preemptions, 0) << "the pool was meant to be too small for both";
  EXPECT_EQ(s.kv_blocks_free, s.kv_blocks_total);
  EXPECT_EQ(s.num_running + s.num_waiting, 0);
}

}  // namespace
}  // namespace eli
