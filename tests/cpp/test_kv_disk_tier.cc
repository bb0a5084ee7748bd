// tests/cpp/test_kv_disk_tier.cc: the prefix cache's disk tier (runtime/kv/disk_kv_tier.h):
// byte-exact round trips through the file, verified lookups (another parent or other tokens under
// the same hash: a miss), LRU reuse of slots, the fault points kv_disk_write / kv_disk_read (the
// entry is dropped and counted, nothing throws), bad directories, and that the file leaves nothing
// behind. With the host-tier prefix cache (runtime/kv/host_prefix_cache.h): dropped host entries
// go to disk, one entry per hash over both tiers, staged disk hits restore exact device bytes. In
// the scheduler: blocks evicted device -> host -> disk come back from disk with every computed
// position's K intact (signatures), and a failed read falls back to recomputing the blocks.
#include <gtest/gtest.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "eli/error.h"
#include "fake_async_device.h"
#include "runtime/core/fault_injection.h"
#include "runtime/device/device.h"
#include "runtime/engine/scheduler.h"
#include "runtime/kv/disk_kv_tier.h"
#include "runtime/kv/host_kv_tier.h"
#include "runtime/kv/host_prefix_cache.h"
#include "runtime/kv/kv_cache.h"

namespace eli {
namespace {

std::vector<uint8_t> pattern(uint64_t n, int salt) {
  std::vector<uint8_t> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 13 + salt * 71 + 5);
  return v;
}

// Entries under a fresh directory of the test's own; removed (it must be empty) at the end.
struct TempDir {
  std::string path;
  TempDir() {
    std::string t = ::testing::TempDir() + "eli-kvdisk-test-XXXXXX";
    std::vector<char> b(t.begin(), t.end());
    b.push_back('\0');
    EXPECT_NE(::mkdtemp(b.data()), nullptr);
    path = b.data();
  }
  int n_files() const {
    int n = 0;
    if (DIR* d = ::opendir(path.c_str())) {
      while (dirent* e = ::readdir(d)) n += std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0;
      ::closedir(d);
    }
    return n;
  }
  ~TempDir() { ::rmdir(path.c_str()); }
};

TEST(DiskKvTier, RoundTripVerificationAndLru) {
  TempDir dir;
  const uint64_t sb = 1000;  // not a power of two
  DiskKvTier disk(dir.path, sb, 3);
  EXPECT_EQ(dir.n_files(), 0);  // unlinked at once
  EXPECT_EQ(disk.n_slots(), 3);
  const auto a = pattern(sb, 1), b = pattern(sb, 2), c = pattern(sb, 3), d = pattern(sb, 4);
  ASSERT_TRUE(disk.put(10, 5, 0, {1, 2}, a.data()));
  ASSERT_TRUE(disk.put(11, 6, 5, {3, 4}, b.data()));
  ASSERT_TRUE(disk.put(12, 7, 6, {5, 6}, c.data()));
  EXPECT_THROW(disk.put(12, 8, 6, {5, 6}, c.data()), Error);  // a held hash is a caller bug
  const int32_t t1[] = {1, 2}, t2[] = {3, 4}, bad[] = {1, 9};
  const int32_t s10 = disk.find(10, 0, t1, 2);
  ASSERT_GE(s10, 0);
  EXPECT_EQ(disk.serial(s10), 5u);
  EXPECT_EQ(disk.find(10, 7, t1, 2), -1);   // another parent
  EXPECT_EQ(disk.find(10, 0, bad, 2), -1);  // a collision: verified miss
  EXPECT_EQ(disk.find(10, 0, t1, 1), -1);   // other length
  EXPECT_EQ(disk.find(13, 0, t1, 2), -1);
  std::vector<uint8_t> got(sb);
  ASSERT_TRUE(disk.read(s10, got.data()));  // 10 becomes the most recently used
  EXPECT_EQ(got, a);
  ASSERT_TRUE(disk.put(13, 9, 0, {7, 8}, d.data()));  // full: drops 11, the least recently used
  EXPECT_FALSE(disk.contains(11));
  EXPECT_EQ(disk.find(11, 5, t2, 2), -1);
  EXPECT_TRUE(disk.contains(10) && disk.contains(12) && disk.contains(13));
  for (auto [h, want] : {std::pair<uint64_t, const std::vector<uint8_t>*>{12, &c}, {13, &d}, {10, &a}}) {
    const std::vector<int32_t> toks = h == 12 ? std::vector<int32_t>{5, 6} : h == 13 ? std::vector<int32_t>{7, 8}
                                                                                      : std::vector<int32_t>{1, 2};
    const uint64_t parent = h == 12 ? 6 : 0;
    const int32_t s = disk.find(h, parent, toks.data(), 2);
    ASSERT_GE(s, 0) << h;
    ASSERT_TRUE(disk.read(s, got.data()));
    EXPECT_EQ(got, *want) << h;
  }
  EXPECT_EQ(disk.bytes_written(), 4 * sb);
  EXPECT_EQ(disk.bytes_read(), 4 * sb);
  EXPECT_EQ(disk.n_entries(), 3);
  disk.check_invariants();
}

TEST(DiskKvTier, FaultsDropTheEntryAndAreCounted) {
  TempDir dir;
  const uint64_t sb = 64;
  DiskKvTier disk(dir.path, sb, 2);
  const auto a = pattern(sb, 1), b = pattern(sb, 2);
  {
    ScopedFault f(FaultPoint::kKvDiskWrite, FaultSpec{});
    EXPECT_FALSE(disk.put(10, 5, 0, {1}, a.data()));
    EXPECT_EQ(fault_counts(FaultPoint::kKvDiskWrite).fires, 1);
  }
  EXPECT_EQ(disk.write_failures(), 1);
  EXPECT_EQ(disk.n_entries(), 0);
  EXPECT_FALSE(disk.contains(10));
  EXPECT_EQ(disk.bytes_written(), 0u);
  ASSERT_TRUE(disk.put(10, 5, 0, {1}, a.data()));
  ASSERT_TRUE(disk.put(11, 6, 5, {2}, b.data()));
  const int32_t t1[] = {1}, t2[] = {2};
  std::vector<uint8_t> got(sb);
  {
    FaultSpec once;
    once.times = 1;
    ScopedFault f(FaultPoint::kKvDiskRead, once);
    EXPECT_FALSE(disk.read(disk.find(10, 0, t1, 1), got.data()));
  }
  EXPECT_EQ(disk.read_failures(), 1);
  EXPECT_FALSE(disk.contains(10));  // its bytes are suspect: gone
  const int32_t s11 = disk.find(11, 5, t2, 1);
  ASSERT_GE(s11, 0);
  ASSERT_TRUE(disk.read(s11, got.data()));  // the others are untouched
  EXPECT_EQ(got, b);
  disk.check_invariants();
}

TEST(DiskKvTier, BadDirectoriesAreCallerErrors) {
  TempDir dir;
  auto kind_of = [](const std::string& d) {
    try {
      DiskKvTier disk(d, 64, 2);
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::kInternal;  // no error at all
  };
  EXPECT_EQ(kind_of(dir.path + "/does-not-exist"), ErrorKind::kInvalidArgument);
  const std::string file = dir.path + "/a-file";
  FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  EXPECT_EQ(kind_of(file), ErrorKind::kInvalidArgument);
  ::unlink(file.c_str());
  // Far more than any test machine's free space.
  try {
    DiskKvTier huge(dir.path, uint64_t{1} << 40, (int64_t{1} << 20));
    ADD_FAILURE() << "a 2^60-byte disk tier was created";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("kv_offload_disk"), std::string::npos) << e.what();
  }
  EXPECT_EQ(dir.n_files(), 0);
}

TEST(DiskKvTier, DefaultTemporaryDirectoryLeavesNothingBehind) {
  TempDir base;
  const char* old = std::getenv("TMPDIR");
  const std::string saved = old ? old : "";
  ::setenv("TMPDIR", base.path.c_str(), 1);
  {
    DiskKvTier disk("", 128, 4);
    EXPECT_EQ(base.n_files(), 0);  // the directory and the file are gone, the descriptor works
    const auto a = pattern(128, 9);
    ASSERT_TRUE(disk.put(1, 1, 0, {4}, a.data()));
    std::vector<uint8_t> got(128);
    ASSERT_TRUE(disk.read(disk.find(1, 0, std::vector<int32_t>{4}.data(), 1), got.data()));
    EXPECT_EQ(got, a);
  }
  if (old) {
    ::setenv("TMPDIR", saved.c_str(), 1);
  } else {
    ::unsetenv("TMPDIR");
  }
  EXPECT_EQ(DiskKvTier::slots_for_bytes(100, 999), 9);
  EXPECT_EQ(DiskKvTier::slots_for_bytes(0, 999), 0);
}

// ---- behind the host-tier prefix cache ----

void fill_pattern(const KvCache& kv) {
  const KvCacheShape& s = kv.shape();
  for (int64_t l = 0; l < s.n_layers; ++l) {
    auto fill = [&](void* p, uint64_t n, int salt) {
      auto* b = static_cast<uint8_t*>(p);
      for (uint64_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 7 + l * 31 + salt * 101);
    };
    fill(kv.k(l), s.data_bytes_per_block() * static_cast<uint64_t>(s.n_blocks), 1);
    fill(kv.v(l), s.data_bytes_per_block() * static_cast<uint64_t>(s.n_blocks), 2);
    fill(kv.k_scale(l), s.scale_bytes_per_block() * static_cast<uint64_t>(s.n_blocks), 3);
    fill(kv.v_scale(l), s.scale_bytes_per_block() * static_cast<uint64_t>(s.n_blocks), 4);
  }
}

// Device blocks a and b of `kv` hold the same bytes in every array of every layer.
bool blocks_equal(const KvCache& kv, int32_t a, int32_t b) {
  const KvCacheShape& s = kv.shape();
  const uint64_t db = s.data_bytes_per_block(), sb = s.scale_bytes_per_block();
  auto eq = [](const void* p, uint64_t i, uint64_t j, uint64_t n) {
    return std::memcmp(static_cast<const uint8_t*>(p) + i * n, static_cast<const uint8_t*>(p) + j * n, n) == 0;
  };
  for (int64_t l = 0; l < s.n_layers; ++l) {
    if (!eq(kv.k(l), a, b, db) || !eq(kv.v(l), a, b, db) || !eq(kv.k_scale(l), a, b, sb) || !eq(kv.v_scale(l), a, b, sb)) {
      return false;
    }
  }
  return true;
}

TEST(HostPrefixCacheDisk, DroppedEntriesGoToDiskAndComeBackExact) {
  FakeAsyncDevice dev;
  KvCacheShape shape;
  shape.n_layers = 2;
  shape.n_blocks = 8;
  shape.block_size = 2;
  shape.n_kv_heads = 1;
  shape.head_dim = 4;
  shape.dtype = DType::kI8;  // scales travel too
  KvCache kv(dev, shape);
  fill_pattern(kv);
  HostKvTier tier(dev, kv, 1);
  HostPrefixCache cache(tier);
  TempDir dir;
  DiskKvTier disk(dir.path, tier.slot_bytes(0), 4);
  cache.set_disk(&disk);
  const int32_t t1[] = {1, 2}, t2[] = {3, 4}, t3[] = {5, 6}, bad[] = {3, 9};
  EXPECT_TRUE(cache.offer(1, 10, 5, 0, {1, 2}));
  EXPECT_TRUE(cache.offer(2, 11, 6, 5, {3, 4}));  // host full: 10 goes to disk
  EXPECT_TRUE(cache.offer(3, 12, 7, 6, {5, 6}));  // and 11
  EXPECT_EQ(cache.n_entries(), 1);
  EXPECT_EQ(disk.n_entries(), 2);
  EXPECT_FALSE(cache.offer(4, 10, 8, 0, {1, 2}));  // the hash is on disk: one entry per hash
  EXPECT_EQ(cache.bytes_to_disk(), 2 * tier.slot_bytes(0));
  cache.check_invariants();

  const HostPrefixCache::Ref r10 = cache.lookup(10, 0, t1, 2), r11 = cache.lookup(11, 5, t2, 2),
                             r12 = cache.lookup(12, 6, t3, 2);
  EXPECT_TRUE(r10.on_disk && r11.on_disk && !r12.on_disk);
  EXPECT_EQ(r11.serial, 6u);
  EXPECT_EQ(r12.serial, 7u);
  EXPECT_EQ(cache.lookup(11, 5, bad, 2).slot, -1);  // verified on disk as on the host
  EXPECT_EQ(cache.lookup(11, 4, t2, 2).slot, -1);
  ASSERT_EQ(cache.stage_from_disk({r10.slot, r11.slot}), 2);
  EXPECT_EQ(cache.copy_in_staged(0, 6), tier.slot_bytes(0));
  EXPECT_EQ(cache.copy_in_staged(1, 7), tier.slot_bytes(0));
  EXPECT_THROW(cache.copy_in_staged(2, 5), Error);
  EXPECT_TRUE(blocks_equal(kv, 6, 1));
  EXPECT_TRUE(blocks_equal(kv, 7, 2));
  EXPECT_FALSE(blocks_equal(kv, 7, 1));
  EXPECT_EQ(cache.bytes_from_disk(), 2 * tier.slot_bytes(0));
  EXPECT_EQ(disk.n_entries(), 2);  // a hit stays on disk

  // A failed read ends the staged run: the entries after it are not read.
  {
    FaultSpec once;
    once.times = 1;
    ScopedFault f(FaultPoint::kKvDiskRead, once);
    EXPECT_EQ(cache.stage_from_disk({r10.slot, r11.slot}), 0);
  }
  EXPECT_EQ(cache.lookup(10, 0, t1, 2).slot, -1);
  EXPECT_TRUE(cache.lookup(11, 5, t2, 2).on_disk);
  cache.check_invariants();

  // A failed write loses the dropped host entry, nothing else.
  {
    ScopedFault f(FaultPoint::kKvDiskWrite, FaultSpec{});
    EXPECT_TRUE(cache.offer(5, 13, 9, 0, {7, 8}));  // drops 12 from the host: its write fails
  }
  EXPECT_EQ(cache.lookup(12, 6, t3, 2).slot, -1);
  EXPECT_EQ(disk.write_failures(), 1);
  cache.check_invariants();
}

// ---- the scheduler ----

constexpr int64_t kB = 4;

float signature(const Sequence& s, int64_t pos) { return static_cast<float>(s.tokens[static_cast<size_t>(pos)] * 1000 + pos); }

// A one-layer f32 cache whose K at each computed position holds a signature of (token, position);
// a host prefix cache of n_host slots with a disk tier of n_disk slots behind it.
struct DiskRig {
  std::unique_ptr<Device> dev = create_cpu_device();
  KvCacheShape shape;
  std::unique_ptr<KvCache> kv;
  std::unique_ptr<BlockPool> pool;
  std::unique_ptr<Scheduler> sched;
  std::unique_ptr<HostKvTier> tier;
  std::unique_ptr<HostPrefixCache> host;
  std::unique_ptr<DiskKvTier> disk;
  std::vector<std::unique_ptr<Sequence>> seqs;
  int64_t finish_len = 1 << 20;
  int n_finished = 0;

  DiskRig(int64_t n_blocks, int64_t n_host, int64_t n_disk) {
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
    sched = std::make_unique<Scheduler>(c, *pool);
    tier = std::make_unique<HostKvTier>(*dev, *kv, n_host);
    host = std::make_unique<HostPrefixCache>(*tier);
    disk = std::make_unique<DiskKvTier>("", tier->slot_bytes(0), n_disk);
    host->set_disk(disk.get());
    sched->set_host_prefix_cache(host.get());
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
    host->check_invariants();
    return out;
  }
  // a's 12-token prompt (3 full blocks) runs; then a 20-token prompt evicts a's blocks 2 and 1
  // (in that order, tail first) from the 6-block pool (block 0 stays on the device): with one
  // host slot, block 2 goes on to disk. Returns the re-request of a's prompt and one more token.
  Sequence* evict_then_rerequest() {
    finish_len = 13;
    Sequence* a = add(0, 12, 1);
    while (a->state != SeqState::kFinished) step();
    finish_len = 21;
    add(1, 20, 20);
    while (n_finished < 2) step();
    finish_len = 15;
    return add(2, 13, 1);
  }
};

TEST(SchedulerDiskPrefix, EvictedBlocksComeBackFromDisk) {
  DiskRig rig(/*n_blocks=*/6, /*n_host=*/1, /*n_disk=*/8);
  Sequence* again = rig.evict_then_rerequest();
  EXPECT_EQ(rig.host->n_entries(), 1);
  EXPECT_GE(rig.disk->n_entries(), 1);
  std::vector<ScheduledSeq> first = rig.step();  // checks the restored K of every computed position
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(again->num_computed, 13);
  EXPECT_EQ(first[0].n_new, 1);
  EXPECT_EQ(rig.sched->prefix_cache_hits(), 12);  // one device block, then one host and one disk block
  EXPECT_EQ(rig.sched->host_prefix_hits(), 4);
  EXPECT_EQ(rig.sched->disk_prefix_hits(), 4);
  EXPECT_EQ(rig.sched->kv_bytes_from_disk(), rig.tier->slot_bytes(0));
  EXPECT_GE(rig.sched->kv_bytes_to_disk(), rig.tier->slot_bytes(0));
  EXPECT_EQ(again->n_cached_blocks, 3);
  while (rig.n_finished < 3) rig.step();
  EXPECT_EQ(rig.pool->n_free(), 6);
}

TEST(SchedulerDiskPrefix, ChainStopsAtTheStagingLimit) {
  DiskRig rig(/*n_blocks=*/6, /*n_host=*/1, /*n_disk=*/8);
  EXPECT_GE(rig.host->max_staged(), 1);
  rig.host->set_max_staged(0);  // no disk entry may be staged: the chain ends at the first one
  Sequence* again = rig.evict_then_rerequest();
  std::vector<ScheduledSeq> first = rig.step();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(rig.sched->disk_prefix_hits(), 0);
  EXPECT_EQ(rig.sched->prefix_cache_hits(), 8);  // device block 0, host block 1; block 2 is on disk
  EXPECT_EQ(again->num_computed, 13);
  while (rig.n_finished < 3) rig.step();
  EXPECT_EQ(rig.pool->n_free(), 6);
}

TEST(SchedulerDiskPrefix, FailedReadRecomputesTheBlocks) {
  DiskRig rig(/*n_blocks=*/6, /*n_host=*/1, /*n_disk=*/8);
  Sequence* again = rig.evict_then_rerequest();
  ScopedFault f(FaultPoint::kKvDiskRead, FaultSpec{});
  std::vector<ScheduledSeq> first = rig.step();  // recomputed positions get their signatures again
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(fault_counts(FaultPoint::kKvDiskRead).fires, 1);
  EXPECT_EQ(rig.disk->read_failures(), 1);
  EXPECT_EQ(rig.sched->disk_prefix_hits(), 0);
  EXPECT_LT(rig.sched->prefix_cache_hits(), 12);  // the hit ended before the unreadable block
  EXPECT_EQ(again->num_computed, 13);             // the rest was computed in the same step
  EXPECT_GT(first[0].n_new, 1);
  while (rig.n_finished < 3) rig.step();
  EXPECT_EQ(rig.pool->n_free(), 6);
}

TEST(SchedulerDiskPrefix, FailedWriteLosesOnlyThatBlock) {
  DiskRig rig(/*n_blocks=*/6, /*n_host=*/1, /*n_disk=*/8);
  Sequence* again = nullptr;
  {
    ScopedFault f(FaultPoint::kKvDiskWrite, FaultSpec{});
    again = rig.evict_then_rerequest();
  }
  EXPECT_GE(rig.disk->write_failures(), 1);
  EXPECT_EQ(rig.disk->n_entries(), 0);
  rig.step();
  EXPECT_EQ(again->num_computed, 13);
  EXPECT_EQ(rig.sched->disk_prefix_hits(), 0);
  while (rig.n_finished < 3) rig.step();
  EXPECT_EQ(rig.pool->n_free(), 6);
}

}  // namespace
}  // namespace eli
