// tests/cpp/test_scheduler.cc: the block pool and the scheduler as pure host logic, including a
// randomized simulation of arrivals with shared prompt prefixes, aborts, completions, preemptions
// and prefix-cache hits, with the invariants checked after every step.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>

#include "eli/error.h"
#include "runtime/engine/scheduler.h"
#include "runtime/kv/block_pool.h"

namespace eli {
namespace {

TEST(SchedBlockPool, AllocateReleaseKeepsCounts) {
  BlockPool pool(8);
  std::vector<int32_t> a, b;
  EXPECT_TRUE(pool.allocate(5, &a));
  EXPECT_FALSE(pool.allocate(4, &b));  // only 3 free: nothing changes
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(pool.n_free(), 3);
  pool.retain(a[0]);
  pool.release(a);
  EXPECT_EQ(pool.n_free(), 7);
  EXPECT_EQ(pool.refcount(a[0]), 1);
  pool.release({a[0]});
  EXPECT_EQ(pool.n_free(), 8);
  pool.check_invariants();
  EXPECT_THROW(pool.release({a[0]}), Error);  // double free is a bug, reported
}

std::unique_ptr<Sequence> make_seq(int64_t id, int64_t prompt_len) {
  auto s = std::make_unique<Sequence>();
  s->id = id;
  s->tokens.assign(static_cast<size_t>(prompt_len), 1);
  s->prompt_len = prompt_len;
  return s;
}

TEST(SchedScheduler, ChunksLongPromptUnderBudget) {
  BlockPool pool(64);
  SchedulerConfig cfg;
  cfg.block_size = 4;
  cfg.max_num_batched_tokens = 10;
  Scheduler sched(cfg, pool);
  auto s = make_seq(0, 25);
  sched.add(s.get());
  std::vector<int64_t> chunks;
  for (int i = 0; i < 3; ++i) {
    auto out = sched.schedule();
    ASSERT_EQ(out.size(), 1u);
    chunks.push_back(out[0].n_new);
    EXPECT_EQ(out[0].sample, s->num_computed + out[0].n_new == 25);
    s->num_computed += out[0].n_new;
  }
  EXPECT_EQ(chunks, (std::vector<int64_t>{10, 10, 5}));
  EXPECT_EQ(static_cast<int64_t>(s->blocks.size()), 7);  // ceil(25 / 4)
}

TEST(SchedScheduler, UnchunkedPromptWaitsForWholeBudget) {
  BlockPool pool(64);
  SchedulerConfig cfg;
  cfg.block_size = 4;
  cfg.max_num_batched_tokens = 10;
  cfg.enable_chunked_prefill = false;
  Scheduler sched(cfg, pool);
  auto a = make_seq(0, 6), b = make_seq(1, 6);
  sched.add(a.get());
  sched.add(b.get());
  auto out = sched.schedule();
  ASSERT_EQ(out.size(), 1u);  // b does not fit the 4 tokens left and is not split
  EXPECT_EQ(out[0].seq, a.get());
  EXPECT_EQ(out[0].n_new, 6);
}

TEST(SchedScheduler, PreemptsNewestWhenBlocksRunOut) {
  BlockPool pool(4);
  SchedulerConfig cfg;
  cfg.block_size = 2;
  Scheduler sched(cfg, pool);
  auto a = make_seq(0, 4), b = make_seq(1, 4);
  sched.add(a.get());
  sched.add(b.get());
  for (const auto& s : sched.schedule()) {
    s.seq->num_computed += s.n_new;
    s.seq->tokens.push_back(7);  // each sampled one token
  }
  EXPECT_EQ(pool.n_free(), 0);
  auto out = sched.schedule();  // a needs a third block: b (newest) is preempted
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].seq, a.get());
  EXPECT_EQ(sched.preemptions(), 1);
  EXPECT_EQ(b->num_computed, 0);
  EXPECT_TRUE(b->blocks.empty());
  EXPECT_EQ(sched.num_waiting(), 1);
}

// A deliberately weak hash (few distinct values) so the simulation also exercises verification.
uint64_t weak_hash(uint64_t parent, const int32_t* tokens, int64_t n) {
  return (parent * 31 + static_cast<uint64_t>(tokens[0]) + static_cast<uint64_t>(tokens[n - 1])) % 5;
}

// Randomized simulation: arrivals whose prompts share random prefixes (a few "system prompts"),
// random prompt/output lengths, aborts, finishes, preemptions, with prefix caching on, off, and on
// with a colliding hash. Invariants after every step: free + used == total; each block's refcount
// is the number of live sequences holding it; a block held by two sequences is a full cache entry
// whose stored tokens equal both sequences' tokens there; cache entries of a sequence's leading
// blocks match its tokens; every finished sequence released its blocks; the system drains.
void run_simulation(uint64_t seed, int mode, int64_t* n_shared_seen) {
  std::mt19937_64 rng(seed);
  const int64_t n_blocks = 24 + static_cast<int64_t>(rng() % 40);
  BlockPool pool(n_blocks);
  SchedulerConfig cfg;
  cfg.block_size = 1 + static_cast<int64_t>(rng() % 8);
  cfg.max_num_seqs = 1 + static_cast<int64_t>(rng() % 8);
  cfg.max_num_batched_tokens = 4 + static_cast<int64_t>(rng() % 60);
  cfg.enable_chunked_prefill = (rng() % 4) != 0;
  cfg.enable_prefix_caching = mode != 0;
  if (mode == 2) cfg.block_hash = weak_hash;
  const int64_t B = cfg.block_size;
  Scheduler sched(cfg, pool);
  const int64_t capacity = n_blocks * B;
  std::vector<std::vector<int32_t>> prefixes(3);
  for (auto& p : prefixes) {
    p.resize(static_cast<size_t>(8 + rng() % 24));
    for (auto& t : p) t = static_cast<int32_t>(rng() % 6);
  }
  std::map<int64_t, std::unique_ptr<Sequence>> live;
  std::map<int64_t, int64_t> target;  // id -> total length at which it finishes
  int64_t next_id = 0, finished = 0;
  for (int step = 0; step < 3000 && (next_id < 60 || !live.empty()); ++step) {
    if (next_id < 60 && rng() % 3 == 0) {
      std::vector<int32_t> prompt;
      if (rng() % 4 != 0) {  // most prompts start with some prefix of a shared one
        const auto& p = prefixes[rng() % prefixes.size()];
        prompt.assign(p.begin(), p.begin() + static_cast<long>(1 + rng() % p.size()));
      }
      const int64_t suffix = (prompt.empty() ? 1 : 0) + static_cast<int64_t>(rng() % 12);
      for (int64_t i = 0; i < suffix; ++i) prompt.push_back(static_cast<int32_t>(rng() % 6));
      const int64_t gen = 1 + static_cast<int64_t>(rng() % 30);
      const int64_t len = static_cast<int64_t>(prompt.size());
      if (len + gen <= capacity) {  // admission: must be able to run alone
        auto s = std::make_unique<Sequence>();
        s->id = next_id;
        s->tokens = prompt;
        s->prompt_len = len;
        target[next_id] = len + gen;
        sched.add(s.get());
        live[next_id] = std::move(s);
      }
      ++next_id;
    }
    if (!live.empty() && rng() % 10 == 0) {  // abort a random live sequence
      auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
      sched.remove(it->second.get());
      ASSERT_TRUE(it->second->blocks.empty());
      live.erase(it);
    }
    auto out = sched.schedule();
    int64_t tokens = 0;
    for (const auto& s : out) {
      tokens += s.n_new;
      ASSERT_LE(s.seq->num_computed + s.n_new, static_cast<int64_t>(s.seq->blocks.size()) * B);
      // Writes start at num_computed: never inside a block shared or cached.
      ASSERT_LE(s.seq->n_cached_blocks * B, s.seq->num_computed);
      ASSERT_GE(s.n_new, 1);
    }
    if (cfg.enable_chunked_prefill) ASSERT_LE(tokens, cfg.max_num_batched_tokens);
    ASSERT_LE(static_cast<int64_t>(out.size()), cfg.max_num_seqs);
    std::map<int32_t, int> holders;                              // block -> live sequences holding it
    std::map<int32_t, std::pair<const Sequence*, int64_t>> first;  // block -> (a holder, index)
    for (auto& [id, s] : live) {
      for (size_t i = 0; i < s->blocks.size(); ++i) {
        const int32_t b = s->blocks[i];
        if (holders[b]++ == 0) {
          first[b] = {s.get(), static_cast<int64_t>(i)};
          continue;
        }
        ASSERT_TRUE(cfg.enable_prefix_caching) << "block " << b << " held twice without caching";
        ++*n_shared_seen;
        ASSERT_TRUE(pool.cached(b)) << "shared block " << b << " is not a cache entry";
        const auto& [other, j] = first[b];
        ASSERT_EQ(j, static_cast<int64_t>(i)) << "shared block " << b << " at different positions";
        ASSERT_LE(static_cast<int64_t>(i + 1) * B, std::min(s->num_computed, other->num_computed));
        const auto& stored = pool.cached_tokens(b);
        ASSERT_TRUE(std::equal(stored.begin(), stored.end(), s->tokens.begin() + static_cast<long>(i) * B));
        ASSERT_TRUE(std::equal(stored.begin(), stored.end(), other->tokens.begin() + static_cast<long>(i) * B));
      }
      for (int64_t i = 0; i < s->n_cached_blocks; ++i) {
        const int32_t b = s->blocks[static_cast<size_t>(i)];
        ASSERT_TRUE(pool.cached(b));
        const auto& stored = pool.cached_tokens(b);
        ASSERT_EQ(static_cast<int64_t>(stored.size()), B);
        ASSERT_TRUE(std::equal(stored.begin(), stored.end(), s->tokens.begin() + i * B));
        if (i > 0) ASSERT_EQ(pool.cache_parent_serial(b), pool.cache_serial(s->blocks[static_cast<size_t>(i - 1)]));
      }
    }
    for (const auto& [b, n] : holders) ASSERT_EQ(pool.refcount(b), n) << "block " << b;
    ASSERT_EQ(static_cast<int64_t>(holders.size()), pool.n_used());
    ASSERT_EQ(pool.n_free() + pool.n_used(), pool.n_blocks());
    if (!cfg.enable_prefix_caching) ASSERT_EQ(pool.n_cached(), 0);
    pool.check_invariants();
    for (const auto& s : out) {
      s.seq->num_computed += s.n_new;
      sched.cache_full_blocks(s.seq);
      if (!s.sample) continue;
      s.seq->tokens.push_back(static_cast<int32_t>(rng() % 6));
      if (s.seq->n_tokens() >= target[s.seq->id]) {
        sched.remove(s.seq);
        ASSERT_TRUE(s.seq->blocks.empty());
        live.erase(s.seq->id);
        ++finished;
      }
    }
  }
  EXPECT_TRUE(live.empty()) << "seed " << seed << ": " << live.size() << " sequences stuck";
  EXPECT_EQ(pool.n_free(), pool.n_blocks()) << "seed " << seed;
  EXPECT_GT(finished, 0);
  if (mode == 1) EXPECT_GT(sched.prefix_cache_hits(), 0) << "seed " << seed;
  if (mode == 0) EXPECT_EQ(sched.prefix_cache_hits(), 0);
}

TEST(SchedScheduler, RandomizedSimulationKeepsInvariants) {
  for (int mode = 0; mode < 3; ++mode) {
    int64_t n_shared_seen = 0;
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      SCOPED_TRACE(testing::Message() << "mode " << mode << " seed " << seed);
      run_simulation(seed, mode, &n_shared_seen);
      if (testing::Test::HasFatalFailure()) return;
    }
    // Modes with caching must actually exercise blocks shared by live sequences.
    if (mode != 0) EXPECT_GT(n_shared_seen, 0) << "mode " << mode;
  }
}

}  // namespace
}  // namespace eli
