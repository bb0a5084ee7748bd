// tests/cpp/test_kernels_attention_kvquant.cc: the compressed KV cache (int8 / fp8 e4m3 with one
// f32 scale per (slot, kv head), kernels/ref/kv_quant.h) on the CPU:
// - the scalar rules: e4m3 encode/decode against torch's float8_e4m3fn (tests/data/kv_quant, made
//   by scripts/make_kv_quant_refs.py), int8 rounding, the per-row error bound, zero and non-finite rows;
// - the references: quantized attention == f32 attention over the dequantized cache;
// - every CPU RopeKvWrite / Attention entry of the quantized dtypes against the reference on ragged
//   paged batches, head_dim 64 / 128 / 256 and unaligned ones, GQA ratios, block sizes 1 / 4 / 16
//   (rows that cross block boundaries) and sliding windows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <string>

#include "kernel_test_util.h"
#include "kvquant_test_util.h"
#include "kernels/ref/kv_quant.h"
#include "runtime/core/float_convert.h"

namespace eli {
namespace {

using ktest::expect_close;
using ktest::kSentinel;
using ktest::rand_vec;
using kvqtest::attention_args;
using kvqtest::Heads;
using kvqtest::kQuantDtypes;
using kvqtest::kSeqs;
using kvqtest::Paged;
using kvqtest::QuantCache;
using kvqtest::SeqSpec;

TEST(KvQuantFormat, E4m3MatchesTorchOracle) {
  std::ifstream in(std::string(ELI_TEST_DATA_DIR) + "/kv_quant/e4m3_cases.txt");
  ASSERT_TRUE(in) << "missing tests/data/kv_quant/e4m3_cases.txt (scripts/make_kv_quant_refs.py)";
  std::string xb, cb;
  int n = 0;
  while (in >> xb >> cb) {
    const float x = bits_to_f32(static_cast<uint32_t>(std::stoul(xb, nullptr, 16)));
    const auto code = static_cast<uint8_t>(std::stoul(cb, nullptr, 16));
    ASSERT_EQ(f32_to_e4m3(x), code) << "x=" << x << " (" << xb << ")";
    // Every code decodes to a value that encodes back to it.
    ASSERT_EQ(f32_to_e4m3(e4m3_to_f32(code)), code) << cb;
    ++n;
  }
  EXPECT_GT(n, 3000);
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0x7f)));
  EXPECT_TRUE(std::isnan(e4m3_to_f32(0xff)));
  EXPECT_EQ(f32_to_e4m3(1000.0f), 0x7e);  // saturates to 448
  EXPECT_EQ(f32_to_e4m3(-INFINITY), 0xfe);
  EXPECT_EQ(e4m3_to_f32(0x7e), 448.0f);
}

TEST(KvQuantFormat, Int8RoundsHalfToEvenAndClamps) {
  EXPECT_EQ(f32_to_kv_int8(2.5f), 2);
  EXPECT_EQ(f32_to_kv_int8(3.5f), 4);
  EXPECT_EQ(f32_to_kv_int8(-2.5f), -2);
  EXPECT_EQ(f32_to_kv_int8(126.6f), 127);
  EXPECT_EQ(f32_to_kv_int8(300.0f), 127);
  EXPECT_EQ(f32_to_kv_int8(-300.0f), -127);  // symmetric: -128 is never used
}

TEST(KvQuantFormat, RowErrorBoundsZeroRowsAndNonFinite) {
  std::mt19937 rng(5);
  for (DType dt : kQuantDtypes)
    for (int64_t n : {1, 7, 64, 128, 256}) {
      std::vector<float> x = rand_vec(rng, static_cast<size_t>(n), -3, 3);
      x[0] = n == 1 ? 0.5f : -3.5f;  // the amax
      std::vector<uint8_t> q(static_cast<size_t>(n));
      const float scale = kv_quantize_row(x.data(), n, dt, q.data());
      const float amax = n == 1 ? 0.5f : 3.5f;
      EXPECT_FLOAT_EQ(scale, amax / kv_qmax(dt));
      for (int64_t i = 0; i < n; ++i) {
        const float back = kv_load_unscaled(q.data(), dt, i) * scale;
        // int8: half a step; e4m3: 3 mantissa bits (2^-4 relative) or half the subnormal step.
        const float bound = dt == DType::kI8 ? 0.5f * scale * 1.0001f
                                             : std::max(std::fabs(x[i]) / 16.0f, scale * std::ldexp(1.0f, -10)) * 1.0001f;
        EXPECT_LE(std::fabs(back - x[i]), bound) << dtype_name(dt) << " n=" << n << " i=" << i;
      }
      EXPECT_NEAR(kv_load_unscaled(q.data(), dt, 0) * scale, x[0], 1e-6);  // the amax is exact
    }
  for (DType dt : kQuantDtypes) {
    std::vector<float> zeros(16, 0.0f), bad(16, 1.0f);
    std::vector<uint8_t> q(16, 0xaa);
    EXPECT_EQ(kv_quantize_row(zeros.data(), 16, dt, q.data()), 0.0f);
    for (uint8_t b : q) EXPECT_EQ(b, 0);
    bad[3] = NAN;  // a NaN must not be hidden: the scale (and so the attention output) is NaN
    EXPECT_TRUE(std::isnan(kv_quantize_row(bad.data(), 16, dt, q.data())));
    bad[3] = INFINITY;
    EXPECT_FALSE(std::isfinite(kv_quantize_row(bad.data(), 16, dt, q.data())));
  }
}

// The quantized reference is exactly "dequantize, then f32 attention".
TEST(KernelAttentionKvQuant, ReferenceIsDequantizeThenF32Attention) {
  std::mt19937 rng(21);
  for (DType dt : kQuantDtypes)
    for (int64_t hd : {64, 40})
      for (Heads hs : {Heads{4, 4}, Heads{6, 2}}) {
        Paged b(kSeqs, 4, rng);
        const int64_t t = b.n_tokens(), qs = hs.nh * hd, os = hs.nh * hd;
        QuantCache c(b.n_blocks * b.bs * hs.nkv, hd, dt, rng);
        std::vector<float> q = rand_vec(rng, static_cast<size_t>(t * qs), -2, 2);
        std::vector<float> want(static_cast<size_t>(t * os), kSentinel), got = want;
        AttentionArgs f = attention_args(b, hs, hd, 0, qs, os, want.data(), q.data());
        f.k_cache = c.kdeq.data();
        f.v_cache = c.vdeq.data();
        get_kernel(Op::kAttention, DeviceKind::kCPU, DType::kF32, "ref").fn(&f, ExecContext{});
        AttentionArgs a = attention_args(b, hs, hd, 0, qs, os, got.data(), q.data());
        a.k_cache = c.k.data();
        a.v_cache = c.v.data();
        a.k_scale = c.ks.data();
        a.v_scale = c.vs.data();
        get_kernel(Op::kAttention, DeviceKind::kCPU, dt, "ref").fn(&a, ExecContext{});
        expect_close(got, want, 1e-6, std::string(dtype_name(dt)) + " hd=" + std::to_string(hd));
      }
}

TEST(KernelAttentionKvQuant, CpuVariantsMatchReference) {
  std::mt19937 rng(42);
  struct Case {
    int64_t hd;
    Heads hs;
    int64_t bs, window;
  };
  // Every head_dim with a GQA group; block size 1 (every row its own block), 4 and 16 (rows
  // crossing block boundaries); windows; an unaligned head_dim (72) and a tiny one (12).
  const Case cases[] = {{64, {4, 4}, 4, 0},   {64, {6, 2}, 1, 5},    {64, {8, 1}, 16, 0},  {128, {6, 2}, 16, 0},
                        {128, {8, 1}, 4, 5},  {256, {4, 4}, 16, 0},  {256, {8, 1}, 4, 0},  {72, {6, 2}, 4, 0},
                        {72, {4, 4}, 1, 5},   {12, {8, 1}, 16, 5},   {12, {6, 2}, 1, 0}};
  int checked = 0;
  for (const KernelEntry* e : ktest::cpu_candidates(Op::kAttention)) {
    if (!kv_dtype_quantized(e->dtype)) continue;
    for (const Case& k : cases) {
      const int64_t hd = k.hd, bs = k.bs, window = k.window;
      const Heads hs = k.hs;
      Paged b(kSeqs, bs, rng);
      const int64_t t = b.n_tokens(), qs = hs.nh * hd + 3, os = hs.nh * hd + 1;
      QuantCache c(b.n_blocks * bs * hs.nkv, hd, e->dtype, rng);
      std::vector<float> q = rand_vec(rng, static_cast<size_t>(t * qs), -2, 2);
      std::vector<float> ref(static_cast<size_t>(t * os), kSentinel);
      AttentionArgs ra = attention_args(b, hs, hd, window, qs, os, ref.data(), q.data());
      ra.k_cache = c.k.data();
      ra.v_cache = c.v.data();
      ra.k_scale = c.ks.data();
      ra.v_scale = c.vs.data();
      ktest::ref_of(*e).fn(&ra, ExecContext{});
      for (ThreadPool* pool : ktest::pools_for(*e)) {
        std::vector<float> got(ref.size(), kSentinel);
        AttentionArgs a = ra;
        a.out = got.data();
        ExecContext ctx;
        ctx.pool = pool;
        e->fn(&a, ctx);
        expect_close(got, ref, 2e-5, ktest::entry_name(*e) + " hd=" + std::to_string(hd) + " nh=" +
                                         std::to_string(hs.nh) + " nkv=" + std::to_string(hs.nkv) +
                                         " bs=" + std::to_string(bs) + " window=" + std::to_string(window));
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 0) << "no quantized-KV CPU attention entry";
}

TEST(KernelAttentionKvQuant, MissingScalesAreAnInternalError) {
  std::mt19937 rng(3);
  Paged b({{5, 5}}, 4, rng);
  QuantCache c(b.n_blocks * 4, 8, DType::kI8, rng);
  std::vector<float> q(5 * 8, 0.5f), out(5 * 8);
  for (const KernelEntry& e : all_kernels()) {
    if (e.device != DeviceKind::kCPU || e.op != Op::kAttention || !kv_dtype_quantized(e.dtype)) continue;
    if (e.usable != nullptr && !e.usable()) continue;
    AttentionArgs a = attention_args(b, Heads{1, 1}, 8, 0, 8, 8, out.data(), q.data());
    a.k_cache = c.k.data();
    a.v_cache = c.v.data();
    ktest::expect_error_kind(ErrorKind::kInternal, [&] { e.fn(&a, ExecContext{}); }, ktest::entry_name(e));
  }
}

// ---- RopeKvWrite ------------------------------------------------------------------------------

// One quantized RopeKvWrite case on `e` against the reference: q exactly as the f32 kernel's, the
// scales to f32 rounding, each K code within one step of the reference's (RoPE in f32 vs double
// may move a value across a rounding boundary), V codes bit for bit (a plain quantized copy), and
// slots nobody writes (skipped or untouched) keep their old bytes and scales.
void check_rope_kv_quant(const KernelEntry& e, const std::vector<SeqSpec>& seqs, int64_t nh, int64_t nkv, int64_t hd,
                         int64_t bs, bool norm, std::mt19937& rng) {
  Paged b(seqs, bs, rng);
  const int64_t t = b.n_tokens(), half = hd / 2, stride = (nh + 2 * nkv) * hd + 3, n_slots = b.n_blocks * bs;
  std::vector<float> qkv = rand_vec(rng, static_cast<size_t>(t * stride), -2, 2);
  std::vector<float> qn = rand_vec(rng, static_cast<size_t>(hd), 0.5f, 1.5f), kn = qn;
  std::vector<int32_t> slots = b.slots;
  if (t > 1) slots[1] = -1;  // skipped
  std::vector<float> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / hd));
  const size_t rows = static_cast<size_t>(n_slots * nkv);
  std::vector<uint8_t> k0(rows * hd), v0(rows * hd);
  for (auto& x : k0) x = static_cast<uint8_t>(rng());
  for (auto& x : v0) x = static_cast<uint8_t>(rng());
  std::vector<float> s0 = rand_vec(rng, rows, 1, 2);
  std::vector<float> rq(static_cast<size_t>(t * nh * hd)), rks = s0, rvs = s0;
  std::vector<uint8_t> rk = k0, rv = v0;
  RopeKvWriteArgs ra{};
  ra.q_out = rq.data();
  ra.k_cache = rk.data();
  ra.v_cache = rv.data();
  ra.k_scale = rks.data();
  ra.v_scale = rvs.data();
  ra.qkv = qkv.data();
  ra.q_norm = norm ? qn.data() : nullptr;
  ra.k_norm = norm ? kn.data() : nullptr;
  ra.positions = b.positions.data();
  ra.slot_mapping = slots.data();
  ra.inv_freq = inv.data();
  ra.n_tokens = t;
  ra.n_heads = nh;
  ra.n_kv_heads = nkv;
  ra.head_dim = hd;
  ra.rot_dim = hd;
  ra.qkv_stride = stride;
  ra.n_slots = n_slots;
  ra.attention_scaling = 1.0f;
  ra.norm_eps = 1e-6f;
  ra.q_dtype = DType::kF32;
  ktest::ref_of(e).fn(&ra, ExecContext{});
  for (ThreadPool* pool : ktest::pools_for(e)) {
    std::vector<float> gq(rq.size()), gks = s0, gvs = s0;
    std::vector<uint8_t> gk = k0, gv = v0;
    RopeKvWriteArgs a = ra;
    a.q_out = gq.data();
    a.k_cache = gk.data();
    a.v_cache = gv.data();
    a.k_scale = gks.data();
    a.v_scale = gvs.data();
    ExecContext ctx;
    ctx.pool = pool;
    e.fn(&a, ctx);
    const std::string what = ktest::entry_name(e) + " nh=" + std::to_string(nh) + " nkv=" + std::to_string(nkv) +
                             " hd=" + std::to_string(hd) + " bs=" + std::to_string(bs) + " norm=" + std::to_string(norm);
    expect_close(gq, rq, 1e-5, what + " q");
    expect_close(gks, rks, 1e-5, what + " k scales");
    EXPECT_EQ(gvs, rvs) << what << " v scales";
    EXPECT_EQ(gv, rv) << what << " v codes";
    for (size_t r = 0; r < rows; ++r) {
      if (rks[r] == s0[r] && gks[r] == s0[r]) {  // an unwritten row: untouched bytes
        for (int64_t d = 0; d < hd; ++d) ASSERT_EQ(gk[r * hd + d], k0[r * hd + d]) << what << " row " << r;
        continue;
      }
      for (int64_t d = 0; d < hd; ++d) {
        const float x = kv_load_unscaled(gk.data() + r * hd, e.dtype, d) * gks[r];
        const float y = kv_load_unscaled(rk.data() + r * hd, e.dtype, d) * rks[r];
        // One quantization step at this magnitude (int8: scale; e4m3: 2^-3 relative, or the subnormal step).
        const float step = e.dtype == DType::kI8 ? rks[r]
                                                 : std::max(std::fabs(y) / 8.0f, rks[r] * std::ldexp(1.0f, -9));
        ASSERT_LE(std::fabs(x - y), step * 1.001f + 1e-6f) << what << " k row " << r << " d " << d;
      }
    }
  }
}

TEST(KernelRopeKvWriteKvQuant, CpuVariantsMatchReference) {
  std::mt19937 rng(8);
  int checked = 0;
  for (const KernelEntry* e : ktest::cpu_candidates(Op::kRopeKvWrite)) {
    if (!kv_dtype_quantized(e->dtype)) continue;
    for (Heads hs : {Heads{4, 4}, Heads{6, 2}, Heads{8, 1}})
      for (int64_t hd : {64, 128, 256, 12}) {
        check_rope_kv_quant(*e, {{5, 5}, {20, 1}, {33, 19}}, hs.nh, hs.nkv, hd, hd == 64 ? 4 : 16, hd != 128, rng);
        ++checked;
      }
  }
  EXPECT_GT(checked, 0) << "no quantized-KV CPU RopeKvWrite entry";
}

// Written through the kernel, read through attention: the pair round-trips within the format's
// error of the f32 cache (a loose end-to-end bound that would catch a scale or layout mix-up).
TEST(KernelAttentionKvQuant, WriteThenAttendIsCloseToF32) {
  std::mt19937 rng(77);
  const int64_t nh = 4, nkv = 2, hd = 64, bs = 16;
  Paged b({{37, 37}, {50, 50}}, bs, rng);
  const int64_t t = b.n_tokens(), stride = (nh + 2 * nkv) * hd, n_slots = b.n_blocks * bs;
  std::vector<float> qkv = rand_vec(rng, static_cast<size_t>(t * stride), -1, 1);
  std::vector<float> inv(static_cast<size_t>(hd / 2));
  for (int64_t i = 0; i < hd / 2; ++i) inv[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / hd));
  auto run = [&](DType dt) {
    const size_t rows = static_cast<size_t>(n_slots * nkv);
    std::vector<float> q(static_cast<size_t>(t * nh * hd)), kf(rows * hd), vf(rows * hd), ks(rows), vs(rows);
    std::vector<uint8_t> kq(rows * hd), vq(rows * hd);
    const bool quant = kv_dtype_quantized(dt);
    RopeKvWriteArgs r{};
    r.q_out = q.data();
    r.k_cache = quant ? static_cast<void*>(kq.data()) : kf.data();
    r.v_cache = quant ? static_cast<void*>(vq.data()) : vf.data();
    r.k_scale = quant ? ks.data() : nullptr;
    r.v_scale = quant ? vs.data() : nullptr;
    r.qkv = qkv.data();
    r.positions = b.positions.data();
    r.slot_mapping = b.slots.data();
    r.inv_freq = inv.data();
    r.n_tokens = t;
    r.n_heads = nh;
    r.n_kv_heads = nkv;
    r.head_dim = hd;
    r.rot_dim = hd;
    r.qkv_stride = stride;
    r.n_slots = n_slots;
    r.attention_scaling = 1.0f;
    r.norm_eps = 1e-6f;
    r.q_dtype = DType::kF32;
    get_kernel(Op::kRopeKvWrite, DeviceKind::kCPU, dt).fn(&r, ExecContext{});
    std::vector<float> out(static_cast<size_t>(t * nh * hd));
    AttentionArgs a = attention_args(b, Heads{nh, nkv}, hd, 0, nh * hd, nh * hd, out.data(), q.data());
    a.k_cache = r.k_cache;
    a.v_cache = r.v_cache;
    a.k_scale = r.k_scale;
    a.v_scale = r.v_scale;
    get_kernel(Op::kAttention, DeviceKind::kCPU, dt).fn(&a, ExecContext{});
    return out;
  };
  const std::vector<float> f32 = run(DType::kF32);
  for (DType dt : kQuantDtypes) {
    const std::vector<float> got = run(dt);
    double max_err = 0.0;
    for (size_t i = 0; i < f32.size(); ++i) max_err = std::max(max_err, std::fabs(static_cast<double>(got[i]) - f32[i]));
    // int8: steps of amax/127 (<= 0.008 here); e4m3: 2^-4 relative per value; outputs are averages.
    EXPECT_LT(max_err, dt == DType::kI8 ? 0.01 : 0.05) << dtype_name(dt);
    EXPECT_GT(max_err, 0.0) << dtype_name(dt) << ": quantization changed nothing?";
  }
}

}  // namespace
}  // namespace eli
