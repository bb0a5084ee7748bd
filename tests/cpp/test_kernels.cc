// tests/cpp/test_kernels.cc: kernel registry tests (keys unique, formats, every kernel has a
// reference and a parity test, every CPU ISA registers the whole op set) and parity of every
// Embedding (f32, bf16 and f16 tables, scale), NormCast (plain, in place, accumulate, weight
// offset) and GatedAct (SiLU and GELU-tanh) entry against the reference on odd shapes and strided
// (padded) rows, with and without a thread pool. GEMM / GEMV parity is in test_kernels_matmul.cc;
// Attention / RopeKvWrite parity and hand-checked references in test_kernels_attention.cc; the f16
// references' own checks in test_ref_f16.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "eli/error.h"
#include "kernel_test_util.h"
#include "kernels/ref/dequant_ref.h"

namespace eli {
namespace {

using ktest::candidates;
using ktest::expect_close;
using ktest::kSentinel;
using ktest::rand_vec;

constexpr Op kAllOps[] = {Op::kEmbedding, Op::kAttention, Op::kDequant,     Op::kGemv,          Op::kGemm,
                          Op::kNormCast,  Op::kGatedAct,  Op::kRopeKvWrite, Op::kSample, Op::kScatterTokens};

TEST(KernelRegistry, EntriesAreWellFormedAndUnique) {
  std::set<std::tuple<int, int, int, int, std::string>> keys;
  for (const KernelEntry& e : all_kernels()) {
    EXPECT_NE(e.fn, nullptr) << ktest::entry_name(e);
    EXPECT_TRUE(keys.insert({static_cast<int>(e.op), static_cast<int>(e.device), static_cast<int>(e.format),
                             static_cast<int>(e.dtype), e.variant}).second)
        << "duplicate " << ktest::entry_name(e);
    if (std::string(e.variant) == "ref") EXPECT_EQ(e.priority, 0) << ktest::entry_name(e);
    // Block-quantized rows are their own weight format (dequant, and the matrix products of
    // block weights); the matrix products also read eli's quantized layouts (kernels/wq_matrix.h);
    // everything else reads dense values.
    const bool wq = e.format == WeightFormat::kInt4Grouped || e.format == WeightFormat::kInt8Grouped ||
                    e.format == WeightFormat::kInt8Channel || e.format == WeightFormat::kFp8Channel;
    if (wq) {
      EXPECT_TRUE(e.op == Op::kGemv || e.op == Op::kGemm) << ktest::entry_name(e);
    } else {
      const bool blocks = e.op == Op::kDequant || ((e.op == Op::kGemv || e.op == Op::kGemm || e.op == Op::kEmbedding) &&
                                                   dtype_info(e.dtype).is_quantized);
      EXPECT_EQ(e.format, blocks ? WeightFormat::kGgufBlocks : WeightFormat::kDense) << ktest::entry_name(e);
    }
  }
  // Every op except kDequant has an f32 CPU reference; the matrix products, embedding and the KV
  // cache ops have 16-bit ones too.
  for (Op op : kAllOps) {
    if (op == Op::kDequant) continue;
    EXPECT_NE(find_kernel(op, DeviceKind::kCPU, DType::kF32, "ref"), nullptr) << op_name(op);
  }
  for (Op op : {Op::kEmbedding, Op::kAttention, Op::kGemv, Op::kGemm, Op::kRopeKvWrite})
    for (DType dt : {DType::kBF16, DType::kF16})
      EXPECT_NE(find_kernel(op, DeviceKind::kCPU, dt, "ref"), nullptr) << op_name(op) << " " << dtype_name(dt);
  // Dequant references are keyed by the GGUF block format: the dense key finds nothing.
  EXPECT_NE(find_kernel(Op::kDequant, DeviceKind::kCPU, WeightFormat::kGgufBlocks, DType::kQ4_K, "ref"), nullptr);
  EXPECT_EQ(find_kernel(Op::kDequant, DeviceKind::kCPU, DType::kQ4_K, "ref"), nullptr);
  EXPECT_EQ(find_kernel(Op::kGemm, DeviceKind::kCPU, WeightFormat::kGgufBlocks, DType::kF32), nullptr);
}

TEST(KernelRegistry, DefaultIsHighestPriorityUsable) {
  for (const KernelEntry& e : all_kernels()) {
    const KernelEntry* best = find_kernel(e.op, e.device, e.format, e.dtype);
    ASSERT_NE(best, nullptr) << ktest::entry_name(e);
    if (e.usable == nullptr || e.usable()) EXPECT_GE(best->priority, e.priority) << ktest::entry_name(e);
  }
  // An optimized CPU kernel always exists for the ops of the CPU forward pass.
  for (Op op : {Op::kEmbedding, Op::kGemm, Op::kGemv, Op::kNormCast, Op::kGatedAct, Op::kRopeKvWrite,
                Op::kAttention}) {
    const KernelEntry* e = find_kernel(op, DeviceKind::kCPU, DType::kF32);
    ASSERT_NE(e, nullptr) << op_name(op);
    EXPECT_NE(std::string(e->variant), "ref") << op_name(op);
  }
  for (Op op : {Op::kEmbedding, Op::kGemm, Op::kGemv}) {
    const KernelEntry* e = find_kernel(op, DeviceKind::kCPU, DType::kBF16);
    ASSERT_NE(e, nullptr) << op_name(op);
    EXPECT_NE(std::string(e->variant), "ref") << op_name(op);
  }
}

TEST(KernelRegistry, MissingKernelThrowsUnsupported) {
  EXPECT_EQ(find_kernel(Op::kGemm, DeviceKind::kCPU, DType::kI64), nullptr);
  EXPECT_EQ(find_kernel(Op::kGemm, DeviceKind::kCPU, DType::kF32, "no_such_variant"), nullptr);
  try {
    get_kernel(Op::kGemm, DeviceKind::kCPU, DType::kI64);
    FAIL() << "expected eli::Error";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::kUnsupported);
    const std::string msg = err.what();
    EXPECT_NE(msg.find("gemm"), std::string::npos) << msg;
    EXPECT_NE(msg.find("i64"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cpu"), std::string::npos) << msg;
    EXPECT_NE(msg.find("dense"), std::string::npos) << msg;
  }
  try {
    get_kernel(Op::kDequant, DeviceKind::kCPU, DType::kQ4_K);  // dense Q4_K: no such key
    FAIL() << "expected eli::Error";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(std::string(err.what()).find("dequant"), std::string::npos) << err.what();
  }
  EXPECT_STREQ(op_name(Op::kAttention), "attention");
  EXPECT_STREQ(op_name(Op::kGatedAct), "gated_act");
  EXPECT_STREQ(op_name(Op::kCount), "unknown_op");
  EXPECT_STREQ(gated_act_name(GatedAct::kNone), "none");
  EXPECT_STREQ(gated_act_name(GatedAct::kSilu), "silu");
  EXPECT_STREQ(gated_act_name(GatedAct::kGeluTanh), "gelu_tanh");
}

// Every non-ref kernel (CPU or CUDA) has a CPU reference of the same key to be compared with.
TEST(KernelRegistry, EveryKernelHasAReference) {
  for (const KernelEntry& e : all_kernels()) {
    if (std::string(e.variant) == "ref") {
      EXPECT_EQ(e.device, DeviceKind::kCPU) << ktest::entry_name(e);
      continue;
    }
    EXPECT_NE(find_kernel(e.op, DeviceKind::kCPU, e.format, e.dtype, "ref"), nullptr) << ktest::entry_name(e);
  }
}

// Every (op, device) of the registry has a parity test against its reference; a new op must add
// one (and its line here). CPU: the Kernel* suites of test_kernels*.cc walk every usable entry;
// dequant is checked against gguf-py in test_gguf.cc, sampling in test_sampling_ref.cc. CUDA: the
// Cuda* suites (run on the GPU machine).
TEST(KernelRegistry, EveryEntryHasAParityTest) {
  const std::map<std::pair<Op, DeviceKind>, const char*> covered = {
      {{Op::kEmbedding, DeviceKind::kCPU}, "KernelEmbedding"},
      {{Op::kNormCast, DeviceKind::kCPU}, "KernelNormCast"},
      {{Op::kGatedAct, DeviceKind::kCPU}, "KernelGatedAct"},
      {{Op::kGemm, DeviceKind::kCPU}, "KernelGemm, QuantMatmul (GGUF blocks)"},
      {{Op::kGemv, DeviceKind::kCPU}, "KernelGemv, QuantMatmul (GGUF blocks)"},
      {{Op::kAttention, DeviceKind::kCPU}, "KernelAttention"},
      {{Op::kRopeKvWrite, DeviceKind::kCPU}, "KernelRopeKvWrite"},
      {{Op::kDequant, DeviceKind::kCPU}, "test_gguf.cc, QuantDequant (test_kernels_quant.cc)"},
      {{Op::kSample, DeviceKind::kCPU}, "test_sampling_ref.cc"},
      {{Op::kScatterTokens, DeviceKind::kCPU}, "CudaKernelMixedTest.ScatterTokensMatchesRef"},
      {{Op::kEmbedding, DeviceKind::kCUDA}, "CudaKernelTest.EmbeddingMatchesRef"},
      {{Op::kAttention, DeviceKind::kCUDA}, "CudaKernelOps.AttentionMatchesRef, test_cuda_attention_bf16.cc"},
      {{Op::kGemv, DeviceKind::kCUDA}, "CudaKernelGemvTest"},
      {{Op::kGemm, DeviceKind::kCUDA}, "CudaKernelGemmTest"},
      {{Op::kNormCast, DeviceKind::kCUDA}, "CudaKernelMixedTest.NormCastMatchesRef"},
      {{Op::kGatedAct, DeviceKind::kCUDA}, "CudaKernelMixedTest.GatedActMatchesRef"},
      {{Op::kRopeKvWrite, DeviceKind::kCUDA}, "CudaKernelMixedTest.RopeKvWriteMatchesRef"},
      {{Op::kSample, DeviceKind::kCUDA}, "test_cuda_sampling.cc"},
      {{Op::kScatterTokens, DeviceKind::kCUDA}, "CudaKernelMixedTest.ScatterTokensMatchesRef"},
  };
  for (const KernelEntry& e : all_kernels()) {
    if (std::string(e.variant) == "ref") continue;
    EXPECT_TRUE(covered.count({e.op, e.device})) << ktest::entry_name(e) << " has no parity test";
  }
}

// Each CPU instruction set registers the whole f32 op set of the CPU forward pass, and bf16
// weights for the matrix products and the embedding (a dropped registration would silently fall
// back to the slow reference).
TEST(KernelRegistry, CpuIsaVariantsRegisterTheFullOpSet) {
  const std::set<std::pair<Op, DType>> want = {
      {Op::kEmbedding, DType::kF32}, {Op::kEmbedding, DType::kBF16}, {Op::kGemm, DType::kF32},
      {Op::kGemm, DType::kBF16},     {Op::kGemv, DType::kF32},       {Op::kGemv, DType::kBF16},
      {Op::kNormCast, DType::kF32},  {Op::kGatedAct, DType::kF32},   {Op::kRopeKvWrite, DType::kF32},
      {Op::kAttention, DType::kF32}, {Op::kRopeKvWrite, DType::kI8},  {Op::kRopeKvWrite, DType::kF8E4M3},
      {Op::kAttention, DType::kI8},  {Op::kAttention, DType::kF8E4M3}};  // int8 / fp8 KV cache
  std::map<std::string, std::set<std::pair<Op, DType>>> by_variant, gguf_by_variant;
  for (const KernelEntry& e : all_kernels()) {
    const std::string v = e.variant;
    // The ISA variants (one driver, inner loops per instruction set); "ref" and single-variant
    // kernels such as the CPU sampler ("cpu") are not per-ISA.
    if (e.device != DeviceKind::kCPU || (v != "generic" && v != "avx2" && v != "avx512")) continue;
    if (e.format == WeightFormat::kGgufBlocks) {  // the GGUF block matmuls: every type, both ops
      EXPECT_TRUE(gguf_by_variant[v].insert({e.op, e.dtype}).second) << ktest::entry_name(e);
      continue;
    }
    if (e.format != WeightFormat::kDense) {  // eli's quantized layouts (tested in test_kernels_wq.cc)
      continue;
    }
    EXPECT_TRUE(by_variant[v].insert({e.op, e.dtype}).second) << ktest::entry_name(e);
  }
  ASSERT_TRUE(by_variant.count("generic"));
  for (const auto& [variant, ops] : by_variant) EXPECT_EQ(ops, want) << "CPU variant " << variant;
  std::set<std::pair<Op, DType>> gguf_want;
  for (DType q : kGgufBlockTypes) gguf_want.insert({{Op::kGemv, q}, {Op::kGemm, q}});
  EXPECT_EQ(gguf_by_variant["generic"], gguf_want);
#ifdef ELI_X86
  EXPECT_EQ(gguf_by_variant["avx2"], gguf_want);
#endif
}

// ---- Embedding ----------------------------------------------------------------------------

TEST(KernelEmbedding, MatchesReferenceClampsIdsAndScales) {
  auto cands = candidates(Op::kEmbedding);
  ASSERT_FALSE(cands.empty());
  std::mt19937 rng(3);
  const int64_t vocab = 50;
  for (const KernelEntry* e : cands)
    for (int64_t h : {1, 7, 64, 129})
      for (float scale : {1.0f, std::sqrt(static_cast<float>(h)), -0.37f}) {
        std::vector<float> tf = rand_vec(rng, static_cast<size_t>(vocab * h));
        // 16-bit tables (bf16 or f16: the entry's dtype) hold the rounded values of tf.
        const bool f16 = e->dtype == DType::kF16, is16 = e->dtype == DType::kBF16 || f16;
        std::vector<uint16_t> th(tf.size());
        for (size_t i = 0; i < tf.size(); ++i) th[i] = f16 ? f32_to_f16(tf[i]) : f32_to_bf16(tf[i]);
        std::vector<int32_t> ids = {0, 49, 7, -5, 53, 12, 12};
        const int64_t t = static_cast<int64_t>(ids.size());
        std::vector<float> ref(static_cast<size_t>(t * h), kSentinel);
        EmbeddingArgs ra{ref.data(), is16 ? static_cast<const void*>(th.data()) : tf.data(), ids.data(), t, h, vocab};
        ra.scale = scale;
        ktest::ref_of(*e).fn(&ra, ExecContext{});
        // Clamping: id -5 reads row 0, id 53 reads row 49; a row is the table's values times scale.
        for (int64_t j = 0; j < h; ++j) {
          ASSERT_EQ(ref[3 * h + j], ref[0 * h + j]);
          ASSERT_EQ(ref[4 * h + j], ref[1 * h + j]);
          const size_t i7 = static_cast<size_t>(7 * h + j);
          const float v = f16 ? f16_to_f32(th[i7]) : is16 ? bf16_to_f32(th[i7]) : tf[i7];
          ASSERT_EQ(ref[2 * h + j], v * scale);
        }
        for (ThreadPool* pool : ktest::pools_for(*e)) {
          std::vector<float> got(ref.size(), kSentinel);
          ktest::Stage st(e->device);
          EmbeddingArgs a = ra;
          a.out = st.inout(got);
          a.table = is16 ? static_cast<const void*>(st.in(th)) : st.in(tf);
          a.ids = st.in(ids);
          ExecContext ctx;
          ctx.pool = pool;
          e->fn(&a, ctx);
          st.finish();
          // One f32 multiplication of the same values: bit-exact.
          expect_close(got, ref, 0.0,
                       ktest::entry_name(*e) + " h=" + std::to_string(h) + " scale=" + std::to_string(scale));
        }
      }
}

// ---- NormCast -----------------------------------------------------------------------------

enum class NormMode { kPlain, kInPlace, kAccumulate, kAccumulateOffset };

TEST(KernelNormCast, MatchesReference) {
  auto cands = ktest::cpu_candidates(Op::kNormCast);
  ASSERT_FALSE(cands.empty());
  std::mt19937 rng(7);
  for (const KernelEntry* e : cands)
    for (int64_t rows : {1, 3, 17})
      for (int64_t h : {1, 7, 64, 300, 1025})
        for (NormMode mode : {NormMode::kPlain, NormMode::kInPlace, NormMode::kAccumulate, NormMode::kAccumulateOffset}) {
          const bool in_place = mode == NormMode::kInPlace;
          const bool acc = mode == NormMode::kAccumulate || mode == NormMode::kAccumulateOffset;
          const float offset = mode == NormMode::kAccumulateOffset || (mode == NormMode::kPlain && rows == 3) ? 1.0f : 0.0f;
          const int64_t xs = h + 5, os = in_place ? xs : h + 1;
          std::vector<float> x = rand_vec(rng, static_cast<size_t>(rows * xs), -3, 3);
          std::vector<float> w = rand_vec(rng, static_cast<size_t>(h), 0.5f - offset, 1.5f - offset);
          // The output before the call: residual rows when accumulating, else junk to overwrite;
          // padding columns hold sentinels that must stay.
          std::vector<float> out0 = rand_vec(rng, static_cast<size_t>(rows * os), -4, 4);
          for (int64_t r = 0; r < rows; ++r) out0[r * os + h] = kSentinel;
          std::vector<float> ref_x = x, ref_out = in_place ? x : out0;
          NormCastArgs ra{in_place ? static_cast<void*>(ref_x.data()) : ref_out.data(), ref_x.data(), w.data(), rows,
                          h, os, xs, 1e-6f, offset, DType::kF32};
          ra.accumulate = acc;
          ktest::ref_of(*e).fn(&ra, ExecContext{});
          if (in_place) ref_out = ref_x;
          for (ThreadPool* pool : ktest::pools_for(*e)) {
            std::vector<float> got_x = x, got_out = in_place ? x : out0;
            NormCastArgs a = ra;
            a.x = got_x.data();
            a.out = in_place ? static_cast<void*>(got_x.data()) : got_out.data();
            ExecContext ctx;
            ctx.pool = pool;
            e->fn(&a, ctx);
            if (in_place) got_out = got_x;
            const std::string what = ktest::entry_name(*e) + " rows=" + std::to_string(rows) + " h=" +
                                     std::to_string(h) + " mode=" + std::to_string(static_cast<int>(mode)) +
                                     (pool ? " pool" : "");
            expect_close(got_out, ref_out, 1e-5, what);
            if (!in_place) EXPECT_EQ(got_x, x) << what << ": x was written";
          }
        }
}

TEST(KernelNormCast, CpuWritesFloat32Only) {
  std::vector<float> x(8, 1.0f), w(8, 1.0f);
  std::vector<uint16_t> out(8);
  for (const KernelEntry* e : ktest::cpu_candidates(Op::kNormCast))
    for (DType dt : {DType::kBF16, DType::kF16}) {
      NormCastArgs a{out.data(), x.data(), w.data(), 1, 8, 8, 8, 1e-6f, 0.0f, dt};
      ktest::expect_error_kind(ErrorKind::kUnsupported, [&] { e->fn(&a, ExecContext{}); },
                               ktest::entry_name(*e) + " out " + dtype_name(dt));
    }
  // The reference takes 16-bit outputs, but accumulates only into float32.
  NormCastArgs a{out.data(), x.data(), w.data(), 1, 8, 8, 8, 1e-6f, 0.0f, DType::kBF16};
  a.accumulate = true;
  EXPECT_THROW(norm_cast_ref(&a, ExecContext{}), Error);
}

// ---- GatedAct -----------------------------------------------------------------------------

TEST(KernelGatedAct, MatchesReference) {
  auto cands = ktest::cpu_candidates(Op::kGatedAct);
  ASSERT_FALSE(cands.empty());
  std::mt19937 rng(5);
  for (const KernelEntry* e : cands)
    for (GatedAct act : {GatedAct::kSilu, GatedAct::kGeluTanh})
      for (int64_t rows : {1, 4, 33})
        for (int64_t inter : {1, 7, 64, 300}) {
          const int64_t is = 2 * inter + 3, os = inter + 2;
          std::vector<float> in = rand_vec(rng, static_cast<size_t>(rows * is), -12, 12);
          in[0] = -100.0f;  // exp overflow side; GELU: tanh saturated at -1
          in[static_cast<size_t>(inter - 1)] = inter > 1 ? 100.0f : in[static_cast<size_t>(inter - 1)];
          if (rows > 1) in[static_cast<size_t>(is)] = -4.5f;  // GELU: 1 + tanh cancels
          std::vector<float> out0(static_cast<size_t>(rows * os), kSentinel);
          double max_gate_up = 0.0;  // max |gate * up|
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < inter; ++j)
              max_gate_up = std::max(max_gate_up, std::fabs(static_cast<double>(in[r * is + j]) * in[r * is + inter + j]));
          std::vector<float> ref = out0;
          GatedActArgs ra{ref.data(), in.data(), rows, inter, os, is, DType::kF32, act};
          ktest::ref_of(*e).fn(&ra, ExecContext{});
          for (ThreadPool* pool : ktest::pools_for(*e)) {
            std::vector<float> got = out0;
            GatedActArgs a = ra;
            a.out = got.data();
            ExecContext ctx;
            ctx.pool = pool;
            e->fn(&a, ctx);
            // GELU-tanh in f32 (as PyTorch computes it) loses relative precision where 1 + tanh(z)
            // cancels (gate < -4): its error is a few f32 ulps of 0.5 |gate| |up|, so that is the
            // scale when every output of a small case is tiny.
            expect_close(got, ref, 1e-5,
                         ktest::entry_name(*e) + " " + gated_act_name(act) + " rows=" + std::to_string(rows) +
                             " inter=" + std::to_string(inter) + (pool ? " pool" : ""),
                         act == GatedAct::kGeluTanh ? 0.5 * max_gate_up : 1e-3);
          }
        }
}

TEST(KernelGatedAct, RejectsNoActivationAnd16BitOnCpu) {
  std::vector<float> in(8, 1.0f), out(4);
  for (const KernelEntry* e : ktest::cpu_candidates(Op::kGatedAct)) {
    GatedActArgs a{out.data(), in.data(), 1, 4, 4, 8, DType::kF32, GatedAct::kNone};
    EXPECT_THROW(e->fn(&a, ExecContext{}), Error) << ktest::entry_name(*e);
    a.act = GatedAct::kSilu;
    a.dtype = DType::kBF16;
    ktest::expect_error_kind(ErrorKind::kUnsupported, [&] { e->fn(&a, ExecContext{}); }, ktest::entry_name(*e));
  }
  GatedActArgs r{out.data(), in.data(), 1, 4, 4, 8, DType::kF32, GatedAct::kNone};
  EXPECT_THROW(gated_act_ref(&r, ExecContext{}), Error);
}

}  // namespace
}  // namespace eli
