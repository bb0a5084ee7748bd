// kernels/sample_math.h: the numerics of eli's sampling semantics (kernels/sample_ops.h states
// them), written once for the host and the device so that every kSample kernel (reference, CPU,
// CUDA) computes bit-identical values from the same inputs: a seeded request draws the same tokens
// on every device, given the same logits.
//
// How bit-identity is obtained: only IEEE-754 binary32/binary64 add, sub, mul and div (correctly
// rounded everywhere), exact conversions and bit manipulation. No libm (device and host libm differ
// in the last ulp): exp and log are the small polynomials below. No fused multiply-add: on the
// device the _rn intrinsics are never contracted; on the host, where the compiler may contract a*b+c
// (-mfma or a target attribute on x86, always on aarch64), sample_round() pins each product. Subnormals
// never arise from the arithmetic (sample_exp returns 0 below -87), so flush-to-zero modes cannot
// change a result.
//
// Counter RNG: the noise of token t in a draw is a pure function of (row key, t), where the row
// key mixes (seed, offset = the request's output index); splitmix64's finaliser is the mixer. The
// row index is deliberately not an input, so a request's draw does not depend on the batch.
// Gumbel noise g = -log(-log(1 - v)), v uniform in (0, 1) with 24 significant bits down to 2^-54:
// the upper tail (large g, which lets unlikely tokens win) reaches g = 37.4; the lower tail is cut
// at g = -2.8 (probability 6e-8).
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#if !defined(__CUDA_ARCH__) && (defined(__FAST_MATH__) || (defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0))
#error "kernels/sample_math.h needs IEEE single and double arithmetic (no -ffast-math, no x87 excess precision)"
#endif

#if defined(__CUDACC__)
#define ELI_SAMPLE_HD __host__ __device__ __forceinline__
#else
#define ELI_SAMPLE_HD inline
#endif

namespace eli {

// ---- exactly rounded basic operations ----------------------------------------------------------

// Forces v to be materialised as a rounded value: an empty asm the compiler cannot see through, so
// a*b+c cannot become one fma. Unconditional on the host, because whether a translation unit may
// contract is not visible to the preprocessor (-mfma, target pragmas and attributes, aarch64);
// a no-op on the device (the _rn intrinsics are never contracted).
ELI_SAMPLE_HD void sample_round(float& v) {
#if !defined(__CUDA_ARCH__) && (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
  __asm__("" : "+w"(v));
#elif !defined(__CUDA_ARCH__) && (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
  __asm__("" : "+x"(v));
#else
  (void)v;
#endif
}
ELI_SAMPLE_HD void sample_round(double& v) {
#if !defined(__CUDA_ARCH__) && (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
  __asm__("" : "+w"(v));
#elif !defined(__CUDA_ARCH__) && (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
  __asm__("" : "+x"(v));
#else
  (void)v;
#endif
}

ELI_SAMPLE_HD float sample_fsub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
ELI_SAMPLE_HD float sample_fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
ELI_SAMPLE_HD float sample_fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  float p = a * b;
  sample_round(p);
  return p;
#endif
}
ELI_SAMPLE_HD float sample_fdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
ELI_SAMPLE_HD double sample_dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  double p = a * b;
  sample_round(p);
  return p;
#endif
}
ELI_SAMPLE_HD double sample_dsub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}

ELI_SAMPLE_HD uint32_t sample_float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}
ELI_SAMPLE_HD float sample_bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

// ---- exp and log -------------------------------------------------------------------------------

// ln 2 split so that n * kSampleLn2Hi is exact for |n| < 2^9.
constexpr float kSampleLn2Hi = 0.693145751953125f;   // 0x3f317200
constexpr float kSampleLn2Lo = 1.42860682e-06f;      // ln 2 - kSampleLn2Hi

// e^s for s <= 0 (relative error a few ulp); 0 for s < -87 and for NaN. e^0 is exactly 1.
ELI_SAMPLE_HD float sample_exp(float s) {
  if (!(s >= -87.0f)) return 0.0f;
  // s = n ln2 + r, |r| <= ln2 / 2 (Cody-Waite). n = round(s / ln2): adding 1.5 * 2^23 leaves the
  // rounded integer in the low mantissa bits (exact for |s / ln2| < 2^22).
  constexpr float kRound = 12582912.0f;
  const float t = sample_fadd(sample_fmul(s, 1.44269504f), kRound);
  const float n = sample_fsub(t, kRound);
  const int32_t ni = static_cast<int32_t>(sample_float_bits(t) - sample_float_bits(kRound));
  const float r = sample_fsub(sample_fsub(s, sample_fmul(n, kSampleLn2Hi)), sample_fmul(n, kSampleLn2Lo));
  // e^r by its Taylor series to r^7 (error 6e-9), in Estrin's order (short dependency chains).
  const float r2 = sample_fmul(r, r);
  const float r4 = sample_fmul(r2, r2);
  const float a0 = sample_fadd(1.0f, r);
  const float a1 = sample_fadd(0.5f, sample_fmul(r, 1.66666667e-1f));          // 1/2!, 1/3!
  const float a2 = sample_fadd(4.16666667e-2f, sample_fmul(r, 8.33333333e-3f));  // 1/4!, 1/5!
  const float a3 = sample_fadd(1.38888889e-3f, sample_fmul(r, 1.98412698e-4f));  // 1/6!, 1/7!
  const float b0 = sample_fadd(a0, sample_fmul(r2, a1));
  const float b1 = sample_fadd(a2, sample_fmul(r2, a3));
  const float p = sample_fadd(b0, sample_fmul(r4, b1));
  // n in [-126, 0]: 2^n is a normal float.
  return sample_fmul(p, sample_bits_float(static_cast<uint32_t>(ni + 127) << 23));
}

// 2 atanh(s) / s as a function of u = s^2, for |s| <= 0.172 (series to s^10, error 2e-10, in
// Estrin's order), a helper of the logs below.
ELI_SAMPLE_HD float sample_atanh_ratio(float u) {
  const float u2 = sample_fmul(u, u);
  const float u4 = sample_fmul(u2, u2);
  const float e0 = sample_fadd(2.0f, sample_fmul(u, 0.666666667f));          // 2, 2/3
  const float e1 = sample_fadd(0.4f, sample_fmul(u, 0.285714286f));          // 2/5, 2/7
  const float e2 = sample_fadd(0.222222222f, sample_fmul(u, 0.181818182f));  // 2/9, 2/11
  return sample_fadd(sample_fadd(e0, sample_fmul(u2, e1)), sample_fmul(u4, e2));
}

// ln x for a normal x > 0 (relative error a few ulp).
ELI_SAMPLE_HD float sample_log(float x) {
  const uint32_t b = sample_float_bits(x);
  int32_t e = static_cast<int32_t>(b >> 23) - 127;
  float m = sample_bits_float((b & 0x7fffffu) | 0x3f800000u);  // [1, 2)
  if (m > 1.41421356f) {
    m = sample_fmul(m, 0.5f);
    e += 1;
  }
  // ln m = 2 atanh(f / (2 + f)), f = m - 1 (exact: m in [0.707, 1.415]).
  const float f = sample_fsub(m, 1.0f);
  const float s = sample_fdiv(f, sample_fadd(2.0f, f));
  const float lm = sample_fmul(s, sample_atanh_ratio(sample_fmul(s, s)));
  const float fe = static_cast<float>(e);
  return sample_fadd(sample_fmul(fe, kSampleLn2Hi), sample_fadd(sample_fmul(fe, kSampleLn2Lo), lm));
}

// -ln(1 - v) for v in (0, 1), accurate for small v (where 1 - v would lose v's bits).
ELI_SAMPLE_HD float sample_neg_log1m(float v) {
  if (v < 0.25f) {
    // -ln(1 - v) = 2 atanh(v / (2 - v)).
    const float s = sample_fdiv(v, sample_fsub(2.0f, v));
    return sample_fmul(s, sample_atanh_ratio(sample_fmul(s, s)));
  }
  return -sample_log(sample_fsub(1.0f, v));
}

// ---- counter RNG and noise ---------------------------------------------------------------------

// splitmix64's output function: a bijective 64-bit mixer.
ELI_SAMPLE_HD uint64_t sample_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The key of one draw: the request's seed and the index of the output token being drawn.
ELI_SAMPLE_HD uint64_t sample_row_key(uint64_t seed, uint64_t offset) {
  return sample_mix64(sample_mix64(seed ^ 0x6A09E667F3BCC909ull) + offset * 0x9E3779B97F4A7C15ull);
}

// 64 random bits for token t of the draw `row_key` (splitmix64's stream at position t + 1).
ELI_SAMPLE_HD uint64_t sample_token_bits(uint64_t row_key, int32_t t) {
  return sample_mix64(row_key + (static_cast<uint64_t>(static_cast<uint32_t>(t)) + 1u) * 0x9E3779B97F4A7C15ull);
}

// v in [2^-54, 1 - 2^-24] from 64 random bits: (float(bits >> 11) + 1/2) / 2^53.
ELI_SAMPLE_HD float sample_uniform(uint64_t bits) {
  const float v = sample_fmul(sample_fadd(static_cast<float>(bits >> 11), 0.5f), 0x1p-53f);
  return v < 0x1.fffffep-1f ? v : 0x1.fffffep-1f;
}

// Standard Gumbel noise from 64 random bits, in [-2.81, 37.43].
ELI_SAMPLE_HD float sample_gumbel(uint64_t bits) { return -sample_log(sample_neg_log1m(sample_uniform(bits))); }

// An upper bound of sample_gumbel (its largest value is 54 ln 2 = 37.43, at v = 2^-54): a token
// whose s + kSampleGumbelMax is below the best key so far cannot win the draw.
constexpr float kSampleGumbelMax = 38.0f;

// A cheap upper bound of sample_gumbel(bits) (no log, no float conversion of the bits): with h the
// index of the highest set bit of bits, v >= 2^(h - 64) (v = 2^-54 if bits < 2^11), so
// g <= -ln v <= (64 - h) ln 2 = (clz(bits) + 1) ln 2 (since -ln(1 - v) >= v), plus a margin far
// above the rounding of g. Kernels use it to skip the logs of tokens that cannot win; it never
// changes which token wins. Its largest value (bits = 0) is 45.07.
ELI_SAMPLE_HD float sample_gumbel_bound(uint64_t bits) {
#if defined(__CUDA_ARCH__)
  const int lz = __clzll(static_cast<long long>(bits));  // 64 for 0
#else
  const int lz = bits == 0 ? 64 : __builtin_clzll(bits);
#endif
  return static_cast<float>(lz + 1) * 0.6931472f + 0.01f;
}

// ---- the quantities of the semantics (kernels/sample_ops.h) --------------------------------------

// Temperature-scaled logit relative to the max, s = (z - zmax) * inv_t <= 0.
ELI_SAMPLE_HD float sample_scaled(float z, float zmax, float inv_t) {
  return sample_fmul(sample_fsub(z, zmax), inv_t);
}

// 1 / temperature, rounded to float (double division: exact on every device).
ELI_SAMPLE_HD float sample_inv_temperature(double temperature) { return static_cast<float>(1.0 / temperature); }

// Gumbel-max key of token t: argmax over the survivors is the sampled token.
ELI_SAMPLE_HD float sample_gumbel_key(float s, uint64_t row_key, int32_t t) {
  return sample_fadd(s, sample_gumbel(sample_token_bits(row_key, t)));
}

// The weight w = e^s of a scaled logit (min-p compares it with min_p; the best token has w = 1).
ELI_SAMPLE_HD float sample_weight(float s) { return sample_exp(s); }

// min-p keeps a token iff w >= min_p (min_p in (0, 1]; the best token always stays).
ELI_SAMPLE_HD bool sample_min_p_keeps(float s, double min_p) {
  return static_cast<double>(sample_weight(s)) >= min_p;
}

// Top-p mass of a token: its weight in fixed point, floor(w * 2^32), 0 for s < kSampleMassCut
// (where it would round to 0 anyway). Integer masses add up exactly in any order, which makes the
// top-p cut the same on every device; the best token has mass 2^32 and a row (< 2^31 tokens) sums
// to less than 2^63.
constexpr float kSampleMassCut = -23.0f;  // e^-23 * 2^32 = 0.44
constexpr uint64_t kSampleMassOne = 1ull << 32;
ELI_SAMPLE_HD uint64_t sample_mass(float s) {
  if (!(s >= kSampleMassCut)) return 0;
  return static_cast<uint64_t>(sample_fmul(sample_exp(s), 4294967296.0f));
}

// The mass a top-p prefix must reach: ceil(top_p * total), in [1, total] (total >= 2^32).
ELI_SAMPLE_HD uint64_t sample_top_p_target(uint64_t total, double top_p) {
  const double t = ceil(sample_dmul(top_p, static_cast<double>(total)));
  const uint64_t q = t >= 1.0 ? static_cast<uint64_t>(t) : 1u;
  return q < total ? q : total;
}

ELI_SAMPLE_HD float sample_clamp_to_float(double v) {
  return static_cast<float>(v > FLT_MAX ? FLT_MAX : (v < -FLT_MAX ? -FLT_MAX : v));
}

// The penalised value of a logit: repetition (z > 0 ? z / rep : z * rep), then presence/frequency
// (count > 0 only: z - frequency * count - presence), in double, each step clamped to +-FLT_MAX.
ELI_SAMPLE_HD float sample_penalize(float raw, int32_t count, double repetition, double presence,
                                    double frequency) {
  float v = raw;
  if (repetition != 1.0) {
    const double d = v;
    v = sample_clamp_to_float(d > 0.0 ? d / repetition : sample_dmul(d, repetition));
  }
  if (count > 0 && (presence != 0.0 || frequency != 0.0)) {
    const double d = sample_dsub(static_cast<double>(v), sample_dmul(frequency, static_cast<double>(count)));
    v = sample_clamp_to_float(sample_dsub(d, presence));
  }
  return v;
}

// A listed token's value after its logit bias (b != 0: z + b, clamped to +-FLT_MAX) and, if count
// >= 0 and penalties are active, its penalties (kernels/sample_ops.h, step 3).
ELI_SAMPLE_HD float sample_bias_and_penalize(float raw, float bias, int32_t count, bool penalties,
                                             double repetition, double presence, double frequency) {
  float v = raw;
  if (bias != 0.0f) v = sample_clamp_to_float(static_cast<double>(v) + static_cast<double>(bias));
  if (penalties && count >= 0) v = sample_penalize(v, count, repetition, presence, frequency);
  return v;
}
// Whether token t is allowed by a mask row (bit t % 32 of word t / 32).
ELI_SAMPLE_HD bool sample_mask_allows(const uint32_t* mask, int32_t t) {
  return ((mask[t >> 5] >> (t & 31)) & 1u) != 0;
}
ELI_SAMPLE_HD bool sample_penalties_active(double repetition, double presence, double frequency) {
  return repetition != 1.0 || presence != 0.0 || frequency != 0.0;
}

// Order of candidates: higher logit first, ties by lower id. True if (za, a) comes before (zb, b).
ELI_SAMPLE_HD bool sample_before(float za, int32_t a, float zb, int32_t b) {
  return za > zb || (za == zb && a < b);
}

}  // namespace eli
