// tests/cpp/test_scheduler.cc: the block pool and the scheduler as pure host logic, including a
// randomized simulation of arrivals, aborts, completions and preemptions with the invariants
// checked after every step.
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

// Randomized simulation: arrivals, random prompt/output lengths, aborts, finishes; invariants
// after every step: free + used == total, refcounts match ownership, no block owned twice, every
// finished sequence released its blocks, the system drains.
TEST(SchedScheduler, RandomizedSimulationKeepsInvariants) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 rng(seed);
    const int64_t n_blocks = 24 + static_cast<int64_t>(rng() % 40);
    BlockPool pool(n_blocks);
    SchedulerConfig cfg;
    cfg.block_size = 1 + static_cast<int64_t>(rng() % 8);
    cfg.max_num_seqs = 1 + static_cast<int64_t>(rng() % 8);
    cfg.max_num_batched_tokens = 4 + static_cast<int64_t>(rng() % 60);
    cfg.enable_chunked_prefill = (rng() % 4) != 0;
    Scheduler sched(cfg, pool);
    const int64_t capacity = n_blocks * cfg.block_size;
    std::map<int64_t, std::unique_ptr<Sequence>> live;
    std::map<int64_t, int64_t> target;  // id -> total length at which it finishes
    int64_t next_id = 0, finished = 0;
    for (int step = 0; step < 3000 && (next_id < 60 || !live.empty()); ++step) {
      if (next_id < 60 && rng() % 3 == 0) {
        const int64_t prompt = 1 + static_cast<int64_t>(rng() % 40);
        const int64_t gen = 1 + static_cast<int64_t>(rng() % 30);
        if (prompt + gen <= capacity) {  // admission: must be able to run alone
          auto s = make_seq(next_id, prompt);
          target[next_id] = prompt + gen;
          sched.add(s.get());
          live[next_id] = std::move(s);
        }
        ++next_id;
      }
      if (!live.empty() && rng() % 10 == 0) {  // abort a random live sequence
        auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
        sched.remove(it->second.get());
        EXPECT_TRUE(it->second->blocks.empty());
        live.erase(it);
      }
      auto out = sched.schedule();
      int64_t tokens = 0;
      std::set<int32_t> owned;
      for (const auto& s : out) {
        tokens += s.n_new;
        ASSERT_LE(s.seq->num_computed + s.n_new, static_cast<int64_t>(s.seq->blocks.size()) * cfg.block_size);
      }
      if (cfg.enable_chunked_prefill) ASSERT_LE(tokens, cfg.max_num_batched_tokens);
      ASSERT_LE(static_cast<int64_t>(out.size()), cfg.max_num_seqs);
      int64_t used = 0;
      for (auto& [id, s] : live) {
        for (int32_t b : s->blocks) {
          ASSERT_TRUE(owned.insert(b).second) << "block " << b << " owned twice";
          ASSERT_EQ(pool.refcount(b), 1);
        }
        used += static_cast<int64_t>(s->blocks.size());
      }
      ASSERT_EQ(used, pool.n_used());
      ASSERT_EQ(pool.n_free() + pool.n_used(), pool.n_blocks());
      pool.check_invariants();
      for (const auto& s : out) {
        s.seq->num_computed += s.n_new;
        if (!s.sample) continue;
        s.seq->tokens.push_back(3);
        if (s.seq->n_tokens() >= target[s.seq->id]) {
          sched.remove(s.seq);
          EXPECT_TRUE(s.seq->blocks.empty());
          live.erase(s.seq->id);
          ++finished;
        }
      }
    }
    EXPECT_TRUE(live.empty()) << "seed " << seed << ": " << live.size() << " sequences stuck";
    EXPECT_EQ(pool.n_free(), pool.n_blocks()) << "seed " << seed;
    EXPECT_GT(finished, 0);
  }
}

}  // namespace
}  // namespace eli
