// tests/cpp/test_cuda_kernels.cc: the CUDA Embedding entries (f32, bf16 and f16 tables, with and
// without a scale) against the CPU "ref" entry of the same dtype on odd shapes, bit-exact; a check
// that every CUDA entry has a parity suite; the CUDA device's pool and copies; and the CPU-only
// stand-ins. (NormCast, GatedAct, RopeKvWrite: test_cuda_mixed_elementwise.cc; GEMV / GEMM:
// test_cuda_gemm.cc; attention: test_cuda_model_kernels.cc, test_cuda_attention_bf16.cc.)
// Skips with "no CUDA device" when the build or the machine has no GPU. Uses only the Device API
// (no CUDA headers): buffers come from create_cuda_device(0), kernels run on its default stream.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "eli/error.h"
#include "kernels/ops.h"
#include "kernels/ref/float_convert.h"
#include "kernels/registry.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"
#include "tests/cpp/device_test_util.h"

namespace eli {
namespace {

class CudaKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    dev_ = create_cuda_device(0);
    ctx_.stream = dev_->default_stream().native();
  }
  std::vector<const KernelEntry*> cuda_entries(Op op) const {
    std::vector<const KernelEntry*> out;
    for (const KernelEntry& e : all_kernels()) {
      if (e.device == DeviceKind::kCUDA && e.op == op) out.push_back(&e);
    }
    return out;
  }
  std::unique_ptr<Device> dev_;
  ExecContext ctx_;
};

TEST_F(CudaKernelTest, EmbeddingMatchesRef) {
  auto entries = cuda_entries(Op::kEmbedding);
  ASSERT_FALSE(entries.empty());
  std::mt19937 rng(11);
  for (const KernelEntry* e : entries) {
    const KernelEntry* ref = find_kernel(Op::kEmbedding, DeviceKind::kCPU, e->dtype, "ref");
    ASSERT_NE(ref, nullptr) << dtype_name(e->dtype);
    ASSERT_TRUE(e->dtype == DType::kF32 || e->dtype == DType::kBF16 || e->dtype == DType::kF16)
        << dtype_name(e->dtype);
    const bool f16 = e->dtype == DType::kF16;
    for (int64_t hidden : {8, 100, 769, 4096}) {
      for (int64_t n_tokens : {1, 3, 17, 129}) {
        // Gemma scales rows by sqrt(hidden); 1 is the identity; a negative scale flips signs.
        const float scale = n_tokens == 3 ? std::sqrt(static_cast<float>(hidden)) : n_tokens == 17 ? -0.37f : 1.0f;
        const int64_t vocab = 37;
        std::vector<float> table_f = random_floats(vocab * hidden, rng);
        std::vector<uint16_t> table_b(table_f.size());  // the 16-bit table (bf16 or f16 bits)
        for (size_t i = 0; i < table_f.size(); ++i) {
          if (f16) {
            table_b[i] = f32_to_f16(table_f[i]);
            continue;
          }
          uint32_t bits;
          std::memcpy(&bits, &table_f[i], 4);
          table_b[i] = static_cast<uint16_t>(bits >> 16);
        }
        if (f16 && hidden == 100) {  // f16 edge values (row 0 is read): subnormals, +-largest finite, -0
          table_b[0] = 0x0001;
          table_b[1] = 0x7bff;
          table_b[2] = 0xfbff;
          table_b[3] = 0x8000;
          table_b[4] = 0x83ff;
        }
        std::vector<int32_t> ids(n_tokens);
        for (int32_t& id : ids) id = static_cast<int32_t>(rng() % vocab);
        ids[0] = -5;  // out of range both ways: clamped, never read out of bounds
        if (n_tokens > 1) ids[1] = static_cast<int32_t>(vocab + 100);
        std::vector<float> out(n_tokens * hidden, 0.f);
        const bool bf16 = e->dtype == DType::kBF16 || f16;  // a 16-bit table
        const void* h_table = bf16 ? static_cast<const void*>(table_b.data()) : table_f.data();
        EmbeddingArgs h{out.data(), h_table, ids.data(), n_tokens, hidden, vocab, scale};
        ref->fn(&h, ExecContext{});

        DeviceBuffer<float> d_tf(*dev_, table_f);
        DeviceBuffer<uint16_t> d_tb(*dev_, table_b);
        DeviceBuffer<int32_t> d_ids(*dev_, ids);
        DeviceBuffer<float> d_out(*dev_, static_cast<size_t>(n_tokens * hidden));
        const void* d_table = bf16 ? static_cast<const void*>(d_tb.get()) : d_tf.get();
        EmbeddingArgs d{d_out.get(), d_table, d_ids.get(), n_tokens, hidden, vocab, scale};
        e->fn(&d, ctx_);
        dev_->synchronize();
        expect_close(d_out.download(), out, 0.f, 0.f,
                     std::string("embedding ") + dtype_name(e->dtype) + " hidden=" + std::to_string(hidden) +
                         " tokens=" + std::to_string(n_tokens) + " scale=" + std::to_string(scale));
      }
    }
  }
}

// Every CUDA entry must have a parity driver in one of the CUDA suites (the CPU-side twin of this
// check, KernelRegistry.EveryEntryHasAParityTest, names them): an op not listed here fails.
TEST_F(CudaKernelTest, EveryEntryIsCovered) {
  const std::vector<std::pair<Op, const char*>> covered = {
      {Op::kEmbedding, "CudaKernelTest.EmbeddingMatchesRef"},
      {Op::kAttention, "CudaKernelOps.AttentionMatchesRef (f32), test_cuda_attention_bf16.cc (bf16 / f16)"},
      {Op::kGemv, "CudaKernelGemvTest"},
      {Op::kGemm, "CudaKernelGemmTest"},
      {Op::kNormCast, "CudaKernelMixedTest.NormCastMatchesRef"},
      {Op::kGatedAct, "CudaKernelMixedTest.GatedActMatchesRef, CudaKernelOps.GatedActF32MatchesRef"},
      {Op::kRopeKvWrite, "CudaKernelMixedTest.RopeKvWrite*, CudaKernelOps.RopeKvWrite*"},
      {Op::kSample, "test_cuda_sampling.cc"},
      {Op::kScatterTokens, "CudaKernelMixedTest.ScatterTokensMatchesRef"},
  };
  for (const KernelEntry& e : all_kernels()) {
    if (e.device != DeviceKind::kCUDA) continue;
    bool found = false;
    for (const auto& c : covered) found = found || c.first == e.op;
    EXPECT_TRUE(found) << "CUDA entry " << op_name(e.op) << "/" << dtype_name(e.dtype) << "/" << e.variant
                       << " has no parity driver";
  }
}

TEST_F(CudaKernelTest, DeviceCopiesAndStats) {
  std::mt19937 rng(3);
  std::vector<float> a = random_floats(12345, rng);
  DeviceBuffer<float> d1(*dev_, a), d2(*dev_, a.size());
  dev_->copy_device_to_device(d2.get(), d1.get(), a.size() * sizeof(float));
  EXPECT_EQ(d2.download(), a);
  dev_->memset_zero(d2.get(), a.size() * sizeof(float));
  for (float v : d2.download()) ASSERT_EQ(v, 0.f);
  MemoryStats s = dev_->memory_stats();
  EXPECT_GE(s.in_use_bytes, 2 * a.size() * sizeof(float));
  EXPECT_GT(dev_->available_bytes(), 0u);
  EXPECT_EQ(dev_->id(), (DeviceId{DeviceKind::kCUDA, 0}));
}

TEST_F(CudaKernelTest, OutOfMemoryIsATypedError) {
  SizeClassPool& pool = as_pooled(*dev_)->pool();
  const uint64_t huge = dev_->available_bytes() + (64ull << 30);
  try {
    dev_->allocate(huge);
    FAIL() << "allocation of " << huge << " bytes succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory);
    EXPECT_NE(std::string(e.what()).find("device free"), std::string::npos) << e.what();
  }
  // The device still works afterwards (OOM is not sticky).
  DeviceBuffer<float> ok(*dev_, 1000);
  pool.set_budget(pool.stats().reserved_bytes + (1u << 20));
  EXPECT_THROW(dev_->allocate(64u << 20), Error);
  pool.set_budget(0);
}

// A decode-like loop (same allocations and kernels every step) makes no driver allocations after
// the first step.
TEST_F(CudaKernelTest, RepeatedLoopMakesNoDriverAllocs) {
  const KernelEntry& norm = get_kernel(Op::kNormCast, DeviceKind::kCUDA, DType::kF32);
  const int64_t rows = 17, hidden = 4096;
  std::mt19937 rng(5);
  std::vector<float> w = random_floats(hidden, rng);
  DeviceBuffer<float> d_w(*dev_, w);
  auto step = [&]() {
    DeviceBuffer<float> x(*dev_, static_cast<size_t>(rows * hidden)), res(*dev_, static_cast<size_t>(rows * hidden));
    DeviceBuffer<float> out(*dev_, static_cast<size_t>(rows * hidden)), scratch(*dev_, size_t{3 << 20});
    dev_->memset_zero(x.get(), rows * hidden * sizeof(float), ctx_.stream);
    dev_->memset_zero(res.get(), rows * hidden * sizeof(float), ctx_.stream);
    NormCastArgs a{out.get(), x.get(), d_w.get(), rows, hidden, hidden, hidden, 1e-6f, 0.f, DType::kF32};
    norm.fn(&a, ctx_);
    a.out = res.get();
    a.accumulate = true;  // the post-norm residual add
    norm.fn(&a, ctx_);
  };
  step();
  const uint64_t warm = dev_->memory_stats().n_driver_allocs;
  for (int i = 0; i < 50; ++i) step();
  dev_->synchronize();
  EXPECT_EQ(dev_->memory_stats().n_driver_allocs, warm);
}

TEST(CudaKernelBuild, CpuOnlyBuildThrowsNotCompiled) {
  if (cuda_compiled()) GTEST_SKIP() << "built with CUDA";
  EXPECT_EQ(cuda_device_count(), 0);
  try {
    create_cuda_device(0);
    FAIL() << "create_cuda_device succeeded in a CPU-only build";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotCompiled);
  }
}

}  // namespace
}  // namespace eli
