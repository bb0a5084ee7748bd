// tests/cpp/test_device.cc: the CPU device, device names, the CPU-only CUDA stand-ins, and the
// SizeClassPool bookkeeping driven by a fake backend (no device needed). The decode-loop test is
// how we show that a warmed-up step makes no driver allocations.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "eli/device.h"
#include "eli/error.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"
#include "runtime/device/size_class_pool.h"

namespace eli {
namespace {

// Hands out fake, never-dereferenced addresses; counts calls; can be limited in capacity.
class FakeBackend : public PoolBackend {
 public:
  explicit FakeBackend(uint64_t capacity = UINT64_MAX) : capacity_(capacity) {}
  void* alloc(size_t bytes) override {
    ++n_alloc_calls;
    if (bytes > capacity_ - live_bytes) return nullptr;
    void* p = reinterpret_cast<void*>(next_);
    next_ += (bytes + 4095) / 4096 * 4096 + 4096;
    live[p] = bytes;
    live_bytes += bytes;
    return p;
  }
  void free(void* ptr, size_t bytes) override {
    auto it = live.find(ptr);
    ASSERT_NE(it, live.end()) << "backend free of unknown pointer";
    EXPECT_EQ(it->second, bytes) << "backend free with the wrong size";
    live_bytes -= it->second;
    live.erase(it);
    ++n_free_calls;
  }
  uint64_t free_bytes() const override { return capacity_ == UINT64_MAX ? 1ull << 40 : capacity_ - live_bytes; }
  const char* name() const override { return "fake"; }

  std::unordered_map<void*, size_t> live;
  uint64_t live_bytes = 0;
  uint64_t n_alloc_calls = 0, n_free_calls = 0;

 private:
  uint64_t capacity_;
  uintptr_t next_ = 0x100000;
};

constexpr size_t kMiB = 1u << 20;

void expect_consistent(const SizeClassPool& pool, const FakeBackend& backend) {
  const PoolStats s = pool.stats();
  EXPECT_EQ(s.reserved_bytes, backend.live_bytes);
  EXPECT_GE(s.reserved_bytes, s.in_use_bytes);
  EXPECT_GE(s.peak_in_use_bytes, s.in_use_bytes);
  EXPECT_EQ(s.n_live_blocks + s.n_cached_blocks, backend.live.size());
  EXPECT_EQ(s.n_driver_allocs - s.n_driver_frees, backend.live.size());
}

ErrorKind kind_of(const std::function<void()>& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.kind();
  }
  ADD_FAILURE() << "expected an eli::Error";
  return ErrorKind::kInternal;
}

TEST(DeviceNames, ParseAndFormat) {
  EXPECT_EQ(parse_device("cpu"), (DeviceId{DeviceKind::kCPU, 0}));
  EXPECT_EQ(parse_device("cuda"), (DeviceId{DeviceKind::kCUDA, 0}));
  EXPECT_EQ(parse_device("cuda:3"), (DeviceId{DeviceKind::kCUDA, 3}));
  EXPECT_EQ(device_name(DeviceId{DeviceKind::kCUDA, 1}), "cuda:1");
  EXPECT_EQ(device_name(DeviceId{}), "cpu");
  EXPECT_EQ(parse_device(device_name(DeviceId{DeviceKind::kCUDA, 7})), (DeviceId{DeviceKind::kCUDA, 7}));
  for (const char* bad : {"", "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:99999999999", "cuda:1 ", "auto"}) {
    EXPECT_EQ(kind_of([&] { parse_device(bad); }), ErrorKind::kInvalidArgument) << bad;
  }
}

TEST(DeviceCpu, AllocateCopyStats) {
  auto dev = create_cpu_device();
  EXPECT_EQ(dev->id(), (DeviceId{DeviceKind::kCPU, 0}));
  EXPECT_GT(dev->available_bytes(), 0u);
  std::vector<void*> ptrs;
  for (size_t n : {size_t{0}, size_t{1}, size_t{63}, size_t{1000}, size_t{3 * kMiB + 5}}) {
    void* p = dev->allocate(n);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << n;
    ptrs.push_back(p);
  }
  MemoryStats s = dev->memory_stats();
  EXPECT_EQ(s.n_allocs, 5u);
  EXPECT_EQ(s.n_driver_allocs, 5u);
  EXPECT_GE(s.in_use_bytes, 3 * kMiB + 1000);
  EXPECT_EQ(s.reserved_bytes, s.in_use_bytes);

  std::vector<float> src(250), dst(250, -1.f);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i) * 0.5f;
  dev->copy_host_to_device(ptrs[3], src.data(), 1000);
  dev->copy_device_to_device(ptrs[4], ptrs[3], 1000);
  dev->copy_device_to_host(dst.data(), ptrs[4], 1000);
  dev->synchronize();
  EXPECT_EQ(src, dst);
  dev->memset_zero(ptrs[4], 1000);
  dev->copy_device_to_host(dst.data(), ptrs[4], 1000);
  for (float v : dst) EXPECT_EQ(v, 0.f);

  for (void* p : ptrs) dev->free(p);
  s = dev->memory_stats();
  EXPECT_EQ(s.in_use_bytes, 0u);
  EXPECT_GT(s.reserved_bytes, 0u);  // cached
  EXPECT_GE(s.peak_in_use_bytes, 3 * kMiB + 1000);
  // Same sizes again: served from the cache.
  void* again = dev->allocate(1000);
  EXPECT_EQ(dev->memory_stats().n_driver_allocs, 5u);
  dev->free(again);

  PooledDevice* pooled = as_pooled(*dev);
  ASSERT_NE(pooled, nullptr);
  EXPECT_EQ(pooled->default_stream().native(), nullptr);
  EXPECT_GT(pooled->pool().release_cached(), 0u);
  EXPECT_EQ(dev->memory_stats().reserved_bytes, 0u);

  int on_stack = 0;
  // Only eli frees device memory: a foreign or double free is an eli bug (kInternal).
  EXPECT_EQ(kind_of([&] { dev->free(&on_stack); }), ErrorKind::kInternal);
  dev->free(nullptr);  // no-op
}

TEST(DeviceCpu, CreateDeviceAndCudaStandIns) {
  auto cpu = create_device(DeviceId{DeviceKind::kCPU, 0});
  EXPECT_EQ(cpu->id().kind, DeviceKind::kCPU);
  EXPECT_EQ(kind_of([] { create_device(DeviceId{DeviceKind::kCPU, 1}); }), ErrorKind::kInvalidArgument);
  if (cuda_compiled()) {
    // A CUDA build without a GPU: a clear device error, never a crash.
    if (cuda_device_count() == 0) {
      EXPECT_EQ(kind_of([] { create_cuda_device(0); }), ErrorKind::kDevice);
    }
    EXPECT_EQ(kind_of([] { create_cuda_device(-1); }), ErrorKind::kDevice);
    return;
  }
  EXPECT_EQ(cuda_device_count(), 0);
  std::string msg;
  EXPECT_EQ(kind_of([] { create_cuda_device(0); }, &msg), ErrorKind::kNotCompiled);
  EXPECT_NE(msg.find("eli was built without CUDA"), std::string::npos) << msg;
  EXPECT_EQ(kind_of([] { create_device(parse_device("cuda:0")); }), ErrorKind::kNotCompiled);
}

TEST(SizeClassPoolTest, RoundsToSizeClasses) {
  FakeBackend backend;
  SizeClassPool pool(&backend);
  EXPECT_EQ(pool.round_size(0), 512u);
  EXPECT_EQ(pool.round_size(1), 512u);
  EXPECT_EQ(pool.round_size(512), 512u);
  EXPECT_EQ(pool.round_size(513), 1024u);
  EXPECT_EQ(pool.round_size(kMiB - 1), kMiB);
  EXPECT_EQ(pool.round_size(kMiB), 2 * kMiB);
  EXPECT_EQ(pool.round_size(2 * kMiB + 1), 4 * kMiB);
  EXPECT_EQ(kind_of([&] { pool.round_size(SIZE_MAX - 10); }), ErrorKind::kOutOfMemory);
  EXPECT_EQ(kind_of([&] { pool.allocate(SIZE_MAX); }), ErrorKind::kOutOfMemory);
}

// A decode step allocates the same set of buffers every time: after one warm-up step, the pool
// must serve every later step from its free lists.
TEST(SizeClassPoolTest, DecodeLoopMakesNoDriverAllocsAfterWarmup) {
  FakeBackend backend;
  SizeClassPool pool(&backend);
  const std::vector<size_t> step_sizes = {4096 * 4, 4096 * 4, 11008 * 8, 32000 * 4, 100, 7, 3 * kMiB + 17};
  auto run_step = [&]() {
    std::vector<void*> bufs;
    for (size_t n : step_sizes) bufs.push_back(pool.allocate(n));
    // Frees interleaved with new allocations, as layer-by-layer activations are.
    pool.free(bufs[0]);
    bufs[0] = pool.allocate(step_sizes[0]);
    for (void* p : bufs) pool.free(p);
  };
  run_step();
  const PoolStats warm = pool.stats();
  for (int i = 0; i < 100; ++i) run_step();
  const PoolStats after = pool.stats();
  EXPECT_EQ(after.n_driver_allocs, warm.n_driver_allocs);
  EXPECT_EQ(backend.n_alloc_calls, warm.n_driver_allocs);
  EXPECT_EQ(after.reserved_bytes, warm.reserved_bytes);
  EXPECT_EQ(after.n_allocs, warm.n_allocs * 101);
  EXPECT_EQ(after.n_cache_hits, after.n_allocs - after.n_driver_allocs);
  EXPECT_EQ(after.in_use_bytes, 0u);
  expect_consistent(pool, backend);
}

TEST(SizeClassPoolTest, ReserveWarmsTheCache) {
  FakeBackend backend;
  SizeClassPool pool(&backend);
  pool.reserve(3000, 4);
  pool.reserve(5 * kMiB, 1);
  const uint64_t drivers = pool.stats().n_driver_allocs;
  EXPECT_EQ(drivers, 5u);
  EXPECT_EQ(pool.stats().in_use_bytes, 0u);
  std::vector<void*> p;
  for (int i = 0; i < 4; ++i) p.push_back(pool.allocate(2900));
  p.push_back(pool.allocate(5 * kMiB - 100));
  EXPECT_EQ(pool.stats().n_driver_allocs, drivers);
  for (void* q : p) pool.free(q);
  expect_consistent(pool, backend);
}

TEST(SizeClassPoolTest, ReserveIsAllOrNothing) {
  FakeBackend backend(5 * kMiB);
  SizeClassPool pool(&backend);
  EXPECT_EQ(kind_of([&] { pool.reserve(kMiB, 3); }), ErrorKind::kOutOfMemory);  // 3 x 2 MiB > 5 MiB
  EXPECT_TRUE(backend.live.empty());
  EXPECT_EQ(pool.stats().reserved_bytes, 0u);
  pool.reserve(kMiB, 2);
  EXPECT_EQ(pool.stats().n_cached_blocks, 2u);
  expect_consistent(pool, backend);
}

TEST(SizeClassPoolTest, BlocksStayOnTheirStream) {
  FakeBackend backend;
  SizeClassPool pool(&backend);
  void* s1 = reinterpret_cast<void*>(0x1);
  void* s2 = reinterpret_cast<void*>(0x2);
  void* a = pool.allocate(1000, s1);
  pool.free(a);
  void* b = pool.allocate(1000, s2);  // must not take s1's block
  EXPECT_NE(a, b);
  EXPECT_EQ(pool.stats().n_driver_allocs, 2u);
  void* c = pool.allocate(1000, s1);
  EXPECT_EQ(a, c);
  pool.free(b);
  pool.free(c);
  expect_consistent(pool, backend);
}

TEST(SizeClassPoolTest, LargeBlocksReusedWithinSlackOnly) {
  FakeBackend backend;
  SizeClassPool pool(&backend);  // slack 125%
  void* big = pool.allocate(8 * kMiB);
  pool.free(big);
  void* fits = pool.allocate(7 * kMiB);  // rounded 8 MiB: exact
  EXPECT_EQ(fits, big);
  pool.free(fits);
  void* smaller = pool.allocate(3 * kMiB);  // rounded 4 MiB: 8 MiB is too wasteful
  EXPECT_NE(smaller, big);
  EXPECT_EQ(pool.block_size(smaller), 4 * kMiB);
  pool.free(smaller);
  void* seven = pool.allocate(6 * kMiB + 1);  // rounded 8 MiB exact again
  EXPECT_EQ(seven, big);
  EXPECT_EQ(pool.stats().in_use_bytes, 8 * kMiB);
  pool.free(seven);
  // Within the slack: a cached 10 MiB block serves an 8 MiB class.
  void* ten = pool.allocate(10 * kMiB);
  pool.free(ten);
  pool.free(pool.allocate(8 * kMiB));  // takes the exact 8 MiB block first
  void* eight_a = pool.allocate(8 * kMiB);
  void* eight_b = pool.allocate(8 * kMiB);
  EXPECT_EQ(eight_a, big);
  EXPECT_EQ(eight_b, ten);
  EXPECT_EQ(pool.block_size(eight_b), 10 * kMiB);
  pool.free(eight_a);
  pool.free(eight_b);
  // Small classes are exact: a 1024 B block does not serve 512 B.
  void* k1 = pool.allocate(1024);
  pool.free(k1);
  void* half = pool.allocate(512);
  EXPECT_NE(half, k1);
  pool.free(half);
  expect_consistent(pool, backend);
}

TEST(SizeClassPoolTest, BudgetGivesOutOfMemoryWithNumbers) {
  FakeBackend backend;
  SizeClassPoolOptions opt;
  opt.budget_bytes = 8 * kMiB;
  SizeClassPool pool(&backend, opt);
  void* a = pool.allocate(4 * kMiB);
  std::string msg;
  EXPECT_EQ(kind_of([&] { pool.allocate(6 * kMiB); }, &msg), ErrorKind::kOutOfMemory);
  for (const char* word : {"requested 6291456", "in use 4194304", "reserved 4194304", "budget 8388608",
                           "device free"}) {
    EXPECT_NE(msg.find(word), std::string::npos) << word << " missing in: " << msg;
  }
  expect_consistent(pool, backend);
  // Cached blocks are released before giving up: free a, then 8 MiB fits.
  void* b = pool.allocate(2 * kMiB);
  pool.free(a);
  pool.free(b);
  void* c = pool.allocate(8 * kMiB);
  EXPECT_EQ(pool.stats().reserved_bytes, 8 * kMiB);
  pool.free(c);
  // Lowering the budget releases cache; removing it lifts the limit.
  pool.set_budget(4 * kMiB);
  EXPECT_EQ(pool.stats().reserved_bytes, 0u);
  EXPECT_EQ(kind_of([&] { pool.allocate(5 * kMiB); }), ErrorKind::kOutOfMemory);
  pool.set_budget(0);
  pool.free(pool.allocate(64 * kMiB));
  pool.set_budget(kMiB);
  EXPECT_EQ(kind_of([&] { pool.reserve(512, 10000); }), ErrorKind::kOutOfMemory);
  EXPECT_LE(pool.stats().reserved_bytes, kMiB);
  expect_consistent(pool, backend);
}

TEST(SizeClassPoolTest, BackendFailureReleasesCacheThenReports) {
  FakeBackend backend(10 * kMiB);
  SizeClassPool pool(&backend);
  void* a = pool.allocate(4 * kMiB);
  void* b = pool.allocate(4 * kMiB);
  pool.free(a);
  // 6 MiB does not fit next to 8 MiB held; releasing the cached 4 MiB makes it fit.
  void* c = pool.allocate(5 * kMiB);
  EXPECT_EQ(pool.stats().n_driver_frees, 1u);
  std::string msg;
  EXPECT_EQ(kind_of([&] { pool.allocate(4 * kMiB); }, &msg), ErrorKind::kOutOfMemory);
  EXPECT_NE(msg.find("backend allocation failed"), std::string::npos) << msg;
  EXPECT_NE(msg.find("budget none"), std::string::npos) << msg;
  pool.free(b);
  pool.free(c);
  expect_consistent(pool, backend);
}

TEST(SizeClassPoolTest, BadFreesAreErrors) {
  FakeBackend backend;
  SizeClassPool pool(&backend);
  void* a = pool.allocate(100);
  EXPECT_TRUE(pool.owns(a));
  pool.free(a);
  EXPECT_FALSE(pool.owns(a));
  EXPECT_EQ(kind_of([&] { pool.free(a); }), ErrorKind::kInternal);  // double free
  int x = 0;
  EXPECT_EQ(kind_of([&] { pool.free(&x); }), ErrorKind::kInternal);
  expect_consistent(pool, backend);
}

TEST(SizeClassPoolTest, RandomWorkloadKeepsStatsConsistent) {
  FakeBackend backend;
  {
    SizeClassPool pool(&backend);
    std::mt19937 rng(1234);
    std::vector<void*> live;
    uint64_t requested = 0;
    std::unordered_map<void*, size_t> sizes;
    for (int i = 0; i < 5000; ++i) {
      if (live.empty() || rng() % 3 != 0) {
        size_t n = rng() % 4 == 0 ? rng() % (8 * kMiB) : rng() % 20000;
        void* p = pool.allocate(n, reinterpret_cast<void*>(static_cast<uintptr_t>(rng() % 2)));
        ASSERT_GE(pool.block_size(p), n);
        live.push_back(p);
        sizes[p] = n == 0 ? 1 : n;
        requested += sizes[p];
      } else {
        size_t k = rng() % live.size();
        pool.free(live[k]);
        requested -= sizes[live[k]];
        live[k] = live.back();
        live.pop_back();
      }
      if (i % 500 == 0) {
        expect_consistent(pool, backend);
        EXPECT_EQ(pool.stats().requested_bytes, requested);
      }
      if (i == 2500) pool.release_cached();
    }
    std::set<void*> unique(live.begin(), live.end());
    EXPECT_EQ(unique.size(), live.size());
    expect_consistent(pool, backend);
  }
  // The destructor returns live and cached blocks alike.
  EXPECT_TRUE(backend.live.empty());
  EXPECT_EQ(backend.n_alloc_calls, backend.n_free_calls);
}

}  // namespace
}  // namespace eli
