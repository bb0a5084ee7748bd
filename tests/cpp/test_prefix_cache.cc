// tests/cpp/test_prefix_cache.cc: automatic prefix caching as pure host logic: the block hash
// chain, verified lookups (including forced hash collisions), LRU eviction order, refcounts of
// shared blocks, and the scheduler's admission with hits.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "eli/error.h"
#include "runtime/engine/scheduler.h"
#include "runtime/kv/block_pool.h"
#include "runtime/kv/prefix_cache.h"

namespace eli {
namespace {

uint64_t constant_hash(uint64_t, const int32_t*, int64_t) { return 42; }

std::unique_ptr<Sequence> make_seq(int64_t id, const std::vector<int32_t>& tokens) {
  auto s = std::make_unique<Sequence>();
  s->id = id;
  s->tokens = tokens;
  s->prompt_len = static_cast<int64_t>(tokens.size());
  return s;
}

// Runs one schedule() and marks the scheduled tokens computed (no sampling).
std::vector<ScheduledSeq> run_step(Scheduler& sched) {
  auto out = sched.schedule();
  for (const auto& s : out) {
    s.seq->num_computed += s.n_new;
    sched.cache_full_blocks(s.seq);
  }
  return out;
}

std::vector<int32_t> iota_tokens(int64_t n, int32_t start) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = start + static_cast<int32_t>(i);
  return t;
}

TEST(PrefixCacheHash, ChainsAndDiffers) {
  const std::vector<int32_t> a = {1, 2, 3, 4}, b = {1, 2, 3, 5};
  EXPECT_EQ(hash_kv_block(kPrefixRootHash, a.data(), 4), hash_kv_block(kPrefixRootHash, a.data(), 4));
  EXPECT_NE(hash_kv_block(kPrefixRootHash, a.data(), 4), hash_kv_block(kPrefixRootHash, b.data(), 4));
  EXPECT_NE(hash_kv_block(kPrefixRootHash, a.data(), 4), hash_kv_block(kPrefixRootHash + 1, a.data(), 4));
  EXPECT_NE(hash_kv_block(kPrefixRootHash, a.data(), 3), hash_kv_block(kPrefixRootHash, a.data(), 4));
}

TEST(PrefixCachePool, HitMissAndVerification) {
  BlockPool pool(4);
  std::vector<int32_t> blocks;
  ASSERT_TRUE(pool.allocate(2, &blocks));
  const std::vector<int32_t> t0 = {1, 2}, t1 = {3, 4}, other = {9, 9};
  ASSERT_TRUE(pool.cache_block(blocks[0], 100, 0, t0.data(), 2));
  ASSERT_TRUE(pool.cache_block(blocks[1], 200, pool.cache_serial(blocks[0]), t1.data(), 2));
  EXPECT_EQ(pool.n_cached(), 2);
  EXPECT_EQ(pool.find_cached(100, 0, t0.data(), 2), blocks[0]);
  EXPECT_EQ(pool.find_cached(200, pool.cache_serial(blocks[0]), t1.data(), 2), blocks[1]);
  EXPECT_EQ(pool.find_cached(300, 0, t0.data(), 2), -1);      // unknown hash
  EXPECT_EQ(pool.find_cached(100, 0, other.data(), 2), -1);   // same hash, other tokens: collision
  EXPECT_EQ(pool.find_cached(200, 0, t1.data(), 2), -1);      // right tokens, wrong parent
  // A second block under a taken hash is refused and stays uncached.
  std::vector<int32_t> more;
  ASSERT_TRUE(pool.allocate(1, &more));
  EXPECT_FALSE(pool.cache_block(more[0], 100, 0, other.data(), 2));
  EXPECT_FALSE(pool.cached(more[0]));
  pool.check_invariants();
  // Cached blocks stay cached when freed and count as free.
  pool.release(blocks);
  pool.release(more);
  EXPECT_EQ(pool.n_free(), 4);
  EXPECT_EQ(pool.find_cached(100, 0, t0.data(), 2), blocks[0]);
  pool.acquire_cached(blocks[0]);  // a hit on a free cached block takes it out of the free queue
  EXPECT_EQ(pool.n_free(), 3);
  EXPECT_EQ(pool.refcount(blocks[0]), 1);
  pool.acquire_cached(blocks[0]);  // and a second sharer
  EXPECT_EQ(pool.refcount(blocks[0]), 2);
  pool.check_invariants();
  pool.release({blocks[0], blocks[0]});
  EXPECT_EQ(pool.n_free(), 4);
  pool.check_invariants();
}

TEST(PrefixCachePool, EvictsLeastRecentlyFreedFirst) {
  BlockPool pool(4);
  std::vector<int32_t> b;
  ASSERT_TRUE(pool.allocate(4, &b));
  for (int i = 0; i < 4; ++i) {
    const std::vector<int32_t> t = {i, i};
    ASSERT_TRUE(pool.cache_block(b[static_cast<size_t>(i)], 10 + static_cast<uint64_t>(i), 0, t.data(), 2));
  }
  pool.release({b[2]});
  pool.release({b[0]});
  pool.release({b[3]});
  pool.release({b[1]});
  EXPECT_EQ(pool.free_queue(), (std::vector<int32_t>{b[2], b[0], b[3], b[1]}));
  // Taking b[0] back (a hit) removes it from the middle of the queue; freeing again puts it last.
  pool.acquire_cached(b[0]);
  EXPECT_EQ(pool.free_queue(), (std::vector<int32_t>{b[2], b[3], b[1]}));
  pool.release({b[0]});
  EXPECT_EQ(pool.free_queue(), (std::vector<int32_t>{b[2], b[3], b[1], b[0]}));
  std::vector<int32_t> got;
  ASSERT_TRUE(pool.allocate(2, &got));  // evicts b[2] then b[3]
  EXPECT_EQ(got, (std::vector<int32_t>{b[2], b[3]}));
  EXPECT_FALSE(pool.cached(b[2]));
  EXPECT_FALSE(pool.cached(b[3]));
  EXPECT_TRUE(pool.cached(b[1]));
  EXPECT_EQ(pool.n_cached(), 2);
  const std::vector<int32_t> t2 = {2, 2};
  EXPECT_EQ(pool.find_cached(12, 0, t2.data(), 2), -1);
  pool.check_invariants();
}

TEST(PrefixCacheSched, SecondSequenceHitsAndSharesBlocks) {
  BlockPool pool(32);
  SchedulerConfig cfg;
  cfg.block_size = 4;
  Scheduler sched(cfg, pool);
  auto prompt = iota_tokens(14, 100);  // 3 full blocks + 2 tokens
  auto a = make_seq(0, prompt);
  sched.add(a.get());
  run_step(sched);
  EXPECT_EQ(a->n_cached_blocks, 3);
  EXPECT_EQ(sched.prefix_cache_hits(), 0);
  EXPECT_EQ(sched.prefix_cache_queries(), 14);

  auto b = make_seq(1, prompt);
  sched.add(b.get());
  auto out = sched.schedule();
  ASSERT_EQ(out.size(), 1u);  // a has nothing left to compute (no token was sampled): only b runs
  const ScheduledSeq* sb = &out[0];
  EXPECT_EQ(sb->seq, b.get());
  EXPECT_EQ(b->num_computed, 12);
  EXPECT_EQ(sb->n_new, 2);
  EXPECT_TRUE(sb->sample);
  EXPECT_EQ(sched.prefix_cache_hits(), 12);
  EXPECT_EQ(sched.prefix_cache_queries(), 28);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a->blocks[static_cast<size_t>(i)], b->blocks[static_cast<size_t>(i)]);
    EXPECT_EQ(pool.refcount(a->blocks[static_cast<size_t>(i)]), 2);
  }
  EXPECT_NE(a->blocks[3], b->blocks[3]);  // the partial last block is private
  sched.remove(a.get());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(pool.refcount(b->blocks[static_cast<size_t>(i)]), 1);
  sched.remove(b.get());
  EXPECT_EQ(pool.n_free(), pool.n_blocks());
  EXPECT_EQ(pool.n_cached(), 3);
  pool.check_invariants();
}

TEST(PrefixCacheSched, LeavesOneTokenToComputeOnFullBlockPrompt) {
  BlockPool pool(16);
  SchedulerConfig cfg;
  cfg.block_size = 4;
  Scheduler sched(cfg, pool);
  auto prompt = iota_tokens(8, 7);  // exactly 2 blocks
  auto a = make_seq(0, prompt), b = make_seq(1, prompt);
  sched.add(a.get());
  run_step(sched);
  sched.remove(a.get());
  sched.add(b.get());
  auto out = sched.schedule();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(b->num_computed, 4);  // only the first block: the last token must run
  EXPECT_EQ(out[0].n_new, 4);
  EXPECT_TRUE(out[0].sample);
}

TEST(PrefixCacheSched, ForcedCollisionNeverSharesWrongBlock) {
  BlockPool pool(16);
  SchedulerConfig cfg;
  cfg.block_size = 4;
  cfg.block_hash = constant_hash;  // every block collides
  Scheduler sched(cfg, pool);
  auto a = make_seq(0, iota_tokens(9, 1));
  sched.add(a.get());
  run_step(sched);
  EXPECT_EQ(a->n_cached_blocks, 1);    // the second block's hash is taken: chain stops
  EXPECT_TRUE(a->prefix_cache_stopped);
  auto b = make_seq(1, iota_tokens(9, 50));  // different tokens, same hash
  sched.add(b.get());
  sched.schedule();
  EXPECT_EQ(b->num_computed, 0);
  EXPECT_EQ(sched.prefix_cache_hits(), 0);
  for (int32_t blk : b->blocks) EXPECT_EQ(pool.refcount(blk), 1);
  // Same first block, different second: hits exactly the verified first block.
  auto c_tokens = iota_tokens(9, 1);
  c_tokens[5] = 999;
  auto c = make_seq(2, c_tokens);
  sched.add(c.get());
  sched.schedule();
  EXPECT_EQ(c->num_computed, 4);
  EXPECT_EQ(c->blocks[0], a->blocks[0]);
  pool.check_invariants();
}

TEST(PrefixCacheHash, SaltedRootsDiffer) {
  EXPECT_EQ(prefix_root_hash(0), kPrefixRootHash);
  EXPECT_NE(prefix_root_hash(1), kPrefixRootHash);
  EXPECT_NE(prefix_root_hash(1), prefix_root_hash(2));
  EXPECT_EQ(prefix_root_hash(77), prefix_root_hash(77));
}

// Per-tenant isolation (SamplingParams::cache_salt): the same prompt under another salt misses;
// under the same salt it hits.
TEST(PrefixCacheSched, SaltsIsolateChains) {
  BlockPool pool(32);
  SchedulerConfig cfg;
  cfg.block_size = 4;
  Scheduler sched(cfg, pool);
  const auto prompt = iota_tokens(9, 10);  // 2 full blocks + 1 token
  auto a = make_seq(0, prompt);
  a->params.cache_salt = 1;
  sched.add(a.get());
  run_step(sched);
  EXPECT_EQ(a->n_cached_blocks, 2);
  for (uint64_t salt : {uint64_t{0}, uint64_t{2}}) {  // unsalted and another salt: no hit
    auto b = make_seq(1, prompt);
    b->params.cache_salt = salt;
    sched.add(b.get());
    sched.schedule();
    EXPECT_EQ(b->num_computed, 0) << "salt " << salt;
    EXPECT_NE(b->blocks[0], a->blocks[0]);
    sched.remove(b.get());
  }
  EXPECT_EQ(sched.prefix_cache_hits(), 0);
  auto c = make_seq(2, prompt);
  c->params.cache_salt = 1;
  sched.add(c.get());
  sched.schedule();
  EXPECT_EQ(c->num_computed, 8);  // the same salt hits both full blocks
  EXPECT_EQ(c->blocks[0], a->blocks[0]);
  EXPECT_EQ(sched.prefix_cache_hits(), 8);
  pool.check_invariants();
}

TEST(PrefixCacheSched, DisabledNeverHitsOrCaches) {
  BlockPool pool(16);
  SchedulerConfig cfg;
  cfg.block_size = 4;
  cfg.enable_prefix_caching = false;
  Scheduler sched(cfg, pool);
  auto prompt = iota_tokens(10, 3);
  auto a = make_seq(0, prompt), b = make_seq(1, prompt);
  sched.add(a.get());
  run_step(sched);
  sched.add(b.get());
  run_step(sched);
  EXPECT_EQ(pool.n_cached(), 0);
  EXPECT_EQ(sched.prefix_cache_queries(), 0);
  EXPECT_EQ(b->num_computed, 10);
  for (size_t i = 0; i < b->blocks.size(); ++i) EXPECT_NE(a->blocks[i], b->blocks[i]);
}

TEST(PrefixCacheSched, PreemptedSequenceRecoversFromCache) {
  BlockPool pool(4);
  SchedulerConfig cfg;
  cfg.block_size = 2;
  Scheduler sched(cfg, pool);
  auto a = make_seq(0, iota_tokens(4, 1)), b = make_seq(1, iota_tokens(4, 20));
  sched.add(a.get());
  sched.add(b.get());
  for (const auto& s : run_step(sched)) s.seq->tokens.push_back(7);
  auto out = sched.schedule();  // a needs a third block: b is preempted, its blocks stay cached
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(sched.preemptions(), 1);
  EXPECT_EQ(pool.n_cached(), 3);  // a's two blocks and b's first (its tail was evicted first)
  EXPECT_EQ(b->num_computed, 0);  // b's hit alone does not fit yet: it waits, holding nothing
  EXPECT_TRUE(b->blocks.empty());
  pool.check_invariants();
  sched.remove(a.get());
  out = sched.schedule();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].seq, b.get());
  EXPECT_EQ(b->num_computed, 2);  // its first block came back from the cache
  EXPECT_EQ(out[0].n_new, 3);
  EXPECT_EQ(sched.prefix_cache_hits(), 2);
  pool.check_invariants();
}

}  // namespace
}  // namespace eli
