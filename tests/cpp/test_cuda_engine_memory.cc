// tests/cpp/test_cuda_engine_memory.cc: the Engine's memory plan on a real GPU (skips without
// one): a warmed-up decode loop (requests admitted mid-way, one finishing early) makes no driver
// allocations, over 50+ steps, as the allocator's counters prove; weights over the budget fail at
// construction with kOutOfMemory and the numbers; gpu_memory_utilization sizes the KV pool; an
// explicit KV size over the budget fails at construction; the plan's figures add up.
//
// Invariant checked: after construction, steps allocate nothing from the driver (every buffer a
// step uses was reserved at start-up or grown during the warm-up to a shape no smaller than the
// measured phase's).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "eli/engine.h"
#include "eli/error.h"
#include "runtime/device/device.h"
#include "runtime/engine/memory_plan.h"

namespace eli {
namespace {

class CudaEngineMemory : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

std::string model_dir(const char* name) { return std::string(ELI_TEST_DATA_DIR) + "/models/" + name; }

EngineConfig bf16_config() {
  EngineConfig c;
  c.model = model_dir("llama_bf16");
  c.device = "cuda";
  c.dtype = "bfloat16";
  c.block_size = 4;  // block tables grow every 4 tokens: the batch arrays change shape often
  c.max_num_seqs = 8;
  c.max_num_batched_tokens = 64;
  c.seed = 7;
  return c;
}

struct Req {
  int64_t prompt_len, max_tokens, add_at_step;
};

// Adds each request at its step, steps until all have ended; checks every request got exactly
// max_tokens tokens in range and ended with kLength. Returns the number of step() calls.
int64_t run_scenario(Engine& e, const std::vector<Req>& reqs, std::mt19937& rng) {
  const int64_t V = e.info().spec.vocab_size;
  std::uniform_int_distribution<int32_t> tok(3, static_cast<int32_t>(V - 1));
  SamplingParams p;
  p.temperature = 0.0;
  p.ignore_eos = true;
  std::map<int64_t, int64_t> want, got;
  std::map<int64_t, bool> ended;
  size_t next = 0;
  int64_t steps = 0;
  while (next < reqs.size() || e.has_unfinished()) {
    while (next < reqs.size() && reqs[next].add_at_step <= steps) {
      std::vector<int32_t> prompt(static_cast<size_t>(reqs[next].prompt_len));
      for (int32_t& t : prompt) t = tok(rng);
      p.max_tokens = reqs[next].max_tokens;
      const int64_t id = e.add_request(prompt, p);
      want[id] = reqs[next].max_tokens;
      ++next;
    }
    for (const TokenOutput& o : e.step()) {
      EXPECT_TRUE(o.token >= 0 && o.token < V) << "request " << o.request_id << " token " << o.token;
      ++got[o.request_id];
      if (o.finish != FinishReason::kNone) {
        EXPECT_EQ(o.finish, FinishReason::kLength) << o.error;
        ended[o.request_id] = true;
      }
    }
    ++steps;
    if (steps > 2000) {
      ADD_FAILURE() << "the scenario does not end";
      break;
    }
  }
  for (const auto& [id, n] : want) {
    EXPECT_EQ(got[id], n) << "request " << id;
    EXPECT_TRUE(ended[id]) << "request " << id;
  }
  return steps;
}

TEST_F(CudaEngineMemory, DecodeLoopMakesNoDriverAllocations) {
  Engine e(bf16_config());
  const EngineInfo& info = e.info();
  EXPECT_EQ(info.weight_dtype, "bf16");
  EXPECT_EQ(info.kv_cache_dtype, "bf16");  // "auto" with bf16 weights on CUDA
  const EngineMemoryInfo& mem = info.memory;
  EXPECT_EQ(mem.budget_bytes, static_cast<uint64_t>(std::floor(0.9 * static_cast<double>(mem.total_bytes))));
  EXPECT_GT(mem.weights_bytes, 0u);
  EXPECT_GT(mem.workspace_bytes, 0u);
  EXPECT_GT(mem.kv_bytes, 0u);
  EXPECT_GE(mem.headroom_bytes, kHeadroomFixedBytes);
  // A tiny model: the pool is capped by max_num_seqs full contexts (256 tokens = 64 blocks each).
  EXPECT_EQ(info.num_kv_blocks, 8 * 64);

  // Warm-up: the measured phase's schedule with prompts no shorter, so every buffer that grows
  // with the batch shape has reached its size.
  std::mt19937 rng(1234);
  const std::vector<Req> warm = {{21, 60, 0}, {15, 60, 0}, {9, 20, 0}, {13, 60, 10}, {19, 40, 25}};
  run_scenario(e, warm, rng);
  const MemoryStats before = e.memory_stats();
  EXPECT_GT(before.n_driver_allocs, 0u);
  EXPECT_LE(before.reserved_bytes, mem.budget_bytes - mem.headroom_bytes + kPoolSlackBytes);
  EXPECT_GE(before.reserved_bytes, mem.weights_bytes + mem.workspace_bytes + mem.kv_bytes);

  // Measured: three requests, one finishing after 20 tokens, two more admitted mid-way.
  const std::vector<Req> measured = {{19, 60, 0}, {13, 60, 0}, {7, 20, 0}, {11, 60, 10}, {17, 40, 25}};
  const EngineStats s0 = e.stats();
  const int64_t steps = run_scenario(e, measured, rng);
  const MemoryStats after = e.memory_stats();
  const EngineStats s1 = e.stats();
  EXPECT_GE(steps, 50);
  EXPECT_GE(s1.steps - s0.steps, 50);
  EXPECT_EQ(s1.generated_tokens - s0.generated_tokens, 60 + 60 + 20 + 60 + 40);
  EXPECT_EQ(after.n_driver_allocs, before.n_driver_allocs) << "the decode loop called the driver allocator";
  EXPECT_EQ(after.reserved_bytes, before.reserved_bytes);
  EXPECT_GT(after.n_allocs, 0u);
  EXPECT_EQ(s1.kv_blocks_free, s1.kv_blocks_total);
}

TEST_F(CudaEngineMemory, WeightsOverBudgetFailAtConstructionWithTheNumbers) {
  EngineConfig ok;
  ok.model = model_dir("llama_base");  // f32, ~650 KB of weights
  ok.device = "cuda";
  ok.dtype = "float32";
  ok.num_kv_blocks = 16;
  uint64_t weights = 0, total = 0;
  {
    Engine e(ok);
    weights = e.info().memory.weights_bytes;
    total = e.info().memory.total_bytes;
    EXPECT_EQ(e.info().kv_cache_dtype, "f32");
  }
  ASSERT_GT(weights, 0u);

  EngineConfig c = ok;
  c.gpu_memory_utilization = 1e-6;  // ~85 KB of an 80 GB card
  try {
    Engine e(c);
    FAIL() << "no error for weights over the budget";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::kOutOfMemory) << err.what();
    const std::string msg = err.what();
    const std::string want = "weights need " + format_bytes(weights) + ", the budget is " +
                             format_bytes(static_cast<uint64_t>(std::floor(1e-6 * static_cast<double>(total)))) +
                             " (1e-06 of " + format_bytes(total) + ")";
    EXPECT_NE(msg.find(want), std::string::npos) << "want '" << want << "' in: " << msg;
  }

  c = ok;
  c.gpu_memory_bytes = 1 << 20;  // the weights fit, the headroom does not
  try {
    Engine e(c);
    FAIL() << "no error for a budget without room for the KV cache";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::kOutOfMemory) << err.what();
    EXPECT_NE(std::string(err.what()).find("leave no room for the KV cache"), std::string::npos) << err.what();
  }

  c = ok;
  c.gpu_memory_bytes = uint64_t{1} << 30;
  c.num_kv_blocks = 10000000;  // ~276 GB of f32 KV
  try {
    Engine e(c);
    FAIL() << "no error for num_kv_blocks over the budget";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::kOutOfMemory) << err.what();
    EXPECT_NE(std::string(err.what()).find("num_kv_blocks 10000000"), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("1.00 GiB (gpu_memory_bytes)"), std::string::npos) << err.what();
  }

  c = ok;
  c.gpu_memory_utilization = 1.5;
  try {
    Engine e(c);
    FAIL() << "no error for gpu_memory_utilization 1.5";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::kInvalidArgument) << err.what();
  }
}

TEST_F(CudaEngineMemory, UtilizationSizesTheKvPool) {
  // Enough sequences that max_num_seqs full contexts (16384 x 256 tokens x 1728 B = 7.2 GB of f32
  // KV) never cap the pool: the budget does.
  EngineConfig c;
  c.model = model_dir("llama_base");
  c.device = "cuda";
  c.dtype = "float32";
  c.max_num_seqs = 16384;
  c.max_num_batched_tokens = 256;
  int64_t blocks[2] = {0, 0};
  uint64_t kv[2] = {0, 0}, budget[2] = {0, 0};
  const double fractions[2] = {0.02, 0.04};
  constexpr uint64_t kRounding = 64 * (uint64_t{2} << 20);  // generous: 2 MiB per allocator block
  for (int i = 0; i < 2; ++i) {
    c.gpu_memory_utilization = fractions[i];
    Engine e(c);
    const EngineMemoryInfo& m = e.info().memory;
    blocks[i] = e.info().num_kv_blocks;
    kv[i] = m.kv_bytes;
    budget[i] = m.budget_bytes;
    EXPECT_EQ(m.budget_bytes, static_cast<uint64_t>(std::floor(fractions[i] * static_cast<double>(m.total_bytes))));
    EXPECT_EQ(e.info().kv_cache_dtype, "f32");
    // The KV pool takes what the budget leaves past weights, workspaces and headroom: the
    // allocator now holds the budget less the headroom, less at most the KV tensors' rounding.
    EXPECT_LE(m.kv_bytes, m.budget_bytes - m.weights_bytes - m.workspace_bytes - m.headroom_bytes);
    const MemoryStats st = e.memory_stats();
    EXPECT_LE(st.reserved_bytes, m.budget_bytes - m.headroom_bytes);
    EXPECT_GE(st.reserved_bytes + kRounding, m.budget_bytes - m.headroom_bytes)
        << "reserved " << st.reserved_bytes << ", budget " << m.budget_bytes << ", headroom " << m.headroom_bytes;
    // The engine runs with it.
    SamplingParams p;
    p.max_tokens = 4;
    p.temperature = 0.0;
    e.add_request({1, 2, 3}, p);
    int64_t n = 0;
    while (e.has_unfinished()) n += static_cast<int64_t>(e.step().size());
    EXPECT_EQ(n, 4);
  }
  EXPECT_GT(blocks[1], blocks[0]);
  // Twice the budget: the pool grows by the budget's growth less the headroom's (2% of it).
  const double grown = static_cast<double>(kv[1]) - static_cast<double>(kv[0]);
  const double expect = 0.98 * (static_cast<double>(budget[1]) - static_cast<double>(budget[0]));
  EXPECT_NEAR(grown, expect, 2.0 * kRounding);
}

}  // namespace
}  // namespace eli
