// tests/cpp/test_kv_groups.cc: KV groups (runtime/kv/kv_groups.h): grouping layers by window, the
// scheduler releasing a windowed group's blocks as sequences advance, prefix-cache hits that need
// group 1's window blocks, the memory plan's group sizes, and the engine on Gemma 3's interleaved
// sliding / global layers (tokens equal with and without the freeing; the window pool stays small).
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>

#include "eli/engine.h"
#include "runtime/engine/scheduler.h"
#include "runtime/kv/block_pool.h"
#include "runtime/kv/kv_groups.h"

namespace eli {
namespace {

TEST(KvGroups, GroupsFollowTheWindows) {
  KvGroups full = kv_groups_for_windows({0, 0, 0});
  EXPECT_EQ(full.n_groups(), 1);
  EXPECT_EQ(full.window[0], 0);
  KvGroups all = kv_groups_for_windows({4, 6, 4});
  EXPECT_EQ(all.n_groups(), 1);
  EXPECT_EQ(all.window[0], 6);  // the largest window keeps every block any layer reads
  KvGroups mixed = kv_groups_for_windows({6, 6, 0, 6, 0});
  ASSERT_EQ(mixed.n_groups(), 2);
  EXPECT_EQ(mixed.window[0], 0);
  EXPECT_EQ(mixed.window[1], 6);
  EXPECT_EQ(mixed.layer_group, (std::vector<int32_t>{1, 1, 0, 1, 0}));
  EXPECT_EQ(mixed.n_layers_in(1), 3);
}

TEST(KvGroups, DeadBlocksAreOutOfEveryFutureWindow) {
  KvGroups g = kv_groups_for_windows({6});
  // Next query at p reads (p - 6, p]: with blocks of 2, block j is dead once 2j + 1 < p - 5.
  EXPECT_EQ(g.dead_blocks(0, 5, 2), 0);
  EXPECT_EQ(g.dead_blocks(0, 6, 2), 0);   // reads 1..6: block 0 (0, 1) still has position 1
  EXPECT_EQ(g.dead_blocks(0, 7, 2), 1);   // reads 2..7
  EXPECT_EQ(g.dead_blocks(0, 20, 2), 7);  // reads 15..20: blocks 0..6 hold 0..13
  EXPECT_EQ(kv_groups_for_windows({0}).dead_blocks(0, 1000, 2), 0);
}

std::unique_ptr<Sequence> make_seq(int64_t id, std::vector<int32_t> tokens) {
  auto s = std::make_unique<Sequence>();
  s->id = id;
  s->tokens = std::move(tokens);
  s->prompt_len = static_cast<int64_t>(s->tokens.size());
  return s;
}

std::vector<int32_t> iota_tokens(int n, int start = 1) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = start + i;
  return t;
}

// Runs one step as the engine does: schedule, compute, register full blocks, append a token to
// every sequence that sampled.
std::vector<ScheduledSeq> step(Scheduler& sched, int32_t next_token) {
  std::vector<ScheduledSeq> out = sched.schedule();
  for (ScheduledSeq& s : out) {
    s.seq->num_computed += s.n_new;
    sched.cache_full_blocks(s.seq);
    if (s.sample) s.seq->tokens.push_back(next_token);
  }
  return out;
}

int64_t held(const Sequence& s, int g) { return static_cast<int64_t>(s.table(g).size()) - s.n_dropped[g]; }

SchedulerConfig two_group_config(int64_t window, bool caching) {
  SchedulerConfig cfg;
  cfg.block_size = 2;
  cfg.max_num_batched_tokens = 8;
  cfg.enable_prefix_caching = caching;
  cfg.kv_groups = kv_groups_for_windows({window, 0, window});
  return cfg;
}

TEST(KvGroupsScheduler, WindowedGroupHoldsOnlyItsWindow) {
  for (bool caching : {false, true}) {
    BlockPool pool0(64), pool1(64, true);
    Scheduler sched(two_group_config(5, caching), pool0, &pool1);
    auto s = make_seq(0, iota_tokens(11));
    sched.add(s.get());
    for (int i = 0; i < 40; ++i) {
      step(sched, 7);
      // Group 0 (full attention) holds every block; group 1 the blocks of (num_computed - 5, ...]
      // plus the one being written, at most a step behind while caching waits for registration.
      EXPECT_EQ(held(*s, 0), sched.blocks_for(s->num_computed));
      EXPECT_EQ(s->blocks.size(), s->blocks1.size());
      EXPECT_LE(held(*s, 1), 5 / 2 + 3) << "step " << i;
      EXPECT_EQ(pool1.n_used(), held(*s, 1));
      pool0.check_invariants();
      pool1.check_invariants();
    }
    EXPECT_GT(s->n_dropped[1], 10);
    EXPECT_EQ(s->n_dropped[0], 0);
    sched.remove(s.get());
    EXPECT_EQ(pool0.n_free(), 64);
    EXPECT_EQ(pool1.n_free(), 64);
  }
}

TEST(KvGroupsScheduler, EverythingWindowedDropsGroupZero) {
  BlockPool pool(64);
  SchedulerConfig cfg;
  cfg.block_size = 2;
  cfg.enable_prefix_caching = false;
  cfg.kv_groups = kv_groups_for_windows({4, 4});
  Scheduler sched(cfg, pool);
  auto s = make_seq(0, iota_tokens(9));
  sched.add(s.get());
  for (int i = 0; i < 30; ++i) step(sched, 3);
  EXPECT_LE(held(*s, 0), 4 / 2 + 2);
  EXPECT_EQ(pool.n_used(), held(*s, 0));
  sched.remove(s.get());
  EXPECT_EQ(pool.n_free(), 64);
}

TEST(KvGroupsScheduler, PrefixHitTakesGroupOneWindowBlocks) {
  BlockPool pool0(64), pool1(64, true);
  Scheduler sched(two_group_config(5, true), pool0, &pool1);
  const std::vector<int32_t> prompt = iota_tokens(16);
  auto a = make_seq(0, prompt);
  sched.add(a.get());
  while (a->num_computed < 16) step(sched, 9);
  const std::vector<int32_t> a_blocks1 = a->blocks1;
  sched.remove(a.get());  // blocks go free but stay cached

  std::vector<int32_t> longer = prompt;
  longer.push_back(100);
  auto b = make_seq(1, longer);
  sched.add(b.get());
  auto out = sched.schedule();
  ASSERT_EQ(out.size(), 1u);
  // 17 tokens: 8 full blocks may hit; the window (5) before position 16 needs blocks 5..7 of group 1.
  EXPECT_EQ(b->num_computed, 16);
  EXPECT_EQ(out[0].n_new, 1);
  EXPECT_EQ(b->n_dropped[1], 6);  // the next query (16) reads 12..16: blocks 0..5 are out
  EXPECT_EQ(pool1.refcount(b->blocks1[6]), 1);
  for (int64_t j = b->n_dropped[1]; j < 8; ++j) EXPECT_EQ(b->blocks1[static_cast<size_t>(j)], a_blocks1[static_cast<size_t>(j)]);
  EXPECT_EQ(sched.prefix_cache_hits(), 16);
  pool0.check_invariants();
  pool1.check_invariants();
  sched.remove(b.get());
}

TEST(KvGroupsScheduler, MissingWindowBlocksShortenTheHit) {
  BlockPool pool0(64), pool1(12, true);
  Scheduler sched(two_group_config(5, true), pool0, &pool1);
  const std::vector<int32_t> prompt = iota_tokens(16);
  auto a = make_seq(0, prompt);
  sched.add(a.get());
  while (a->num_computed < 16) step(sched, 9);
  sched.remove(a.get());
  // Another sequence takes every group-1 block: the cached window blocks are evicted.
  auto c = make_seq(2, iota_tokens(24, 500));
  sched.add(c.get());
  sched.schedule();
  std::vector<int32_t> grab;
  ASSERT_TRUE(pool1.allocate(pool1.n_free(), &grab));
  pool1.release(grab);
  sched.remove(c.get());
  auto b = make_seq(1, prompt);
  sched.add(b.get());
  sched.schedule();
  // Group 0's chain is all there, but group 1's blocks of the window are gone: no usable hit.
  EXPECT_EQ(b->num_computed, 0);
  EXPECT_EQ(sched.prefix_cache_hits(), 0);
  pool0.check_invariants();
  pool1.check_invariants();
}

TEST(KvGroupsEngine, GemmaWindowPoolStaysSmallAndTokensMatch) {
  auto run = [](bool caching, int64_t block_size, int64_t* peak) {
    EngineConfig c;
    c.model = std::string(ELI_TEST_DATA_DIR) + "/models/gemma3";
    c.device = "cpu";
    c.dtype = "float32";
    c.block_size = block_size;
    c.num_kv_blocks = 256;
    c.max_num_batched_tokens = 7;
    c.enable_prefix_caching = caching;
    Engine e(c);
    EXPECT_GT(e.info().num_kv_window_blocks, 0);
    SamplingParams p;
    p.max_tokens = 40;
    p.temperature = 0.0;
    p.ignore_eos = true;
    const int64_t a = e.add_request(iota_tokens(23, 3), p);
    e.add_request(iota_tokens(9, 40), p);
    std::vector<int32_t> tokens;
    while (e.has_unfinished()) {
      for (const TokenOutput& o : e.step()) {
        if (o.request_id == a) tokens.push_back(o.token);
      }
      const EngineStats s = e.stats();
      const int64_t used = s.kv_window_blocks_total - s.kv_window_blocks_free;
      if (peak != nullptr) *peak = std::max(*peak, used);
    }
    return tokens;
  };
  int64_t peak = 0;
  const std::vector<int32_t> small = run(true, 2, &peak);
  ASSERT_EQ(small.size(), 40u);
  // Window 6, blocks of 2, two sequences: at most (6 - 1 + 1) / 2 + 2 per sequence plus the
  // blocks of a step's tokens, a step behind; far below the 32 blocks a 63-token context fills.
  EXPECT_GT(peak, 0);
  EXPECT_LE(peak, 2 * (3 + 2) + 2 * 4);
  EXPECT_EQ(run(false, 2, nullptr), small);
  EXPECT_EQ(run(true, 16, nullptr), small);
}

}  // namespace
}  // namespace eli
