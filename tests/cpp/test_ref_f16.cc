// tests/cpp/test_ref_f16.cc: the CPU references of the f16 (IEEE half) device path, checked on
// their own (they are what the CUDA f16 kernels are compared with, so they must be right first):
// - ref_load / ref_store (kernels/ref/ref_kernels.h) for kF16 agree with float_convert.h and with an
//   independent double-precision rounding model: round to nearest even, overflow to infinity,
//   subnormals, signed zeros, NaN stays NaN; every one of the 65536 bit patterns round-trips.
// - every f16 bit pattern goes through the references that read or write f16 buffers: an f16
//   embedding table widens each one exactly; an f16 KV cache (RopeKvWrite) stores each widened value
//   back as the same bits; an f16 GatedAct reads each one exactly.
// - gemv_ref_f16 (plain, SiLU- and GELU-gated), gemm_ref_f16, embedding_ref_f16 (with a scale),
//   rope_kv_write_ref_f16 (its KV write alone with rot_dim 0, and with RoPE and q/k norms),
//   norm_cast_ref / gated_act_ref (SiLU and GELU-tanh) with f16, reached through the registry (so
//   the registration is checked too), equal the f32 references run on the same values widened
//   exactly, with each 16-bit output equal to the f32 result rounded once (f32_to_f16). Inputs are
//   f16 values that bf16 cannot hold (11 significant bits), so a bf16 or f32 branch taken by
//   mistake fails.
// Runs on any machine (no device).
#include <gtest/gtest.h>

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "eli/error.h"
#include "kernels/ops.h"
#include "kernels/ref/float_convert.h"
#include "kernels/ref/ref_kernels.h"
#include "kernels/registry.h"

namespace eli {
namespace {

const KernelEntry& ref(Op op, DType dt) { return get_kernel(op, DeviceKind::kCPU, dt, "ref"); }

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

// Independent model of f32 -> f16 (round to nearest even) in double: the value's f16 quantum is
// 2^(e - 10) with e = max(floor(log2|v|), -14); nearbyint (ties to even under the default rounding
// mode) picks the multiple; anything that rounds past 65504 is infinite.
double f16_model(float v) {
  if (std::isnan(v)) return std::numeric_limits<double>::quiet_NaN();
  if (std::isinf(v)) return v;
  const double a = std::fabs(static_cast<double>(v));
  if (a == 0.0) return v;  // keeps the sign
  const int e = std::max(static_cast<int>(std::floor(std::log2(a))), -14);
  const double q = std::ldexp(1.0, e - 10);
  const double r = std::nearbyint(a / q) * q;
  const double m = r > 65504.0 ? std::numeric_limits<double>::infinity() : r;
  return std::signbit(v) ? -m : m;
}

uint16_t store_f16(float v) {
  uint16_t h = 0;
  ref_store(&h, DType::kF16, 0, v);
  return h;
}
float load_f16(uint16_t h) { return ref_load(&h, DType::kF16, 0); }

// ---- conversions --------------------------------------------------------------------------------

TEST(RefF16, EveryBitPatternRoundTrips) {
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  for (uint32_t b = 0; b < 65536; ++b) {
    const uint16_t h = static_cast<uint16_t>(b);
    const float f = load_f16(h);
    ASSERT_TRUE(same_bits(f, f16_to_f32(h))) << std::hex << b;
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(store_f16(f)))) << std::hex << b;  // NaN stays NaN
      continue;
    }
    // The widened value is exact: the model and the store give it back unchanged.
    ASSERT_EQ(f16_model(f), static_cast<double>(f)) << std::hex << b;
    ASSERT_EQ(store_f16(f), h) << std::hex << b;
    ASSERT_EQ(f32_to_f16(f), h) << std::hex << b;
  }
}

TEST(RefF16, HandPickedValues) {
  // Exact values, min normal, max finite, subnormals.
  EXPECT_EQ(store_f16(1.0f), 0x3c00);
  EXPECT_EQ(store_f16(-2.0f), 0xc000);
  EXPECT_EQ(store_f16(0.0f), 0x0000);
  EXPECT_EQ(store_f16(-0.0f), 0x8000);
  EXPECT_EQ(store_f16(65504.0f), 0x7bff);
  EXPECT_EQ(store_f16(std::ldexp(1.0f, -14)), 0x0400);                         // min normal
  EXPECT_EQ(store_f16(std::ldexp(1.0f, -24)), 0x0001);                         // min subnormal
  EXPECT_EQ(store_f16(std::ldexp(1023.0f, -24)), 0x03ff);                      // max subnormal
  EXPECT_EQ(load_f16(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(load_f16(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(load_f16(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(load_f16(0x7bff), 65504.0f);
  // Round to nearest, ties to even (f16 ulp at 1 is 2^-10).
  EXPECT_EQ(store_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);                   // tie -> even (down)
  EXPECT_EQ(store_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);               // tie -> even (up)
  EXPECT_EQ(store_f16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3c01);  // past the tie
  EXPECT_EQ(store_f16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 0.0f)), 0x3c00);
  EXPECT_EQ(store_f16(2047.5f), 0x67ff + 1);  // 2047.5 ties between 2047 (odd) and 2048
  // Mantissa carry into the exponent.
  EXPECT_EQ(store_f16(std::nextafter(2.0f, 0.0f)), 0x4000);
  // Overflow to infinity: 65520 is the tie between 65504 and 65536 (which is out of range).
  EXPECT_EQ(store_f16(65519.99f), 0x7bff);
  EXPECT_EQ(store_f16(65520.0f), 0x7c00);
  EXPECT_EQ(store_f16(1e6f), 0x7c00);
  EXPECT_EQ(store_f16(-1e6f), 0xfc00);
  EXPECT_EQ(store_f16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(store_f16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_TRUE(std::isinf(load_f16(0x7c00)) && load_f16(0x7c00) > 0);
  // Subnormal rounding: 2^-25 ties to 0 (even), 3 * 2^-25 ties to 2 * 2^-24, just above 2^-25 -> 2^-24.
  EXPECT_EQ(store_f16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(store_f16(-std::ldexp(1.0f, -25)), 0x8000);
  EXPECT_EQ(store_f16(std::ldexp(3.0f, -25)), 0x0002);
  EXPECT_EQ(store_f16(std::ldexp(5.0f, -25)), 0x0002);  // 2.5 * 2^-24 ties to 2
  EXPECT_EQ(store_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(store_f16(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(store_f16(std::ldexp(2047.0f, -25)), 0x0400);  // max subnormal + half ulp ties up to min normal
  // NaN stays NaN (quiet), sign kept.
  const uint16_t n = store_f16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE((n & 0x7c00) == 0x7c00 && (n & 0x03ff) != 0) << std::hex << n;
  EXPECT_TRUE(std::isnan(load_f16(0x7e00)));
  EXPECT_TRUE(std::isnan(load_f16(0xfc01)));
}

TEST(RefF16, StoreMatchesRoundingModel) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<uint32_t> bits;
  size_t checked = 0;
  // Random f32 bit patterns, concentrated on the exponents f16 cares about (2^-27 .. 2^17).
  for (int i = 0; i < 400000; ++i) {
    uint32_t u = bits(rng);
    if (i % 4 != 0) u = (u & 0x807fffffu) | ((100u + (u >> 23) % 45u) << 23);
    float v;
    std::memcpy(&v, &u, sizeof(v));
    if (std::isnan(v)) continue;
    const uint16_t h = store_f16(v);
    ASSERT_EQ(h, f32_to_f16(v)) << v;
    const double want = f16_model(v);
    const float got = load_f16(h);
    ASSERT_TRUE(static_cast<double>(got) == want && std::signbit(got) == std::signbit(want))
        << std::hexfloat << v << " -> " << got << " model " << want;
    ++checked;
  }
  EXPECT_GT(checked, 390000u);
}

TEST(RefF16, OtherDtypesUnchanged) {
  // The f16 branch must not disturb bf16 / f32: ref_load/ref_store still agree with float_convert.h.
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> d(-100.f, 100.f);
  for (int i = 0; i < 1000; ++i) {
    const float v = d(rng);
    uint16_t b = 0;
    float f = 0.f;
    ref_store(&b, DType::kBF16, 0, v);
    ref_store(&f, DType::kF32, 0, v);
    EXPECT_EQ(b, f32_to_bf16(v));
    EXPECT_EQ(ref_load(&b, DType::kBF16, 0), bf16_to_f32(b));
    EXPECT_TRUE(same_bits(f, v));
    EXPECT_TRUE(same_bits(ref_load(&f, DType::kF32, 0), v));
  }
}

// ---- references -----------------------------------------------------------------------------

// n random values exactly representable in f16 with a full 11-bit significand in [lo, hi) (so
// that none of them is representable in bf16): returns the f16 bits; *wide gets the f32 values.
std::vector<uint16_t> rand_f16(std::mt19937& rng, size_t n, float lo, float hi, std::vector<float>* wide) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<uint16_t> h(n);
  wide->resize(n);
  for (size_t i = 0; i < n; ++i) {
    uint16_t b;
    do {
      b = f32_to_f16(d(rng));
    } while ((b & 0x7u) == 0 || (b & 0x7c00u) == 0);  // the low 3 mantissa bits are beyond bf16
    h[i] = b;
    (*wide)[i] = f16_to_f32(b);
    if (bf16_to_f32(f32_to_bf16((*wide)[i])) == (*wide)[i]) ADD_FAILURE() << "value representable in bf16";
  }
  return h;
}

std::vector<uint16_t> to_f16(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_f16(v[i]);
  return h;
}

void expect_bits_equal(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!same_bits(got[i], want[i]) && ++bad <= 4) {
      ADD_FAILURE() << what << " [" << i << "] " << got[i] << " vs " << want[i];
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}
void expect_bits_equal(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i] && ++bad <= 4) {
      ADD_FAILURE() << what << " [" << i << "] " << std::hex << got[i] << " vs " << want[i] << std::dec;
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

TEST(RefF16, EntriesAreRegistered) {
  for (Op op : {Op::kEmbedding, Op::kAttention, Op::kGemv, Op::kGemm, Op::kRopeKvWrite})
    EXPECT_NE(find_kernel(op, DeviceKind::kCPU, DType::kF16, "ref"), nullptr) << op_name(op);
}

TEST(RefF16, GemvEqualsF32OnWidenedWeights) {
  std::mt19937 rng(21);
  struct Case {
    int64_t m, n, k;
    bool norm, bias;
    GatedAct gated;
    bool accumulate;
  };
  const GatedAct N = GatedAct::kNone, S = GatedAct::kSilu, G = GatedAct::kGeluTanh;
  for (const Case& c : {Case{1, 6, 16, false, false, N, false}, Case{3, 10, 37, true, true, N, true},
                        Case{2, 8, 24, true, false, S, false}, Case{5, 14, 9, false, true, S, true},
                        Case{4, 12, 21, true, true, G, false}, Case{1, 6, 40, false, false, G, true}}) {
    const int64_t n_out = c.gated != N ? c.n / 2 : c.n, xs = c.k + 2, os = n_out + 3;
    std::vector<float> wf;
    const std::vector<uint16_t> wh = rand_f16(rng, static_cast<size_t>(c.n * c.k), -1.f, 1.f, &wf);
    std::vector<float> x(static_cast<size_t>(c.m * xs)), bias(static_cast<size_t>(c.n)), g(static_cast<size_t>(c.k));
    std::uniform_real_distribution<float> d(-2.f, 2.f);
    for (float& v : x) v = d(rng);  // x stays f32 (any value)
    for (float& v : bias) v = d(rng);
    for (float& v : g) v = 0.5f + 0.25f * d(rng);
    std::vector<float> out0(static_cast<size_t>(c.m * os));
    for (float& v : out0) v = d(rng);
    std::vector<float> got = out0, want = out0;
    GemvArgs a{got.data(), x.data(), wh.data(), c.bias ? bias.data() : nullptr, c.norm ? g.data() : nullptr,
               c.m, c.n, c.k, os, xs};
    a.norm_eps = 1e-5f;
    a.norm_weight_offset = 0.125f;
    a.gated = c.gated;
    a.accumulate = c.accumulate;
    GemvArgs b = a;
    b.out = want.data();
    b.w = wf.data();
    ref(Op::kGemv, DType::kF16).fn(&a, ExecContext{});
    ref(Op::kGemv, DType::kF32).fn(&b, ExecContext{});
    const std::string what = "gemv m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
                             " k=" + std::to_string(c.k) + " " + gated_act_name(c.gated);
    expect_bits_equal(got, want, what);
    // Taken as bf16 (the wrong branch) the same bits give another result.
    std::vector<float> other = out0;
    a.out = other.data();
    ref(Op::kGemv, DType::kBF16).fn(&a, ExecContext{});
    EXPECT_NE(other, want) << what;
  }
}

TEST(RefF16, GemmEqualsF32OnWidenedOperands) {
  std::mt19937 rng(22);
  struct Case {
    int64_t m, n, k;
    bool bias, accumulate;
    DType out;
  };
  const DType F = DType::kF32, H = DType::kF16;
  for (const Case& c : {Case{1, 1, 1, false, false, F}, Case{4, 7, 19, true, true, F}, Case{6, 5, 33, true, false, H},
                        Case{3, 9, 8, false, false, H}}) {
    const int64_t xs = c.k + 1, os = c.n + 2;
    std::vector<float> xf, wf;
    const std::vector<uint16_t> xh = rand_f16(rng, static_cast<size_t>(c.m * xs), -1.f, 1.f, &xf);
    const std::vector<uint16_t> wh = rand_f16(rng, static_cast<size_t>(c.n * c.k), -1.f, 1.f, &wf);
    std::vector<float> bias(static_cast<size_t>(c.n)), out0(static_cast<size_t>(c.m * os));
    std::uniform_real_distribution<float> d(-3.f, 3.f);
    for (float& v : bias) v = d(rng);
    for (float& v : out0) v = d(rng);
    // f32 reference: f32 operands, f32 out.
    std::vector<float> want = out0;
    GemmArgs b{want.data(), xf.data(), wf.data(), c.bias ? bias.data() : nullptr, c.m, c.n, c.k, os, xs};
    b.x_dtype = F;
    b.out_dtype = F;
    b.accumulate = c.accumulate;
    ref(Op::kGemm, F).fn(&b, ExecContext{});
    const std::string what = "gemm m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
                             " k=" + std::to_string(c.k) + " out " + dtype_name(c.out);
    GemmArgs a = b;
    a.x = xh.data();
    a.w = wh.data();
    a.x_dtype = H;
    a.out_dtype = c.out;
    if (c.out == F) {
      std::vector<float> got = out0;
      a.out = got.data();
      ref(Op::kGemm, H).fn(&a, ExecContext{});
      expect_bits_equal(got, want, what);
    } else {
      std::vector<uint16_t> got(out0.size(), 0x7777);
      a.out = got.data();
      ref(Op::kGemm, H).fn(&a, ExecContext{});
      std::vector<uint16_t> w16 = to_f16(want);  // rounded once from the f32 result
      for (int64_t i = 0; i < c.m; ++i)
        for (int64_t j = c.n; j < os; ++j) w16[static_cast<size_t>(i * os + j)] = 0x7777;  // padding untouched
      expect_bits_equal(got, w16, what);
    }
  }
}

TEST(RefF16, EmbeddingWidensExactly) {
  std::mt19937 rng(23);
  const int64_t vocab = 11, hidden = 13;
  std::vector<float> tf;
  const std::vector<uint16_t> th = rand_f16(rng, static_cast<size_t>(vocab * hidden), -4.f, 4.f, &tf);
  const std::vector<int32_t> ids = {0, 10, 3, 3, 7};
  const int64_t t = static_cast<int64_t>(ids.size());
  for (float scale : {1.0f, std::sqrt(2304.0f), 0.3f}) {  // Gemma scales by sqrt(hidden)
    std::vector<float> got(static_cast<size_t>(t * hidden), -1.f), want = got;
    EmbeddingArgs a{got.data(), th.data(), ids.data(), t, hidden, vocab, scale};
    EmbeddingArgs b{want.data(), tf.data(), ids.data(), t, hidden, vocab, scale};
    ref(Op::kEmbedding, DType::kF16).fn(&a, ExecContext{});
    ref(Op::kEmbedding, DType::kF32).fn(&b, ExecContext{});
    expect_bits_equal(got, want, "embedding scale " + std::to_string(scale));
    for (int64_t j = 0; j < hidden; ++j) {
      EXPECT_EQ(got[static_cast<size_t>(2 * hidden + j)], f16_to_f32(th[static_cast<size_t>(3 * hidden + j)]) * scale);
    }
  }
}

// RopeKvWrite args for n_tokens tokens of one q head and one kv head of dim hd, no RoPE (rot_dim
// 0), no norms: q, k and v of token t are qkv[t * 3 hd + ...]; token t goes to slot slots[t].
RopeKvWriteArgs plain_kv_write(void* q_out, void* kc, void* vc, const std::vector<float>& qkv,
                               const std::vector<int32_t>& pos, const std::vector<int32_t>& slots, int64_t hd,
                               int64_t n_slots, DType q_dtype) {
  RopeKvWriteArgs a{};
  a.q_out = q_out;
  a.k_cache = kc;
  a.v_cache = vc;
  a.qkv = qkv.data();
  a.positions = pos.data();
  a.slot_mapping = slots.data();
  a.n_tokens = static_cast<int64_t>(slots.size());
  a.n_heads = 1;
  a.n_kv_heads = 1;
  a.head_dim = hd;
  a.rot_dim = 0;
  a.qkv_stride = 3 * hd;
  a.n_slots = n_slots;
  a.attention_scaling = 1.0f;
  a.norm_eps = 1e-6f;
  a.q_dtype = q_dtype;
  return a;
}

// Every f16 bit pattern through the references that read or write f16 buffers.
TEST(RefF16, EveryBitPatternThroughTheReferences) {
  const int64_t n = 65536;
  std::vector<uint16_t> all(static_cast<size_t>(n));
  for (int64_t b = 0; b < n; ++b) all[static_cast<size_t>(b)] = static_cast<uint16_t>(b);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t b = 0; b < n; ++b) ids[static_cast<size_t>(b)] = static_cast<int32_t>(b);
  // Embedding: table row b (hidden 1) holds pattern b; the gathered f32 is its exact widening.
  std::vector<float> emb(static_cast<size_t>(n));
  EmbeddingArgs e{emb.data(), all.data(), ids.data(), n, 1, n};
  ref(Op::kEmbedding, DType::kF16).fn(&e, ExecContext{});
  // KV write: token b carries the widened value b as q, k and v; the f16 cache must hold pattern b
  // again (NaN: some NaN), and an f16 q_out too.
  std::vector<float> qkv(static_cast<size_t>(3 * n));
  for (int64_t b = 0; b < n; ++b)
    for (int64_t j = 0; j < 3; ++j) qkv[static_cast<size_t>(3 * b + j)] = emb[static_cast<size_t>(b)];
  std::vector<uint16_t> kc(static_cast<size_t>(n), 0x1234), vc = kc, q = kc;
  std::vector<int32_t> pos(static_cast<size_t>(n), 0);
  RopeKvWriteArgs kv = plain_kv_write(q.data(), kc.data(), vc.data(), qkv, pos, ids, 1, n, DType::kF16);
  ref(Op::kRopeKvWrite, DType::kF16).fn(&kv, ExecContext{});
  // GatedAct with f16 buffers: gate pattern b, up 1.0; SiLU of the exact widened gate, rounded once.
  std::vector<uint16_t> gu(static_cast<size_t>(2 * n));
  for (int64_t b = 0; b < n; ++b) {
    gu[static_cast<size_t>(2 * b)] = static_cast<uint16_t>(b);
    gu[static_cast<size_t>(2 * b + 1)] = 0x3c00;  // 1.0
  }
  std::vector<uint16_t> act(static_cast<size_t>(n));
  GatedActArgs g{act.data(), gu.data(), n, 1, 1, 2, DType::kF16, GatedAct::kSilu};
  ref(Op::kGatedAct, DType::kF32).fn(&g, ExecContext{});
  size_t bad = 0;
  for (int64_t b = 0; b < n; ++b) {
    const size_t i = static_cast<size_t>(b);
    const float w = f16_to_f32(all[i]);
    const bool nan = std::isnan(w);
    bool ok = nan ? std::isnan(emb[i]) : same_bits(emb[i], w);
    for (const std::vector<uint16_t>* c : {&kc, &vc, &q})
      ok = ok && (nan ? std::isnan(f16_to_f32((*c)[i])) : (*c)[i] == all[i]);
    const double silu = static_cast<double>(w) / (1.0 + std::exp(-static_cast<double>(w)));
    ok = ok && (nan ? std::isnan(f16_to_f32(act[i])) : act[i] == f32_to_f16(static_cast<float>(silu)));
    if (!ok && ++bad <= 4) ADD_FAILURE() << "f16 pattern 0x" << std::hex << b << std::dec;
  }
  EXPECT_EQ(bad, 0u);
}

TEST(RefF16, KvWriteRoundsOnce) {
  // RopeKvWrite without rotary or norms is the KV write: an f16 cache holds the f32 cache's values
  // rounded once (overflow to inf, subnormal ties), skipped slots untouched.
  std::mt19937 rng(24);
  const int64_t T = 6, hd = 5, n_slots = 9;
  std::uniform_real_distribution<float> d(-3.f, 3.f);
  std::vector<float> qkv(static_cast<size_t>(T * 3 * hd));
  for (float& x : qkv) x = d(rng);  // arbitrary f32: the store rounds
  qkv[hd] = 1e6f;                   // token 0's k: overflows to inf in the cache
  qkv[hd + 1] = std::ldexp(3.0f, -25);  // subnormal tie
  const std::vector<int32_t> slots = {4, -1, 0, 8, 9, 2}, pos(static_cast<size_t>(T), 3);  // -1 and 9 skipped
  std::vector<float> q32(static_cast<size_t>(T * hd)), kc32(static_cast<size_t>(n_slots * hd), 7.f), vc32 = kc32;
  RopeKvWriteArgs b = plain_kv_write(q32.data(), kc32.data(), vc32.data(), qkv, pos, slots, hd, n_slots, DType::kF32);
  ref(Op::kRopeKvWrite, DType::kF32).fn(&b, ExecContext{});
  std::vector<uint16_t> kc16(kc32.size(), f32_to_f16(7.f)), vc16 = kc16;
  std::vector<float> q(q32.size());
  RopeKvWriteArgs a = plain_kv_write(q.data(), kc16.data(), vc16.data(), qkv, pos, slots, hd, n_slots, DType::kF32);
  ref(Op::kRopeKvWrite, DType::kF16).fn(&a, ExecContext{});
  expect_bits_equal(kc16, to_f16(kc32), "kv_write k");
  expect_bits_equal(vc16, to_f16(vc32), "kv_write v");
  expect_bits_equal(q, q32, "kv_write q (f32)");
  EXPECT_EQ(kc16[static_cast<size_t>(4 * hd)], 0x7c00);
  EXPECT_EQ(kc16[static_cast<size_t>(4 * hd + 1)], 0x0002);
  EXPECT_EQ(kc16[static_cast<size_t>(1 * hd)], f32_to_f16(7.f));  // slot 1: nobody's
}

void run_rope_kv(DType cache, DType qdt, bool norm, std::mt19937& rng) {
  const int64_t T = 4, nh = 3, nkv = 1, hd = 12, rot = 8, stride = (nh + 2 * nkv) * hd + 2, n_slots = 7;
  std::uniform_real_distribution<float> d(-2.f, 2.f);
  std::vector<float> qkv(static_cast<size_t>(T * stride)), qn(hd), kn(hd), inv_freq(rot / 2);
  for (float& x : qkv) x = d(rng);
  for (float& x : qn) x = 1.f + 0.25f * d(rng);
  for (float& x : kn) x = 1.f + 0.25f * d(rng);
  for (int64_t i = 0; i < rot / 2; ++i) inv_freq[i] = std::pow(10000.f, -2.f * i / rot);
  const std::vector<int32_t> pos = {0, 5, 17, 300}, slots = {2, -1, 6, 0};
  RopeKvWriteArgs b{};
  std::vector<float> q32(static_cast<size_t>(T * nh * hd), 9.f), kc32(static_cast<size_t>(n_slots * nkv * hd), 9.f),
      vc32 = kc32;
  b.q_out = q32.data();
  b.k_cache = kc32.data();
  b.v_cache = vc32.data();
  b.qkv = qkv.data();
  b.q_norm = norm ? qn.data() : nullptr;
  b.k_norm = norm ? kn.data() : nullptr;
  b.positions = pos.data();
  b.slot_mapping = slots.data();
  b.inv_freq = inv_freq.data();
  b.table_of_token = nullptr;
  b.n_tokens = T;
  b.n_heads = nh;
  b.n_kv_heads = nkv;
  b.head_dim = hd;
  b.rot_dim = rot;
  b.qkv_stride = stride;
  b.n_slots = n_slots;
  b.attention_scaling = 1.1f;
  b.norm_eps = 1e-6f;
  b.q_dtype = DType::kF32;
  ref(Op::kRopeKvWrite, DType::kF32).fn(&b, ExecContext{});

  const std::string what = std::string("rope_kv cache ") + dtype_name(cache) + " q " + dtype_name(qdt) +
                           (norm ? " norm" : "");
  RopeKvWriteArgs a = b;
  a.q_dtype = qdt;
  std::vector<float> qf(q32.size(), 9.f);
  std::vector<uint16_t> qh(q32.size(), f32_to_f16(9.f)), kh(kc32.size(), f32_to_f16(9.f)), vh = kh;
  a.q_out = qdt == DType::kF16 ? static_cast<void*>(qh.data()) : static_cast<void*>(qf.data());
  a.k_cache = kh.data();
  a.v_cache = vh.data();
  ASSERT_EQ(cache, DType::kF16);
  ref(Op::kRopeKvWrite, cache).fn(&a, ExecContext{});
  if (qdt == DType::kF16) {
    expect_bits_equal(qh, to_f16(q32), what + " q");
  } else {
    expect_bits_equal(qf, q32, what + " q");
  }
  expect_bits_equal(kh, to_f16(kc32), what + " k cache");
  expect_bits_equal(vh, to_f16(vc32), what + " v cache");
}

TEST(RefF16, RopeKvWriteRoundsOnce) {
  std::mt19937 rng(25);
  for (DType qdt : {DType::kF16, DType::kF32})
    for (bool norm : {false, true}) run_rope_kv(DType::kF16, qdt, norm, rng);
}

TEST(RefF16, NormCastAndGatedAct) {
  std::mt19937 rng(26);
  std::uniform_real_distribution<float> d(-3.f, 3.f);
  {
    const int64_t rows = 3, hidden = 17, xs = 19, os = 20;
    std::vector<float> x(static_cast<size_t>(rows * xs)), w(hidden);
    for (float& v : x) v = d(rng);
    for (float& v : w) v = 1.f + 0.2f * d(rng);
    std::vector<float> o32(static_cast<size_t>(rows * os), 5.f);
    std::vector<uint16_t> o16(o32.size(), f32_to_f16(5.f));
    NormCastArgs b{o32.data(), x.data(), w.data(), rows, hidden, os, xs, 1e-5f, 0.5f, DType::kF32};
    NormCastArgs a = b;
    a.out = o16.data();
    a.out_dtype = DType::kF16;
    ref(Op::kNormCast, DType::kF32).fn(&b, ExecContext{});
    ref(Op::kNormCast, DType::kF32).fn(&a, ExecContext{});
    expect_bits_equal(o16, to_f16(o32), "norm_cast f16");
    a.accumulate = true;  // accumulating needs an f32 output
    EXPECT_THROW(ref(Op::kNormCast, DType::kF32).fn(&a, ExecContext{}), Error);
  }
  for (GatedAct act : {GatedAct::kSilu, GatedAct::kGeluTanh}) {
    const int64_t rows = 2, inter = 9, is = 2 * inter + 1, os = inter + 2;
    std::vector<float> gf;
    const std::vector<uint16_t> gh = rand_f16(rng, static_cast<size_t>(rows * is), -6.f, 6.f, &gf);
    std::vector<float> o32(static_cast<size_t>(rows * os), 5.f);
    std::vector<uint16_t> o16(o32.size(), f32_to_f16(5.f));
    GatedActArgs b{o32.data(), gf.data(), rows, inter, os, is, DType::kF32, act};
    GatedActArgs a{o16.data(), gh.data(), rows, inter, os, is, DType::kF16, act};
    ref(Op::kGatedAct, DType::kF32).fn(&b, ExecContext{});
    ref(Op::kGatedAct, DType::kF32).fn(&a, ExecContext{});
    expect_bits_equal(o16, to_f16(o32), std::string("gated_act f16 ") + gated_act_name(act));
  }
}

}  // namespace
}  // namespace eli
