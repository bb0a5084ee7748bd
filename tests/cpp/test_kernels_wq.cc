// tests/cpp/test_kernels_wq.cc: the kernels of eli's quantized weight layouts (kernels/wq_matrix.h:
// int4 / uint8 grouped with zero points, int8 and e4m3 per channel with per-token activation
// quantization) against their reference (kernels/ref/wq_ref.h), and the reference itself against
// independent oracles: the dense reference on the dequantized matrix, a brute-force nearest-e4m3
// search, the documented nibble order.
//
// Shapes are odd (n = 1, 7, 33, 66; m = 1..8 for the GEMV, up to 19 for the GEMM), k with one and
// several groups; every GEMV fusion (RMSNorm prologue, gated epilogue, accumulate, bias); with and
// without a thread pool; every usable CPU variant (generic, AVX2).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "kernel_test_util.h"
#include "kernels/ref/fp8.h"
#include "kernels/ref/wq_ref.h"
#include "kernels/wq_matrix.h"

namespace eli {
namespace {

using ktest::expect_close;
using ktest::kSentinel;
using ktest::rand_vec;

constexpr WeightFormat kFormats[] = {WeightFormat::kInt4Grouped, WeightFormat::kInt8Grouped,
                                     WeightFormat::kInt8Channel, WeightFormat::kFp8Channel};

// A random (n, k) matrix in format f (group size gs for the grouped formats).
struct RandWq {
  std::vector<uint8_t> q;
  std::vector<float> scales, zeros;
  std::vector<int32_t> perm;
  float act_scale = 0.0f;
  WqMatrix m;
  RandWq(std::mt19937& rng, WeightFormat f, int64_t n, int64_t k, int64_t gs, bool permuted = false) {
    const bool grouped = f == WeightFormat::kInt4Grouped || f == WeightFormat::kInt8Grouped;
    const int64_t groups = grouped ? k / gs : 1;
    q.resize(static_cast<size_t>(f == WeightFormat::kInt4Grouped ? n * k / 2 : n * k));
    std::uniform_int_distribution<int> byte(0, 255);
    for (uint8_t& b : q) {
      b = static_cast<uint8_t>(byte(rng));
      if (f == WeightFormat::kInt8Channel && b == 0x80) b = 0x81;           // int8 weights are in [-127, 127]
      if (f == WeightFormat::kFp8Channel && (b & 0x7F) == 0x7F) b ^= 0x01;  // no NaN codes
    }
    scales = rand_vec(rng, static_cast<size_t>(n * groups), 0.001f, 0.05f);
    if (f == WeightFormat::kFp8Channel) for (float& s : scales) s *= 0.01f;
    if (grouped) zeros = rand_vec(rng, static_cast<size_t>(n * groups), 0.0f, f == WeightFormat::kInt4Grouped ? 15.0f : 255.0f);
    m.q = q.data();
    m.scales = scales.data();
    m.zeros = grouped ? zeros.data() : nullptr;
    m.group_size = grouped ? gs : 0;
    m.format = f;
    if (permuted) {
      for (int64_t j = 0; j < k; ++j) perm.push_back(static_cast<int32_t>(j));
      std::shuffle(perm.begin(), perm.end(), rng);
      m.perm = perm.data();
    }
  }
};

DType key_dtype(WeightFormat f) {
  return f == WeightFormat::kInt8Channel ? DType::kI8 : f == WeightFormat::kFp8Channel ? DType::kF8E4M3 : DType::kU8;
}

struct Shape {
  int64_t m, n, k, gs;
};

void check_gemv(const KernelEntry& e, const Shape& c, bool norm, GatedAct act, bool acc, bool bias, std::mt19937& rng,
                bool permuted = false, float act_scale = 0.0f) {
  RandWq w(rng, e.format, c.n, c.k, c.gs, permuted);
  w.act_scale = act_scale;
  if (act_scale > 0.0f) w.m.act_scale = &w.act_scale;
  const int64_t xs = c.k + 3, n_out = act != GatedAct::kNone ? c.n / 2 : c.n, os = n_out + 2;
  std::vector<float> x = rand_vec(rng, static_cast<size_t>(c.m * xs), -2.0f, 2.0f);
  std::vector<float> nw = rand_vec(rng, static_cast<size_t>(c.k), 0.5f, 1.5f);
  std::vector<float> b = rand_vec(rng, static_cast<size_t>(c.n));
  std::vector<float> out0 = rand_vec(rng, static_cast<size_t>(c.m * os));
  for (int64_t i = 0; i < c.m; ++i) out0[i * os + n_out] = out0[i * os + n_out + 1] = kSentinel;
  std::vector<float> ref = out0;
  GemvArgs ra{ref.data(), x.data(), &w.m, bias ? b.data() : nullptr, norm ? nw.data() : nullptr, c.m, c.n, c.k, os, xs};
  ra.norm_weight_offset = norm ? 0.25f : 0.0f;
  ra.gated = act;
  ra.accumulate = acc;
  ktest::ref_of(e).fn(&ra, ExecContext{});
  for (ThreadPool* pool : ktest::pools_for(e)) {
    std::vector<float> got = out0;
    GemvArgs a = ra;
    a.out = got.data();
    ExecContext ctx;
    ctx.pool = pool;
    e.fn(&a, ctx);
    expect_close(got, ref, 2e-5,
                 ktest::entry_name(e) + " m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) + " k=" +
                     std::to_string(c.k) + " gs=" + std::to_string(c.gs) + " norm=" + std::to_string(norm) +
                     " gated=" + gated_act_name(act) + " acc=" + std::to_string(acc) + (pool ? " pool" : ""));
  }
}

void check_gemm(const KernelEntry& e, const Shape& c, bool acc, bool bias, std::mt19937& rng, bool permuted = false) {
  RandWq w(rng, e.format, c.n, c.k, c.gs, permuted);
  const int64_t xs = c.k + 5, os = c.n + 2;
  std::vector<float> x = rand_vec(rng, static_cast<size_t>(c.m * xs), -2.0f, 2.0f);
  std::vector<float> b = rand_vec(rng, static_cast<size_t>(c.n));
  std::vector<float> out0 = rand_vec(rng, static_cast<size_t>(c.m * os));
  for (int64_t i = 0; i < c.m; ++i) out0[i * os + c.n] = out0[i * os + c.n + 1] = kSentinel;
  std::vector<float> ref = out0;
  GemmArgs ra{ref.data(), x.data(), &w.m, bias ? b.data() : nullptr, c.m, c.n, c.k, os, xs};
  ra.x_dtype = DType::kF32;
  ra.out_dtype = DType::kF32;
  ra.accumulate = acc;
  ktest::ref_of(e).fn(&ra, ExecContext{});
  for (ThreadPool* pool : ktest::pools_for(e)) {
    std::vector<float> got = out0;
    GemmArgs a = ra;
    a.out = got.data();
    ExecContext ctx;
    ctx.pool = pool;
    e.fn(&a, ctx);
    expect_close(got, ref, 2e-5,
                 ktest::entry_name(e) + " m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) + " k=" +
                     std::to_string(c.k) + " gs=" + std::to_string(c.gs) + " acc=" + std::to_string(acc) +
                     (pool ? " pool" : ""));
  }
}

TEST(KernelWq, EveryFormatHasReferenceAndOptimizedKernels) {
  for (WeightFormat f : kFormats) {
    for (Op op : {Op::kGemv, Op::kGemm}) {
      EXPECT_NE(find_kernel(op, DeviceKind::kCPU, f, key_dtype(f), "ref"), nullptr) << weight_format_name(f);
      const KernelEntry* best = find_kernel(op, DeviceKind::kCPU, f, key_dtype(f));
      ASSERT_NE(best, nullptr);
      EXPECT_NE(std::string(best->variant), "ref") << weight_format_name(f);
    }
  }
}

TEST(KernelWq, GemvMatchesReferenceOnOddShapesAndFusions) {
  std::mt19937 rng(7);
  int checked = 0;
  for (WeightFormat f : kFormats) {
    for (const KernelEntry* e : ktest::cpu_candidates(Op::kGemv, f)) {
      for (Shape s : {Shape{1, 7, 32, 32}, Shape{3, 33, 96, 32}, Shape{8, 66, 256, 64}, Shape{5, 1, 128, 128},
                      Shape{2, 34, 256, 256}}) {
        check_gemv(*e, s, false, GatedAct::kNone, false, false, rng);
        check_gemv(*e, s, true, GatedAct::kNone, true, true, rng);
        if (s.n % 2 == 0) {
          check_gemv(*e, s, true, GatedAct::kSilu, false, true, rng);
          check_gemv(*e, s, false, GatedAct::kGeluTanh, true, false, rng);
        }
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 4 * 5);
}

TEST(KernelWq, GemvEveryRowCount) {
  std::mt19937 rng(11);
  for (WeightFormat f : kFormats)
    for (const KernelEntry* e : ktest::cpu_candidates(Op::kGemv, f))
      for (int64_t m = 1; m <= kGemvMaxRows; ++m) check_gemv(*e, Shape{m, 9, 64, 32}, m % 2 == 0, GatedAct::kNone, false, true, rng);
}

TEST(KernelWq, GemmMatchesReferenceOnOddShapes) {
  std::mt19937 rng(13);
  for (WeightFormat f : kFormats) {
    auto cands = ktest::cpu_candidates(Op::kGemm, f);
    EXPECT_FALSE(cands.empty()) << weight_format_name(f);
    for (const KernelEntry* e : cands) {
      for (Shape s : {Shape{1, 5, 32, 32}, Shape{19, 33, 160, 32}, Shape{9, 64, 256, 128}, Shape{12, 3, 384, 384}}) {
        check_gemm(*e, s, false, true, rng);
        check_gemm(*e, s, true, false, rng);
      }
    }
  }
}

// Many chunks per call, so the pool's workers certainly take some: they must read the caller's
// prepared activations (a regression: thread_local buffers named inside the worker lambda were the
// workers' own, empty ones).
TEST(KernelWq, PoolWorkersSeeTheCallersActivations) {
  std::mt19937 rng(31);
  ThreadPool pool(3);
  for (WeightFormat f : kFormats) {
    const int64_t m = 3, n = 4096, k = 64;
    RandWq w(rng, f, n, k, 32, true);
    std::vector<float> x = rand_vec(rng, static_cast<size_t>(m * k));
    for (Op op : {Op::kGemv, Op::kGemm}) {
      for (const KernelEntry* e : ktest::cpu_candidates(op, f)) {
        std::vector<float> want(static_cast<size_t>(m * n)), got = want;
        for (int rep = 0; rep < 3; ++rep) {
          for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
            std::vector<float>& out = p ? got : want;
            ExecContext ctx;
            ctx.pool = p;
            if (op == Op::kGemv) {
              GemvArgs a{out.data(), x.data(), &w.m, nullptr, nullptr, m, n, k, n, k};
              e->fn(&a, ctx);
            } else {
              GemmArgs a{out.data(), x.data(), &w.m, nullptr, m, n, k, n, k};
              a.x_dtype = a.out_dtype = DType::kF32;
              e->fn(&a, ctx);
            }
          }
          EXPECT_EQ(got, want) << ktest::entry_name(*e);
        }
      }
    }
  }
}

// Act-order: the kernels gather x through perm; the reference with perm equals the reference
// without it on the permuted input.
TEST(KernelWq, ActOrderPermutationGathersTheInput) {
  std::mt19937 rng(23);
  for (WeightFormat f : kFormats) {
    for (const KernelEntry* e : ktest::cpu_candidates(Op::kGemv, f)) check_gemv(*e, Shape{3, 17, 128, 32}, true, GatedAct::kNone, false, true, rng, true);
    for (const KernelEntry* e : ktest::cpu_candidates(Op::kGemm, f)) check_gemm(*e, Shape{11, 17, 128, 32}, true, true, rng, true);
    RandWq w(rng, f, 9, 64, 32, true);
    std::vector<float> x = rand_vec(rng, 64), xp(64), a(9), b(9);
    for (int j = 0; j < 64; ++j) xp[j] = x[w.perm[j]];
    GemvArgs ga{a.data(), x.data(), &w.m, nullptr, nullptr, 1, 9, 64, 9, 64};
    wq_gemv_ref(&ga, ExecContext{});
    WqMatrix plain = w.m;
    plain.perm = nullptr;
    GemvArgs gb{b.data(), xp.data(), &plain, nullptr, nullptr, 1, 9, 64, 9, 64};
    wq_gemv_ref(&gb, ExecContext{});
    expect_close(a, b, 1e-7, weight_format_name(f));
  }
}

// W8A8 with a static per-tensor input scale (compressed-tensors input_scale): values beyond the
// scale's range saturate; kernels and reference agree, and the result differs from dynamic scaling.
TEST(KernelWq, StaticInputScale) {
  std::mt19937 rng(29);
  for (WeightFormat f : {WeightFormat::kInt8Channel, WeightFormat::kFp8Channel}) {
    for (const KernelEntry* e : ktest::cpu_candidates(Op::kGemv, f)) {
      check_gemv(*e, Shape{4, 13, 96, 96}, false, GatedAct::kNone, false, true, rng, false, 0.004f);
      check_gemv(*e, Shape{2, 13, 96, 96}, true, GatedAct::kNone, false, false, rng, true, 0.02f);
    }
    RandWq w(rng, f, 5, 64, 64);
    std::vector<float> x = rand_vec(rng, 64, -2.0f, 2.0f), dyn(5), stat(5);
    GemvArgs a{dyn.data(), x.data(), &w.m, nullptr, nullptr, 1, 5, 64, 5, 64};
    wq_gemv_ref(&a, ExecContext{});
    w.act_scale = 0.001f;  // max |x| / 0.001 is far beyond the int8 / e4m3 range: saturation
    w.m.act_scale = &w.act_scale;
    a.out = stat.data();
    wq_gemv_ref(&a, ExecContext{});
    EXPECT_NE(dyn, stat) << weight_format_name(f);
  }
}

// The reference of the weight-only formats is the dense reference on the dequantized matrix.
TEST(KernelWq, WeightOnlyReferenceIsTheDenseProductOfTheDequantizedMatrix) {
  std::mt19937 rng(17);
  const int64_t m = 3, n = 21, k = 128;
  for (WeightFormat f : {WeightFormat::kInt4Grouped, WeightFormat::kInt8Grouped}) {
    RandWq w(rng, f, n, k, 32);
    std::vector<float> dense(static_cast<size_t>(n * k));
    for (int64_t r = 0; r < n; ++r) wq_dequant_row(w.m, k, r, dense.data() + r * k);
    std::vector<float> x = rand_vec(rng, static_cast<size_t>(m * k)), got(static_cast<size_t>(m * n)), want = got;
    GemvArgs a{got.data(), x.data(), &w.m, nullptr, nullptr, m, n, k, n, k};
    wq_gemv_ref(&a, ExecContext{});
    GemvArgs d = a;
    d.out = want.data();
    d.w = dense.data();
    gemv_ref_f32(&d, ExecContext{});
    expect_close(got, want, 1e-6, weight_format_name(f));
  }
}

// Byte i of each 16-byte chunk: column 32c + i in the low nibble, 32c + 16 + i in the high one.
TEST(KernelWq, Int4NibbleOrderIsTheDocumentedOne) {
  std::vector<uint8_t> q(32);  // one row, k = 64: two chunks
  for (int i = 0; i < 32; ++i) q[i] = static_cast<uint8_t>((i % 16) | (((i + 3) % 16) << 4));
  std::vector<float> scales = {1.0f}, zeros = {0.0f};
  WqMatrix w{q.data(), scales.data(), zeros.data(), 64, WeightFormat::kInt4Grouped};
  std::vector<float> row(64);
  wq_dequant_row(w, 64, 0, row.data());
  for (int c = 0; c < 2; ++c) {
    for (int i = 0; i < 16; ++i) {
      EXPECT_EQ(row[32 * c + i], static_cast<float>((16 * c + i) % 16)) << c << " " << i;
      EXPECT_EQ(row[32 * c + 16 + i], static_cast<float>((16 * c + i + 3) % 16)) << c << " " << i;
    }
  }
}

TEST(KernelWq, Fp8TableAndRoundingAreExact) {
  EXPECT_EQ(fp8_e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8_e4m3_to_f32(0x38), 1.0f);
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_f32(0x7F)));
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7F) == 0x7F || b == 0x80) continue;
    EXPECT_EQ(f32_to_fp8_e4m3(fp8_e4m3_to_f32(static_cast<uint8_t>(b))), b) << b;
  }
  EXPECT_EQ(f32_to_fp8_e4m3(1e6f), 0x7E);  // saturates
  EXPECT_EQ(f32_to_fp8_e4m3(-1e6f), 0xFE);
  // Brute force: the nearest finite code, ties to the even code.
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> d(-460.0f, 460.0f);
  std::vector<float> probes;
  for (int i = 0; i < 3000; ++i) probes.push_back(d(rng) * (i % 3 == 0 ? 1e-3f : 1.0f));
  for (int b = 0; b < 0x7E; ++b) probes.push_back(0.5f * (fp8_e4m3_to_f32(b) + fp8_e4m3_to_f32(b + 1)));  // ties
  for (float x : probes) {
    int best = -1;
    double best_err = 1e30;
    for (int b = 0; b <= 0x7E; ++b) {
      const double err = std::fabs(std::fabs(static_cast<double>(x)) - fp8_e4m3_to_f32(static_cast<uint8_t>(b)));
      if (err < best_err || (err == best_err && b % 2 == 0)) {
        best = b;
        best_err = err;
      }
    }
    if (std::fabs(x) >= 448.0f) best = 0x7E;
    EXPECT_EQ(f32_to_fp8_e4m3(x) & 0x7F, best) << x;
  }
}

TEST(KernelWq, ActivationQuantizationReconstructsWithinHalfAStep) {
  std::mt19937 rng(5);
  std::vector<float> x = rand_vec(rng, 77, -3.0f, 3.0f);
  std::vector<int8_t> q(77);
  const float s = wq_quantize_row_int8(x.data(), 77, q.data());
  float amax = 0.0f;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  EXPECT_FLOAT_EQ(s, amax / 127.0f);
  for (size_t j = 0; j < x.size(); ++j) EXPECT_LE(std::fabs(q[j] * s - x[j]), 0.5f * s * 1.0001f);
  std::vector<float> zero(9, 0.0f);
  std::vector<uint8_t> q8(9);
  EXPECT_EQ(wq_quantize_row_fp8(zero.data(), 9, q8.data()), 1.0f);  // all-zero row: scale 1, codes 0
  for (uint8_t b : q8) EXPECT_EQ(b & 0x7F, 0);
}

}  // namespace
}  // namespace eli
