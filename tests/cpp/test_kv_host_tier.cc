// tests/cpp/test_kv_host_tier.cc: the host KV tier (runtime/kv/host_kv_tier.h): byte-exact block
// round trips through a device that takes the GPU code path with host memory (int8 scales and two
// KV groups included), slot accounting, and the scheduler's swap preemption on a tiny pool: the
// KV of every computed position of every running sequence survives swap-out / swap-in (each
// position's K holds a signature of its token and position), a tier without room falls back to
// recompute, and aborting a swapped-out sequence frees its slots. The host-tier prefix cache
// (runtime/kv/host_prefix_cache.h): verified lookups, LRU drops, pinning, and the scheduler taking
// hits from it with the blocks' bytes restored.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "eli/error.h"
#include "fake_async_device.h"
#include "runtime/device/device.h"
#include "runtime/engine/scheduler.h"
#include "runtime/kv/host_kv_tier.h"
#include "runtime/kv/host_prefix_cache.h"
#include "runtime/kv/kv_cache.h"

namespace eli {
namespace {

KvCacheShape two_group_i8_shape() {
  KvCacheShape s;
  s.n_layers = 3;
  s.n_blocks = 6;
  s.n_blocks1 = 4;
  s.block_size = 4;
  s.n_kv_heads = 2;
  s.head_dim = 8;
  s.dtype = DType::kI8;
  s.layer_group = {0, 1, 0};
  return s;
}

// Fills every byte of the cache with a pattern that differs per layer, array and offset.
void fill_pattern(const KvCache& kv) {
  const KvCacheShape& s = kv.shape();
  for (int64_t l = 0; l < s.n_layers; ++l) {
    const uint64_t db = s.data_bytes_per_block() * static_cast<uint64_t>(s.blocks_of_layer(l));
    const uint64_t sb = s.scale_bytes_per_block() * static_cast<uint64_t>(s.blocks_of_layer(l));
    auto fill = [&](void* p, uint64_t n, int salt) {
      auto* b = static_cast<uint8_t*>(p);
      for (uint64_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 7 + l * 31 + salt * 101);
    };
    fill(kv.k(l), db, 1);
    fill(kv.v(l), db, 2);
    fill(kv.k_scale(l), sb, 3);
    fill(kv.v_scale(l), sb, 4);
  }
}

bool block_equal(const KvCache& kv, int64_t l, int32_t a, const KvCache& ref, int32_t b) {
  const KvCacheShape& s = kv.shape();
  const uint64_t db = s.data_bytes_per_block(), sb = s.scale_bytes_per_block();
  auto eq = [](const void* x, uint64_t xi, const void* y, uint64_t yi, uint64_t n) {
    return std::memcmp(static_cast<const uint8_t*>(x) + xi * n, static_cast<const uint8_t*>(y) + yi * n, n) == 0;
  };
  return eq(kv.k(l), a, ref.k(l), b, db) && eq(kv.v(l), a, ref.v(l), b, db) &&
         eq(kv.k_scale(l), a, ref.k_scale(l), b, sb) && eq(kv.v_scale(l), a, ref.v_scale(l), b, sb);
}

TEST(HostKvTier, RoundTripThroughAsyncDeviceIsByteExact) {
  FakeAsyncDevice dev;
  const KvCacheShape shape = two_group_i8_shape();
  KvCache kv(dev, shape), ref(dev, shape);
  fill_pattern(kv);
  fill_pattern(ref);
  HostKvTier tier(dev, kv, 5);
  ASSERT_EQ(tier.n_groups(), 2);
  EXPECT_EQ(tier.slot_bytes(0), 2 * shape.layer_block_bytes());
  EXPECT_EQ(tier.slot_bytes(1), shape.layer_block_bytes());
  EXPECT_GT(shape.scale_bytes_per_block(), 0u);

  std::vector<int32_t> s0, s1;
  ASSERT_TRUE(tier.allocate(0, 2, &s0));
  ASSERT_TRUE(tier.allocate(1, 2, &s1));
  EXPECT_EQ(tier.n_free(0), 3);
  EXPECT_EQ(tier.copy_out(0, {5, 1}, s0), 2 * tier.slot_bytes(0));
  EXPECT_EQ(tier.copy_out(1, {3, 0}, s1), 2 * tier.slot_bytes(1));
  // Wipe the device cache, then bring the blocks back to other places.
  for (int64_t l = 0; l < shape.n_layers; ++l) {
    const uint64_t nb = static_cast<uint64_t>(shape.blocks_of_layer(l));
    std::memset(kv.k(l), 0, shape.data_bytes_per_block() * nb);
    std::memset(kv.v(l), 0, shape.data_bytes_per_block() * nb);
    std::memset(kv.k_scale(l), 0, shape.scale_bytes_per_block() * nb);
    std::memset(kv.v_scale(l), 0, shape.scale_bytes_per_block() * nb);
  }
  const int before = dev.n_copies;
  tier.copy_in(0, s0, {0, 2});
  tier.copy_in(1, s1, {1, 2});
  EXPECT_GT(dev.n_copies, before);  // went through the device's host->device copies
  EXPECT_TRUE(block_equal(kv, 0, 0, ref, 5));
  EXPECT_TRUE(block_equal(kv, 2, 0, ref, 5));
  EXPECT_TRUE(block_equal(kv, 0, 2, ref, 1));
  EXPECT_TRUE(block_equal(kv, 2, 2, ref, 1));
  EXPECT_TRUE(block_equal(kv, 1, 1, ref, 3));
  EXPECT_TRUE(block_equal(kv, 1, 2, ref, 0));
  EXPECT_FALSE(block_equal(kv, 0, 1, ref, 1));  // untouched blocks stay wiped

  tier.release(0, s0);
  EXPECT_EQ(tier.n_free(0), 5);
  EXPECT_THROW(tier.release(0, s0), Error);  // double release
  std::vector<int32_t> too_many;
  EXPECT_FALSE(tier.allocate(1, 6, &too_many));
  EXPECT_TRUE(too_many.empty());
}

TEST(HostKvTier, SlotsForBytes) {
  const KvCacheShape shape = two_group_i8_shape();
  const uint64_t set = HostKvTier::slot_set_bytes(shape);
  EXPECT_EQ(set, 3 * shape.layer_block_bytes());
  EXPECT_EQ(HostKvTier::slots_for_bytes(shape, set * 7 + 1), 7);
  EXPECT_EQ(HostKvTier::slots_for_bytes(shape, set - 1), 0);
}

TEST(KvSwapCost, RuleAndPolicies) {
  KvSwapCost c;
  c.copy_bytes_per_s = 1e9;
  c.flops_per_s = 1e12;
  c.n_params = 1000000000;  // recompute: 2e9 FLOPs per token = 2 ms per token
  EXPECT_TRUE(c.favours_swap(1000000, 10));       // 2 ms of copies vs 20 ms
  EXPECT_FALSE(c.favours_swap(1000000000, 10));   // 2 s of copies vs 20 ms
  c.policy = KvSwapCost::Policy::kNever;
  EXPECT_FALSE(c.favours_swap(1, 1000));
  c.policy = KvSwapCost::Policy::kAlways;
  EXPECT_TRUE(c.favours_swap(uint64_t{1} << 50, 1));
}

// ---- the scheduler's swap preemption ----

constexpr int64_t kB = 4;

float signature(const Sequence& s, int64_t pos) { return static_cast<float>(s.tokens[static_cast<size_t>(pos)] * 1000 + pos); }

struct SwapRig {
  std::unique_ptr<Device> dev = create_cpu_device();
  KvCacheShape shape;
  std::unique_ptr<KvCache> kv;
  std::unique_ptr<BlockPool> pool;
  std::unique_ptr<HostKvTier> tier;
  std::unique_ptr<Scheduler> sched;
  std::unique_ptr<HostKvTier> prefix_tier;
  std::unique_ptr<HostPrefixCache> host_prefix;
  std::vector<std::unique_ptr<Sequence>> seqs;
  int64_t finish_len = 1 << 20;  // a sequence of this many tokens ends
  int n_finished = 0;

  SwapRig(int64_t n_blocks, int64_t n_slots, bool prefix_caching, KvSwapCost::Policy policy = KvSwapCost::Policy::kAlways,
          int64_t n_prefix_slots = 0) {
    shape.n_layers = 1;
    shape.n_blocks = n_blocks;
    shape.block_size = kB;
    shape.n_kv_heads = 1;
    shape.head_dim = 1;
    kv = std::make_unique<KvCache>(*dev, shape);
    pool = std::make_unique<BlockPool>(n_blocks);
    SchedulerConfig c;
    c.block_size = kB;
    c.max_num_seqs = 8;
    c.max_num_batched_tokens = 64;
    c.enable_prefix_caching = prefix_caching;
    c.swap_cost.policy = policy;
    sched = std::make_unique<Scheduler>(c, *pool);
    if (n_slots > 0) {
      tier = std::make_unique<HostKvTier>(*dev, *kv, n_slots);
      sched->set_host_tier(tier.get());
    }
    if (n_prefix_slots > 0) {
      prefix_tier = std::make_unique<HostKvTier>(*dev, *kv, n_prefix_slots);
      host_prefix = std::make_unique<HostPrefixCache>(*prefix_tier);
      sched->set_host_prefix_cache(host_prefix.get());
    }
  }
  Sequence* add(int64_t id, int64_t n_prompt, int32_t first) {
    auto s = std::make_unique<Sequence>();
    s->id = id;
    for (int64_t i = 0; i < n_prompt; ++i) s->tokens.push_back(first + static_cast<int32_t>(i % 5));
    s->prompt_len = n_prompt;
    sched->add(s.get());
    seqs.push_back(std::move(s));
    return seqs.back().get();
  }
  float* k_at(const Sequence& s, int64_t pos) {
    return static_cast<float*>(kv->k(0)) + s.blocks[static_cast<size_t>(pos / kB)] * kB + pos % kB;
  }
  // One step: "computes" the scheduled tokens (writes their signatures), appends a sampled token.
  // Before that, checks that every running sequence's computed positions still hold theirs.
  std::vector<ScheduledSeq> step() {
    auto out = sched->schedule();
    for (const auto& s : out) {
      Sequence& q = *s.seq;
      for (int64_t p = 0; p < q.num_computed; ++p) {
        EXPECT_EQ(*k_at(q, p), signature(q, p)) << "seq " << q.id << " pos " << p;
      }
      for (int64_t p = q.num_computed; p < q.num_computed + s.n_new; ++p) *k_at(q, p) = signature(q, p);
      q.num_computed += s.n_new;
      sched->cache_full_blocks(&q);
      if (s.sample) q.tokens.push_back(static_cast<int32_t>(q.id * 7 + q.n_tokens()) % 50);
      if (q.n_tokens() >= finish_len) {
        sched->remove(&q);
        ++n_finished;
      }
    }
    pool->check_invariants();
    return out;
  }
};

TEST(SchedulerSwap, KvSurvivesSwapOutAndIn) {
  for (bool caching : {false, true}) {
    SwapRig rig(/*n_blocks=*/8, /*n_slots=*/16, caching);
    rig.finish_len = 20;  // 5 blocks each: three do not fit together
    for (int i = 0; i < 3; ++i) rig.add(i, 6, caching ? 10 : 10 * i);  // caching: shared prefixes
    for (int it = 0; it < 200 && rig.n_finished < 3; ++it) rig.step();
    EXPECT_EQ(rig.n_finished, 3);
    EXPECT_GT(rig.sched->swaps_out(), 0) << caching;
    EXPECT_GT(rig.sched->swaps_in(), 0) << caching;
    EXPECT_EQ(rig.sched->preemptions(), rig.sched->swaps_out());  // the tier always had room
    EXPECT_GT(rig.sched->kv_bytes_to_host(), 0u);
    EXPECT_EQ(rig.sched->kv_bytes_from_host() % (kB * sizeof(float) * 2), 0u);
    for (auto& s : rig.seqs) rig.sched->remove(s.get());
    EXPECT_EQ(rig.pool->n_free(), 8);
    EXPECT_EQ(rig.tier->n_free(0), 16);  // swapped-out sequences removed: slots back
  }
}

TEST(SchedulerSwap, SwappedOutSequenceKeepsProgress) {
  SwapRig rig(/*n_blocks=*/4, /*n_slots=*/8, false);
  Sequence* a = rig.add(0, 8, 1);  // 2 blocks
  Sequence* b = rig.add(1, 7, 2);  // 2 blocks
  rig.step();
  ASSERT_EQ(a->num_computed, 8);
  ASSERT_EQ(b->num_computed, 7);
  rig.step();  // a needs a third block: b (newest) is swapped out
  EXPECT_EQ(rig.sched->swaps_out(), 1);
  EXPECT_EQ(b->state, SeqState::kWaiting);
  EXPECT_TRUE(b->blocks.empty());
  EXPECT_EQ(b->num_computed, 7);  // no recompute
  EXPECT_EQ(b->swapped_len, 2);
  EXPECT_EQ(rig.tier->n_free(0), 6);
  rig.sched->remove(b);  // abort while swapped out
  EXPECT_EQ(rig.tier->n_free(0), 8);
  EXPECT_EQ(b->swapped_len, 0);
}

TEST(SchedulerSwap, NoRoomOrCostFallsBackToRecompute) {
  {
    SwapRig rig(/*n_blocks=*/4, /*n_slots=*/1, false);  // a victim needs 2 slots
    rig.add(0, 8, 1);
    Sequence* b = rig.add(1, 7, 2);
    rig.step();
    rig.step();
    EXPECT_EQ(rig.sched->preemptions(), 1);
    EXPECT_EQ(rig.sched->swaps_out(), 0);
    EXPECT_EQ(b->num_computed, 0);  // recomputed
  }
  {
    SwapRig rig(/*n_blocks=*/4, /*n_slots=*/8, false, KvSwapCost::Policy::kNever);
    rig.add(0, 8, 1);
    Sequence* b = rig.add(1, 7, 2);
    rig.step();
    rig.step();
    EXPECT_EQ(rig.sched->preemptions(), 1);
    EXPECT_EQ(rig.sched->swaps_out(), 0);
    EXPECT_EQ(b->num_computed, 0);
  }
}

TEST(HostPrefixCache, VerifiedLookupLruAndPins) {
  FakeAsyncDevice dev;
  KvCacheShape shape;
  shape.n_layers = 2;
  shape.n_blocks = 6;
  shape.block_size = 2;
  shape.n_kv_heads = 1;
  shape.head_dim = 4;
  KvCache kv(dev, shape);
  fill_pattern(kv);
  HostKvTier tier(dev, kv, 2);
  HostPrefixCache cache(tier);
  EXPECT_TRUE(cache.offer(1, 10, 5, 0, {1, 2}));
  EXPECT_FALSE(cache.offer(2, 10, 6, 0, {1, 2}));  // the hash is held
  EXPECT_TRUE(cache.offer(2, 11, 6, 5, {3, 4}));
  const int32_t t1[] = {1, 2}, t2[] = {3, 4}, bad[] = {1, 9};
  const int32_t s10 = cache.find(10, 0, t1, 2), s11 = cache.find(11, 5, t2, 2);
  ASSERT_GE(s10, 0);
  ASSERT_GE(s11, 0);
  EXPECT_EQ(cache.serial(s11), 6u);
  EXPECT_EQ(cache.find(10, 7, t1, 2), -1);   // another parent
  EXPECT_EQ(cache.find(10, 0, bad, 2), -1);  // a collision: verified miss
  EXPECT_EQ(cache.find(12, 0, t1, 2), -1);
  // Copy entry 10 (device block 1) into block 4: bytes equal; it becomes the most recently used.
  EXPECT_EQ(cache.copy_in(s10, 4), tier.slot_bytes(0));
  for (int64_t l = 0; l < 2; ++l) EXPECT_TRUE(block_equal(kv, l, 4, kv, 1));
  EXPECT_TRUE(cache.offer(3, 12, 7, 0, {5, 6}));  // full: drops 11, the least recently used
  EXPECT_EQ(cache.find(11, 5, t2, 2), -1);
  EXPECT_GE(cache.find(10, 0, t1, 2), 0);
  cache.pin(cache.find(10, 0, t1, 2));
  const int32_t t3[] = {5, 6};
  cache.pin(cache.find(12, 0, t3, 2));
  EXPECT_FALSE(cache.offer(5, 13, 8, 0, {7, 8}));  // every slot pinned: skipped
  cache.check_invariants();
  EXPECT_EQ(cache.n_entries(), 2);
  EXPECT_EQ(cache.bytes_to_host(), 3 * tier.slot_bytes(0));
}

TEST(SchedulerHostPrefix, EvictedBlocksComeBackFromTheHost) {
  SwapRig rig(/*n_blocks=*/6, /*n_slots=*/0, /*prefix_caching=*/true, KvSwapCost::Policy::kAlways,
              /*n_prefix_slots=*/8);
  rig.finish_len = 13;
  Sequence* a = rig.add(0, 12, 1);  // 3 full blocks, then one token to sample
  while (a->state != SeqState::kFinished) rig.step();
  // Another prompt takes five of the six blocks: a's blocks 1 and 2 (the free queue's front) are
  // evicted to the host tier; its block 0 stays cached on the device.
  rig.finish_len = 21;
  rig.add(1, 20, 20);
  while (rig.n_finished < 2) rig.step();
  EXPECT_EQ(rig.host_prefix->n_entries(), 2);
  EXPECT_EQ(rig.sched->host_prefix_hits(), 0);
  rig.finish_len = 15;
  Sequence* again = rig.add(2, 13, 1);  // a's prompt and one more token
  std::vector<ScheduledSeq> first = rig.step();  // step() checks the restored bytes of computed positions
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(again->num_computed, 13);
  EXPECT_EQ(first[0].n_new, 1);                  // only the last token was computed
  EXPECT_EQ(rig.sched->prefix_cache_hits(), 12);  // a chain of one device block, then two host blocks
  EXPECT_EQ(rig.sched->host_prefix_hits(), 8);
  EXPECT_EQ(rig.sched->kv_bytes_from_host(), 2 * rig.prefix_tier->slot_bytes(0));
  EXPECT_EQ(again->n_cached_blocks, 3);          // the copies are registered on the device again
  while (rig.n_finished < 3) rig.step();
  rig.host_prefix->check_invariants();
  EXPECT_EQ(rig.pool->n_free(), 6);
}

TEST(SchedulerHostPrefix, NeedsPrefixCachingAndOneFullGroup) {
  SwapRig rig(4, 0, /*prefix_caching=*/false);
  HostKvTier tier(*rig.dev, *rig.kv, 2);
  HostPrefixCache cache(tier);
  EXPECT_THROW(rig.sched->set_host_prefix_cache(&cache), Error);
}

}  // namespace
}  // namespace eli
