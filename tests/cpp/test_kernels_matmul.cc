// tests/cpp/test_kernels_matmul.cc: parity of every CPU GEMM and GEMV entry (f32 and bf16
// weights, every ISA variant usable here) against the reference: odd shapes, every row count of
// the decode regime (m = 1..8) and prefill sizes past the CPU driver's blocks (rows 96 / 256,
// weight rows 32 / 64, K chunks 192 / 512), bias, accumulate, strided (padded) rows whose padding
// must stay untouched, with and without a thread pool. GEMV also with each fusion: the RMSNorm
// prologue (with weight offset) and the gated epilogue (SiLU, GELU-tanh), alone and together.
// The CUDA entries have their own suites (test_cuda_gemm.cc: 16-bit x, 16-bit outputs).
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "eli/error.h"
#include "kernel_test_util.h"

namespace eli {
namespace {

using ktest::cpu_candidates;
using ktest::expect_close;
using ktest::kSentinel;
using ktest::rand_vec;

// ---- GEMM ---------------------------------------------------------------------------------

struct GemmCase {
  int64_t m, n, k;
  bool bias, accumulate;
};

void check_gemm(const KernelEntry& e, const GemmCase& c, std::mt19937& rng) {
  const int64_t xs = c.k + 3, os = c.n + 2;  // padded rows
  std::vector<float> x = rand_vec(rng, static_cast<size_t>(c.m * xs));
  const ktest::Weights w = ktest::rand_weights(rng, e.dtype, static_cast<size_t>(c.n * c.k));
  std::vector<float> bias = rand_vec(rng, static_cast<size_t>(c.n));
  std::vector<float> out0 = rand_vec(rng, static_cast<size_t>(c.m * os));
  for (int64_t i = 0; i < c.m; ++i) out0[i * os + c.n] = out0[i * os + c.n + 1] = kSentinel;

  std::vector<float> ref = out0;
  GemmArgs ra{ref.data(), x.data(), w.ptr(), c.bias ? bias.data() : nullptr, c.m, c.n, c.k, os, xs};
  ra.x_dtype = DType::kF32;
  ra.out_dtype = DType::kF32;
  ra.accumulate = c.accumulate;
  ktest::ref_of(e).fn(&ra, ExecContext{});

  for (ThreadPool* pool : ktest::pools_for(e)) {
    std::vector<float> got = out0;
    GemmArgs a = ra;
    a.out = got.data();
    ExecContext ctx;
    ctx.pool = pool;
    e.fn(&a, ctx);
    expect_close(got, ref, 1e-5,
                 ktest::entry_name(e) + " m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
                     " k=" + std::to_string(c.k) + " bias=" + std::to_string(c.bias) +
                     " acc=" + std::to_string(c.accumulate) + (pool ? " pool" : ""));
  }
}

TEST(KernelGemm, MatchesReferenceOnOddShapes) {
  auto cands = cpu_candidates(Op::kGemm);
  ASSERT_GE(cands.size(), 2u);  // at least the generic f32 and bf16 kernels
  std::mt19937 rng(1234);
  int i = 0;
  for (const KernelEntry* e : cands) {
    for (int64_t m : {1, 2, 3, 4, 5, 6, 7, 8, 9, 33, 130})
      for (int64_t n : {1, 5, 111, 769})
        for (int64_t k : {1, 13, 64, 300}) {
          ++i;
          check_gemm(*e, {m, n, k, i % 2 == 0, i % 3 == 0}, rng);
        }
  }
}

TEST(KernelGemm, MatchesReferenceAcrossBlocksAndKChunks) {
  // K past the K chunks (192 packed, 512 tiled) and not a multiple of 8; M past the row blocks
  // (96 tiled, 256 packed); N past the weight-row blocks (32 decode, 64 prefill).
  std::mt19937 rng(99);
  for (const KernelEntry* e : cpu_candidates(Op::kGemm)) {
    check_gemm(*e, {8, 70, 1100, true, false}, rng);
    check_gemm(*e, {200, 67, 1029, false, true}, rng);
    check_gemm(*e, {97, 65, 513, true, true}, rng);
    check_gemm(*e, {257, 130, 600, true, false}, rng);
    check_gemm(*e, {300, 33, 193, false, false}, rng);
  }
}

TEST(KernelGemm, EmptyShapes) {
  std::mt19937 rng(5);
  for (const KernelEntry* e : cpu_candidates(Op::kGemm)) {
    // k = 0: out = bias (or 0), or out += bias when accumulating.
    for (int64_t m : {1, 20})
      for (bool bias : {false, true})
        for (bool acc : {false, true}) {
          SCOPED_TRACE(ktest::entry_name(*e));
          check_gemm(*e, {m, 9, 0, bias, acc}, rng);
        }
    // m = 0 or n = 0: nothing is written.
    std::vector<float> out(6, kSentinel), x(6, 1.0f);
    const ktest::Weights w = ktest::rand_weights(rng, e->dtype, 6);
    for (int64_t m : {0, 2}) {
      GemmArgs a{out.data(), x.data(), w.ptr(), nullptr, m, m == 0 ? 3 : 0, 3, 3, 3};
      a.x_dtype = DType::kF32;
      e->fn(&a, ExecContext{});
      EXPECT_EQ(out, std::vector<float>(6, kSentinel)) << ktest::entry_name(*e) << " m=" << m;
    }
  }
}

TEST(KernelGemm, CpuTakesFloat32ActivationsOnly) {
  std::vector<float> x(16, 1.0f), w(16, 1.0f), out(16);
  for (const KernelEntry* e : cpu_candidates(Op::kGemm)) {
    GemmArgs a{out.data(), x.data(), w.data(), nullptr, 4, 4, 4, 4, 4};
    // The default x dtype is bf16 (the GPU path's): a CPU caller must say float32.
    ktest::expect_error_kind(ErrorKind::kUnsupported, [&] { e->fn(&a, ExecContext{}); },
                             ktest::entry_name(*e) + " x bf16");
    a.x_dtype = DType::kF32;
    a.out_dtype = DType::kBF16;
    ktest::expect_error_kind(ErrorKind::kUnsupported, [&] { e->fn(&a, ExecContext{}); },
                             ktest::entry_name(*e) + " out bf16");
  }
}

// ---- GEMV ---------------------------------------------------------------------------------

struct GemvCase {
  int64_t m, n, k;
  bool norm = false, bias = false;
  GatedAct gated = GatedAct::kNone;
  bool accumulate = false;
  float norm_offset = 0.0f;
  float x_scale = 1.0f;  // > 1: gate values far into the activations' tails
  std::string name() const {
    return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) + (norm ? " norm" : "") +
           (norm_offset != 0.0f ? "+1" : "") + (bias ? " bias" : "") + " " + gated_act_name(gated) +
           (accumulate ? " acc" : "") + (x_scale != 1.0f ? " x*" + std::to_string(x_scale) : "");
  }
};

void check_gemv(const KernelEntry& e, const GemvCase& c, std::mt19937& rng) {
  const int64_t n_out = c.gated != GatedAct::kNone ? c.n / 2 : c.n;
  const int64_t xs = c.k + 2, os = n_out + 3;  // padded rows
  std::vector<float> x = rand_vec(rng, static_cast<size_t>(c.m * xs), -2.0f * c.x_scale, 2.0f * c.x_scale);
  const ktest::Weights w = ktest::rand_weights(rng, e.dtype, static_cast<size_t>(c.n * c.k));
  std::vector<float> bias = rand_vec(rng, static_cast<size_t>(c.n));
  std::vector<float> g = rand_vec(rng, static_cast<size_t>(c.k), 0.5f - c.norm_offset, 1.5f - c.norm_offset);
  // Residual rows when accumulating, else junk that must be overwritten; padding holds sentinels.
  std::vector<float> out0 = rand_vec(rng, static_cast<size_t>(c.m * os), -3, 3);
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = n_out; j < os; ++j) out0[i * os + j] = kSentinel;

  std::vector<float> ref = out0;
  GemvArgs ra{ref.data(), x.data(), w.ptr(), c.bias ? bias.data() : nullptr, c.norm ? g.data() : nullptr,
              c.m, c.n, c.k, os, xs};
  ra.norm_eps = 1e-5f;
  ra.norm_weight_offset = c.norm_offset;
  ra.gated = c.gated;
  ra.accumulate = c.accumulate;
  ktest::ref_of(e).fn(&ra, ExecContext{});

  for (ThreadPool* pool : ktest::pools_for(e)) {
    std::vector<float> got = out0;
    GemvArgs a = ra;
    a.out = got.data();
    ExecContext ctx;
    ctx.pool = pool;
    e.fn(&a, ctx);
    expect_close(got, ref, 1e-5, ktest::entry_name(e) + " " + c.name() + (pool ? " pool" : ""));
  }
}

constexpr GatedAct kGates[] = {GatedAct::kNone, GatedAct::kSilu, GatedAct::kGeluTanh};

TEST(KernelGemv, EveryFusionCombination) {
  auto cands = cpu_candidates(Op::kGemv);
  ASSERT_GE(cands.size(), 2u);  // at least the generic f32 and bf16 kernels
  std::mt19937 rng(77);
  for (const KernelEntry* e : cands)
    for (GatedAct gated : kGates)
      for (int flags = 0; flags < 8; ++flags) {
        GemvCase c{3, 130, 300};
        c.norm = flags & 1;
        c.bias = flags & 2;
        c.accumulate = flags & 4;
        c.gated = gated;
        check_gemv(*e, c, rng);
        if (c.norm) {  // checkpoints storing (weight - 1)
          c.norm_offset = 1.0f;
          check_gemv(*e, c, rng);
        }
      }
}

TEST(KernelGemv, EveryRowCountOddShapes) {
  std::mt19937 rng(78);
  for (const KernelEntry* e : cpu_candidates(Op::kGemv)) {
    int i = 0;
    // Every decode row count, and m past kGemvMaxRows (outside the op's contract for speed, but
    // the CPU kernel must still be right: its driver switches to the prefill regime there).
    const std::pair<int64_t, int64_t> shapes[] = {{2, 1}, {6, 7}, {66, 64}, {130, 13}, {770, 300}, {64, 1029}};
    for (int64_t m : {1, 2, 3, 4, 5, 6, 7, 8, 11, 40})
      for (const auto& [n, k] : shapes) {
        GemvCase c{m, n, k};
        const int v = i++ % 24;  // a spread of fusion combinations over the shapes
        c.norm = v & 1;
        c.bias = v & 2;
        c.accumulate = v & 4;
        c.gated = kGates[(v >> 3) % 3];
        check_gemv(*e, c, rng);
      }
    // Odd n (no gating): every other flag.
    for (int flags = 0; flags < 8; ++flags)
      for (int64_t n : {1, 3, 111}) {
        GemvCase c{1 + flags, n, 37 + flags};
        c.norm = flags & 1;
        c.bias = flags & 2;
        c.accumulate = flags & 4;
        check_gemv(*e, c, rng);
      }
  }
}

TEST(KernelGemv, GatesFarIntoTheActivationTails) {
  // x scaled up: gate pre-activations of tens, where SiLU's exp overflows on one side and
  // GELU-tanh's 1 + tanh cancels on the other.
  std::mt19937 rng(79);
  for (const KernelEntry* e : cpu_candidates(Op::kGemv))
    for (GatedAct gated : {GatedAct::kSilu, GatedAct::kGeluTanh})
      for (bool acc : {false, true}) {
        GemvCase c{5, 258, 200};
        c.bias = true;
        c.gated = gated;
        c.accumulate = acc;
        c.x_scale = 8.0f;
        check_gemv(*e, c, rng);
      }
}

TEST(KernelGemv, RejectsOddNWhenGatedAndDoesNothingForNoRows) {
  std::vector<float> x(8, 1.0f), w(24, 1.0f), out(3, kSentinel);
  for (const KernelEntry* e : cpu_candidates(Op::kGemv)) {
    GemvArgs a{out.data(), x.data(), w.data(), nullptr, nullptr, 1, 3, 8, 3, 8};
    a.gated = GatedAct::kGeluTanh;
    EXPECT_THROW(e->fn(&a, ExecContext{}), Error) << ktest::entry_name(*e);
    a.gated = GatedAct::kNone;
    a.m = 0;
    e->fn(&a, ExecContext{});
    EXPECT_EQ(out, std::vector<float>(3, kSentinel)) << ktest::entry_name(*e);
  }
  GemvArgs r{out.data(), x.data(), w.data(), nullptr, nullptr, 1, 3, 8, 3, 8};
  r.gated = GatedAct::kSilu;
  EXPECT_THROW(gemv_ref_f32(&r, ExecContext{}), Error);
}

}  // namespace
}  // namespace eli
