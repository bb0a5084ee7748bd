// tests/cpp/test_memory_plan.cc: the start-up memory planner (runtime/engine/memory_plan.h)
// without a GPU: a fake CUDA Device (a SizeClassPool over a backend that hands out addresses it
// never backs, so budgets of tens of GiB cost nothing) with settable total / free figures. Covers
// the budget (fraction, bytes, more than the device can give), fraction validation, weights over
// the budget, the KV pool from what the budget leaves (allocator rounding included), explicit KV
// sizes over the budget, the allocator budget that follows, the KV dtype choice, and the CPU
// engine's handling of the new config fields.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "eli/engine.h"
#include "eli/error.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"
#include "runtime/engine/memory_plan.h"

namespace eli {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kMiB = uint64_t{1} << 20;

// Addresses without memory: the pool only does bookkeeping on them and the tests never touch them.
class FakeBackend : public PoolBackend {
 public:
  void* alloc(size_t bytes) override {
    const uintptr_t p = next_;
    next_ += (bytes + 4095) / 4096 * 4096;
    return reinterpret_cast<void*>(p);
  }
  void free(void*, size_t) override {}
  uint64_t free_bytes() const override { return free_bytes_; }
  const char* name() const override { return "fake"; }
  uint64_t free_bytes_ = 0;

 private:
  uintptr_t next_ = uintptr_t{1} << 44;
};

class FakeCudaDevice final : public PooledDevice {
 public:
  FakeCudaDevice(uint64_t total, uint64_t free) : total_(total), pool_(&backend_) { backend_.free_bytes_ = free; }
  DeviceId id() const override { return DeviceId{DeviceKind::kCUDA, 0}; }
  void* allocate(size_t bytes) override { return pool_.allocate(bytes); }
  void free(void* ptr) override { pool_.free(ptr); }
  void copy_host_to_device(void*, const void*, size_t, void*) override {}
  void copy_device_to_host(void*, const void*, size_t, void*) override {}
  void copy_device_to_device(void*, const void*, size_t, void*) override {}
  void copy_device_to_device_2d(void*, size_t, const void*, size_t, size_t, size_t, void*) override {}
  void memset_zero(void*, size_t, void*) override {}
  void synchronize() override {}
  MemoryStats memory_stats() const override { return pool_.stats().to_memory_stats(); }
  uint64_t available_bytes() const override { return backend_.free_bytes_; }
  uint64_t total_bytes() const override { return total_; }
  SizeClassPool& pool() override { return pool_; }
  void set_free(uint64_t b) { backend_.free_bytes_ = b; }

 private:
  uint64_t total_;
  FakeBackend backend_;  // outlives pool_
  SizeClassPool pool_;
};

// Llama-3.1-8B's attention shape: 32 layers, 8 KV heads of 128.
ModelSpec llama8b_spec() {
  ModelSpec s;
  s.architecture = "llama";
  s.vocab_size = 128256;
  s.hidden_size = 4096;
  s.intermediate_size = 14336;
  s.n_layers = 32;
  s.n_heads = 32;
  s.n_kv_heads = 8;
  s.head_dim = 128;
  s.max_position = 8192;
  return s;
}

EngineConfig cuda_config() {
  EngineConfig c;
  c.device = "cuda";
  return c;
}

// Runs `fn`, expecting an eli::Error of `kind`; returns its message.
template <typename Fn>
std::string error_of(ErrorKind kind, Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no eli::Error thrown";
  return "";
}

#define EXPECT_HAS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << "want '" << (part) << "' in: " << (text)

TEST(MemoryPlan, FormatBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(256 * kMiB), "256.0 MiB");
  EXPECT_EQ(format_bytes(80 * kGiB), "80.00 GiB");
}

TEST(MemoryPlan, BudgetIsFractionOfTotal) {
  FakeCudaDevice dev(80 * kGiB, 79 * kGiB);
  EngineConfig c = cuda_config();
  MemoryBudget b = plan_memory_budget(c, dev);
  EXPECT_EQ(b.total_bytes, 80 * kGiB);
  EXPECT_EQ(b.free_bytes, 79 * kGiB);
  EXPECT_EQ(b.held_bytes, 0u);
  EXPECT_EQ(b.budget_bytes, static_cast<uint64_t>(std::floor(0.9 * static_cast<double>(80 * kGiB))));
  EXPECT_DOUBLE_EQ(b.fraction, 0.9);
  EXPECT_EQ(b.headroom_bytes, kHeadroomFixedBytes + static_cast<uint64_t>(0.02 * static_cast<double>(b.budget_bytes)));
  EXPECT_EQ(b.pool_budget_bytes(), b.budget_bytes - b.headroom_bytes + kPoolSlackBytes);
  EXPECT_EQ(b.describe(), "72.00 GiB (0.90 of 80.00 GiB)");

  c.gpu_memory_utilization = 0.5;
  EXPECT_EQ(plan_memory_budget(c, dev).budget_bytes, 40 * kGiB);
}

TEST(MemoryPlan, BytesOverrideTheFraction) {
  FakeCudaDevice dev(80 * kGiB, 79 * kGiB);
  EngineConfig c = cuda_config();
  c.gpu_memory_utilization = 0.1;
  c.gpu_memory_bytes = 20 * kGiB;
  MemoryBudget b = plan_memory_budget(c, dev);
  EXPECT_EQ(b.budget_bytes, 20 * kGiB);
  EXPECT_EQ(b.fraction, 0.0);
  EXPECT_EQ(b.describe(), "20.00 GiB (gpu_memory_bytes)");
}

TEST(MemoryPlan, BudgetOverWhatIsFreeIsOutOfMemoryWithTheNumbers) {
  FakeCudaDevice dev(80 * kGiB, 10 * kGiB);  // another process holds 70 GiB
  EngineConfig c = cuda_config();
  std::string msg = error_of(ErrorKind::kOutOfMemory, [&] { plan_memory_budget(c, dev); });
  EXPECT_HAS(msg, "72.00 GiB (0.90 of 80.00 GiB)");
  EXPECT_HAS(msg, "10.00 GiB free");
  EXPECT_HAS(msg, "80.00 GiB total");
  EXPECT_HAS(msg, "70.00 GiB used by other processes");
  EXPECT_HAS(msg, "at most 0.12");
  // What eli already holds counts as obtainable.
  void* p = dev.allocate(4 * kGiB);
  c.gpu_memory_bytes = 14 * kGiB;
  MemoryBudget b = plan_memory_budget(c, dev);
  EXPECT_EQ(b.held_bytes, 4 * kGiB);
  c.gpu_memory_bytes = 14 * kGiB + 1;
  msg = error_of(ErrorKind::kOutOfMemory, [&] { plan_memory_budget(c, dev); });
  EXPECT_HAS(msg, "4.00 GiB held by eli");
  dev.free(p);
  // A whole device is fine when all of it is free.
  FakeCudaDevice idle(16 * kGiB, 16 * kGiB);
  c.gpu_memory_bytes = 0;
  c.gpu_memory_utilization = 1.0;
  EXPECT_EQ(plan_memory_budget(c, idle).budget_bytes, 16 * kGiB);
}

TEST(MemoryPlan, FractionMustBeInZeroOne) {
  FakeCudaDevice dev(80 * kGiB, 80 * kGiB);
  for (double f : {0.0, -0.5, 1.0001, 2.0, std::numeric_limits<double>::quiet_NaN(),
                   std::numeric_limits<double>::infinity()}) {
    EngineConfig c = cuda_config();
    c.gpu_memory_utilization = f;
    std::string msg = error_of(ErrorKind::kInvalidArgument, [&] { validate_memory_config(c); });
    EXPECT_HAS(msg, "gpu_memory_utilization must be in (0, 1]");
    error_of(ErrorKind::kInvalidArgument, [&] { plan_memory_budget(c, dev); });
  }
  EngineConfig ok = cuda_config();
  ok.gpu_memory_utilization = 1.0;
  validate_memory_config(ok);
  ok.gpu_memory_utilization = 1e-3;
  validate_memory_config(ok);
}

TEST(MemoryPlan, WeightsOverBudgetIsOutOfMemoryWithTheNumbers) {
  FakeCudaDevice dev(80 * kGiB, 80 * kGiB);
  EngineConfig c = cuda_config();
  c.gpu_memory_utilization = 0.1;  // 8 GiB
  MemoryBudget b = plan_memory_budget(c, dev);
  std::string msg = error_of(ErrorKind::kOutOfMemory, [&] { check_weights_fit(b, 16 * kGiB); });
  EXPECT_HAS(msg, "weights need 16.00 GiB, the budget is 8.00 GiB (0.10 of 80.00 GiB)");
  // Weights that fit but leave nothing past the headroom.
  msg = error_of(ErrorKind::kOutOfMemory, [&] { check_weights_fit(b, b.budget_bytes - b.headroom_bytes); });
  EXPECT_HAS(msg, "leave no room for the KV cache");
  EXPECT_HAS(msg, format_bytes(b.headroom_bytes));
  check_weights_fit(b, b.budget_bytes - b.headroom_bytes - 1);
  check_weights_fit(b, 1 * kGiB);
}

// The allocator footprint of a KV cache of n blocks, computed here independently of the planner.
uint64_t kv_footprint(FakeCudaDevice& dev, const KvCacheShape& s, int64_t n) {
  const uint64_t tensor = static_cast<uint64_t>(n * s.block_size * s.n_kv_heads * s.head_dim) *
                          static_cast<uint64_t>(dtype_info(s.dtype).block_bytes);
  return 2 * static_cast<uint64_t>(s.n_layers) * dev.pool().round_size(tensor);
}

TEST(MemoryPlan, KvTakesWhatTheBudgetLeavesWithRounding) {
  FakeCudaDevice dev(80 * kGiB, 80 * kGiB);
  EngineConfig c = cuda_config();
  const ModelSpec spec = llama8b_spec();
  MemoryBudget b = plan_memory_budget(c, dev);
  // "Weights" and "workspace" held through the pool, as the engine's upload would.
  const uint64_t weights = 15 * kGiB + 123457, workspace = 700 * kMiB + 999;
  void* w = dev.allocate(weights);
  void* ws = dev.allocate(workspace);
  const uint64_t held = dev.memory_stats().reserved_bytes;
  ASSERT_GE(held, weights + workspace);
  KvPlan plan = plan_device_kv_cache(c, spec, b, dev, weights, workspace, DType::kBF16);
  const KvCacheShape& s = plan.shape;
  EXPECT_EQ(s.dtype, DType::kBF16);
  EXPECT_EQ(s.n_layers, 32);
  EXPECT_EQ(s.bytes_per_block(), 2 * kMiB);  // 16 tokens x 8 heads x 128 x 2 B x (K, V) x 32 layers
  const uint64_t avail = b.budget_bytes - held - b.headroom_bytes;
  EXPECT_EQ(plan.available_bytes, avail);
  ASSERT_GE(s.n_blocks, 1);
  // Not capped: 64 full contexts of 8192 tokens want 32768 blocks, more than fit.
  EXPECT_LT(s.n_blocks, 64 * 8192 / 16);
  EXPECT_LE(kv_footprint(dev, s, s.n_blocks), avail);
  EXPECT_GT(kv_footprint(dev, s, s.n_blocks + 1), avail);  // the most that fits
  EXPECT_EQ(plan.footprint_bytes, kv_footprint(dev, s, s.n_blocks));
  EXPECT_EQ(plan.max_model_len, 8192);
  // A smaller fraction gives a proportionally smaller pool.
  c.gpu_memory_utilization = 0.5;
  MemoryBudget half = plan_memory_budget(c, dev);
  KvPlan small = plan_device_kv_cache(c, spec, half, dev, weights, workspace, DType::kBF16);
  EXPECT_LT(small.shape.n_blocks, s.n_blocks);
  EXPECT_LE(kv_footprint(dev, small.shape, small.shape.n_blocks), half.budget_bytes - held - half.headroom_bytes);
  EXPECT_GT(kv_footprint(dev, small.shape, small.shape.n_blocks + 1), half.budget_bytes - held - half.headroom_bytes);
  // f32 KV: twice the bytes per block, about half the blocks.
  c.gpu_memory_utilization = 0.9;
  KvPlan f32 = plan_device_kv_cache(c, spec, b, dev, weights, workspace, DType::kF32);
  EXPECT_EQ(f32.shape.bytes_per_block(), 4 * kMiB);
  EXPECT_NEAR(static_cast<double>(f32.shape.n_blocks), static_cast<double>(s.n_blocks) / 2, 64.0);
  dev.free(w);
  dev.free(ws);
}

// Compressed KV (int8 / fp8): a block is 1 byte per value plus a 4-byte f32 scale per (token, kv
// head), K and V, every layer; the planners count those smaller blocks (runtime/kv/kv_cache.h).
TEST(MemoryPlan, QuantizedKvBlocksHoldTwiceTheTokens) {
  const ModelSpec spec = llama8b_spec();
  for (DType q : {DType::kI8, DType::kF8E4M3}) {
    // CPU plan: exactly kv_cache_bytes / bytes_per_block blocks.
    EngineConfig c;
    c.kv_cache_bytes = 256 * kMiB;
    auto cpu = create_cpu_device();
    KvPlan f32 = plan_kv_cache(c, spec, *cpu);
    KvPlan qp = plan_kv_cache(c, spec, *cpu, q);
    EXPECT_EQ(f32.shape.bytes_per_block(), 4 * kMiB);
    // 16 tokens x 8 kv heads x (128 values + 4 scale bytes) x (K, V) x 32 layers.
    EXPECT_EQ(qp.shape.bytes_per_block(), 16u * 8 * (128 + 4) * 2 * 32);
    EXPECT_EQ(qp.shape.data_bytes_per_block(), 16u * 8 * 128);
    EXPECT_EQ(qp.shape.scale_bytes_per_block(), 16u * 8 * 4);
    EXPECT_EQ(f32.shape.n_blocks, 64);
    EXPECT_EQ(qp.shape.n_blocks, static_cast<int64_t>((256 * kMiB) / (16u * 8 * 132 * 2 * 32)));  // 248
    EXPECT_EQ(qp.shape.n_blocks, 248);
    EXPECT_EQ(qp.shape.dtype, q);
    EXPECT_EQ(qp.shape.query_dtype(), DType::kF32);
    // Device plan against a 16-bit cache: 2 x 128 / 132 = 1.94x the blocks in the same bytes.
    FakeCudaDevice dev(80 * kGiB, 80 * kGiB);
    EngineConfig g = cuda_config();
    g.kv_cache_bytes = 4 * kGiB;
    MemoryBudget b = plan_memory_budget(g, dev);
    KvPlan bf = plan_device_kv_cache(g, spec, b, dev, 15 * kGiB, 700 * kMiB, DType::kBF16);
    KvPlan qd = plan_device_kv_cache(g, spec, b, dev, 15 * kGiB, 700 * kMiB, q);
    EXPECT_EQ(bf.shape.n_blocks, 2048);  // 4 GiB / 2 MiB
    // The most blocks whose K, V and scale arrays, each rounded by the pool, fit in 4 GiB.
    auto footprint = [&](int64_t n) {
      return 64 * (dev.pool().round_size(static_cast<uint64_t>(n) * 16 * 8 * 128) +
                   dev.pool().round_size(static_cast<uint64_t>(n) * 16 * 8 * 4));
    };
    EXPECT_LE(footprint(qd.shape.n_blocks), 4 * kGiB);
    EXPECT_GT(footprint(qd.shape.n_blocks + 1), 4 * kGiB);
    EXPECT_EQ(qd.footprint_bytes, footprint(qd.shape.n_blocks));
    EXPECT_GE(static_cast<double>(qd.shape.n_blocks), 1.9 * static_cast<double>(bf.shape.n_blocks));
    EXPECT_LE(static_cast<double>(qd.shape.n_blocks), 2.0 * 128.0 / 132.0 * static_cast<double>(bf.shape.n_blocks));
  }
}

TEST(MemoryPlan, KvCappedByFullContexts) {
  FakeCudaDevice dev(80 * kGiB, 80 * kGiB);
  EngineConfig c = cuda_config();
  c.max_num_seqs = 4;
  c.max_model_len = 1000;  // 63 blocks of 16 per sequence
  MemoryBudget b = plan_memory_budget(c, dev);
  KvPlan plan = plan_device_kv_cache(c, llama8b_spec(), b, dev, 2 * kGiB, 100 * kMiB, DType::kBF16);
  EXPECT_EQ(plan.shape.n_blocks, 4 * 63);
  EXPECT_EQ(plan.max_model_len, 1000);
}

TEST(MemoryPlan, ExplicitKvSizesMustFitTheBudget) {
  FakeCudaDevice dev(80 * kGiB, 80 * kGiB);
  EngineConfig c = cuda_config();
  c.gpu_memory_bytes = 20 * kGiB;
  const ModelSpec spec = llama8b_spec();
  MemoryBudget b = plan_memory_budget(c, dev);
  const uint64_t weights = 16 * kGiB, workspace = 256 * kMiB;
  const uint64_t avail = b.budget_bytes - weights - workspace - b.headroom_bytes;  // no pool allocations here

  c.num_kv_blocks = 100;  // 200 MiB
  KvPlan plan = plan_device_kv_cache(c, spec, b, dev, weights, workspace, DType::kBF16);
  EXPECT_EQ(plan.shape.n_blocks, 100);
  c.num_kv_blocks = 4096;  // 8 GiB
  std::string msg = error_of(ErrorKind::kOutOfMemory,
                             [&] { plan_device_kv_cache(c, spec, b, dev, weights, workspace, DType::kBF16); });
  EXPECT_HAS(msg, "num_kv_blocks 4096");
  EXPECT_HAS(msg, "needs 8.00 GiB");
  EXPECT_HAS(msg, "20.00 GiB (gpu_memory_bytes)");
  EXPECT_HAS(msg, "leaves " + format_bytes(avail));
  EXPECT_HAS(msg, "weights (16.00 GiB)");
  EXPECT_HAS(msg, "workspaces (256.0 MiB)");
  EXPECT_HAS(msg, "headroom (" + format_bytes(b.headroom_bytes) + ")");

  c.num_kv_blocks = 0;
  c.kv_cache_bytes = 1 * kGiB;
  plan = plan_device_kv_cache(c, spec, b, dev, weights, workspace, DType::kBF16);
  EXPECT_EQ(plan.shape.n_blocks, 512);
  c.kv_cache_bytes = 8 * kGiB;
  msg = error_of(ErrorKind::kOutOfMemory,
                 [&] { plan_device_kv_cache(c, spec, b, dev, weights, workspace, DType::kBF16); });
  EXPECT_HAS(msg, "kv_cache_bytes 8589934592 (8.00 GiB)");
  EXPECT_HAS(msg, "leaves " + format_bytes(avail));
}

TEST(MemoryPlan, NoRoomForKvIsOutOfMemory) {
  FakeCudaDevice dev(80 * kGiB, 80 * kGiB);
  EngineConfig c = cuda_config();
  c.gpu_memory_bytes = 17 * kGiB;
  MemoryBudget b = plan_memory_budget(c, dev);
  // The weights fit the budget, but with a large workspace nothing is left past the headroom.
  std::string msg = error_of(ErrorKind::kOutOfMemory, [&] {
    plan_device_kv_cache(c, llama8b_spec(), b, dev, 16 * kGiB, 1 * kGiB, DType::kBF16);
  });
  EXPECT_HAS(msg, "no room for the KV cache");
  EXPECT_HAS(msg, "17.00 GiB (gpu_memory_bytes)");
  EXPECT_HAS(msg, "weights (16.00 GiB)");
  // Room for less than one block.
  const uint64_t ws = b.budget_bytes - 16 * kGiB - b.headroom_bytes - kMiB;
  msg = error_of(ErrorKind::kOutOfMemory, [&] {
    plan_device_kv_cache(c, llama8b_spec(), b, dev, 16 * kGiB, ws, DType::kBF16);
  });
  EXPECT_HAS(msg, "less than one KV block (2.0 MiB");
}

TEST(MemoryPlan, PoolBudgetStopsAllocationsPastThePlan) {
  FakeCudaDevice dev(80 * kGiB, 80 * kGiB);
  EngineConfig c = cuda_config();
  c.gpu_memory_bytes = 10 * kGiB;
  MemoryBudget b = plan_memory_budget(c, dev);
  apply_pool_budget(dev, b);
  EXPECT_EQ(dev.pool().stats().budget_bytes, b.pool_budget_bytes());
  void* weights = dev.allocate(4 * kGiB);
  KvPlan plan = plan_device_kv_cache(c, llama8b_spec(), b, dev, 4 * kGiB, 0, DType::kBF16);
  // The KV tensors as KvCache allocates them fit the pool's budget...
  std::vector<void*> kv;
  const uint64_t tensor = plan.shape.bytes_per_block() / 64 * static_cast<uint64_t>(plan.shape.n_blocks);
  for (int i = 0; i < 64; ++i) kv.push_back(dev.allocate(tensor));
  EXPECT_LE(dev.memory_stats().reserved_bytes, b.budget_bytes - b.headroom_bytes);
  // ...a little more (batch-shaped buffers) fits the slack, and past that the pool says no (the
  // KV footprint is within 64 tensors x 2 MiB of rounding of what the plan left).
  void* small = dev.allocate(kMiB);
  std::string msg = error_of(ErrorKind::kOutOfMemory, [&] { dev.allocate(kPoolSlackBytes + 256 * kMiB); });
  EXPECT_HAS(msg, "over budget");
  dev.free(small);
  for (void* p : kv) dev.free(p);
  dev.free(weights);
}

TEST(MemoryPlan, KvDtypeChoice) {
  const DeviceId cpu{DeviceKind::kCPU, 0}, cuda{DeviceKind::kCUDA, 0};
  EXPECT_EQ(choose_kv_cache_dtype("auto", DType::kBF16, cuda), DType::kBF16);
  EXPECT_EQ(choose_kv_cache_dtype("auto", DType::kF32, cuda), DType::kF32);
  EXPECT_EQ(choose_kv_cache_dtype("", DType::kBF16, cuda), DType::kBF16);
  EXPECT_EQ(choose_kv_cache_dtype("auto", DType::kBF16, cpu), DType::kF32);
  EXPECT_EQ(choose_kv_cache_dtype("float32", DType::kBF16, cuda), DType::kF32);
  EXPECT_EQ(choose_kv_cache_dtype("bfloat16", DType::kF32, cuda), DType::kBF16);
  EXPECT_EQ(choose_kv_cache_dtype("float32", DType::kBF16, cpu), DType::kF32);
  EXPECT_HAS(error_of(ErrorKind::kUnsupported, [&] { choose_kv_cache_dtype("bfloat16", DType::kBF16, cpu); }),
             "kv_cache_dtype bfloat16 is not supported on the CPU backend");
  EXPECT_HAS(error_of(ErrorKind::kUnsupported, [&] { choose_kv_cache_dtype("float16", DType::kBF16, cuda); }),
             "float16 needs float16 weights");
  // f16 weights: the cache follows them, and only an f16 cache is accepted.
  EXPECT_EQ(choose_kv_cache_dtype("auto", DType::kF16, cuda), DType::kF16);
  EXPECT_EQ(choose_kv_cache_dtype("float16", DType::kF16, cuda), DType::kF16);
  EXPECT_EQ(choose_kv_cache_dtype("auto", DType::kF16, cpu), DType::kF32);
  EXPECT_HAS(error_of(ErrorKind::kUnsupported, [&] { choose_kv_cache_dtype("bfloat16", DType::kF16, cuda); }),
             "with f16 weights is not supported");
  EXPECT_HAS(error_of(ErrorKind::kUnsupported, [&] { choose_kv_cache_dtype("float32", DType::kF16, cuda); }),
             "use auto or float16");
  EXPECT_HAS(error_of(ErrorKind::kUnsupported, [&] { choose_kv_cache_dtype("float16", DType::kF16, cpu); }),
             "not supported on the CPU backend");
  EXPECT_HAS(error_of(ErrorKind::kInvalidArgument, [&] { choose_kv_cache_dtype("fp9", DType::kBF16, cuda); }),
             "unknown kv_cache_dtype 'fp9'");
  // The compressed caches go on both backends, with any weight dtype (tests/cpp/test_memory_plan_kvquant.cc).
  for (DeviceId d : {cpu, cuda})
    for (DType w : {DType::kF32, DType::kBF16, DType::kF16}) {
      EXPECT_EQ(choose_kv_cache_dtype("int8", w, d), DType::kI8);
      EXPECT_EQ(choose_kv_cache_dtype("fp8", w, d), DType::kF8E4M3);
    }
}

// The CPU engine: the new fields are validated, the plan is the CPU one, the info reports them.
EngineConfig tiny_cpu_config() {
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_base";
  c.dtype = "float32";
  c.n_threads = 2;
  c.num_kv_blocks = 32;
  c.block_size = 4;
  return c;
}

TEST(MemoryPlan, CpuEngineValidatesAndReports) {
  EngineConfig c = tiny_cpu_config();
  c.gpu_memory_utilization = 1.5;
  EXPECT_HAS(error_of(ErrorKind::kInvalidArgument, [&] { Engine e(c); }), "gpu_memory_utilization");
  c.gpu_memory_utilization = 0.0;
  error_of(ErrorKind::kInvalidArgument, [&] { Engine e(c); });
  c = tiny_cpu_config();
  c.kv_cache_dtype = "bfloat16";
  EXPECT_HAS(error_of(ErrorKind::kUnsupported, [&] { Engine e(c); }), "CPU backend");
  c = tiny_cpu_config();
  c.gpu_memory_utilization = 0.01;  // ignored on the CPU
  Engine e(c);
  const EngineInfo& info = e.info();
  EXPECT_EQ(info.kv_cache_dtype, "f32");
  EXPECT_EQ(info.num_kv_blocks, 32);
  const uint64_t per_block = 4 * info.spec.n_kv_heads * info.spec.head_dim * 4 * 2 * info.spec.n_layers;
  EXPECT_EQ(info.memory.kv_bytes, 32 * per_block);
  EXPECT_EQ(info.memory.budget_bytes, 0u);
  EXPECT_GT(info.memory.total_bytes, 0u);
  MemoryStats m = e.memory_stats();
  EXPECT_GE(m.reserved_bytes, info.memory.kv_bytes);
}

}  // namespace
}  // namespace eli
