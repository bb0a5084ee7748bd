// kernels/sample_math.h: the numerics that the sampling kernels (CUDA, reference) share, written
// once for host and device so that both compute bit-identical values from the same inputs.
//
// Counter RNG: the noise of token t in a draw is a pure function of (row key, t), where the row
// key mixes (seed, offset); splitmix64's finaliser is the mixer. The row index is deliberately not
// an input, so a request's draw does not depend on where it sits in the batch.
// Gumbel noise g = -log(-log1p(-v)), v uniform in (0, 1) with 24 significant bits down to 2^-54:
// the upper tail (large g, which lets unlikely tokens win) is resolved to g ~ 37; the lower tail
// is cut at g = -2.8 (probability 6e-8).
//
// Invariants: no fused multiply-add anywhere (the _rn intrinsics on the device; the host build
// has no FMA contraction without -mfma), so the device and the host agree to the last bit except
// in expf/logf/log1pf, whose device and libm versions may differ by an ulp.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define ELI_SAMPLE_HD __host__ __device__ __forceinline__
#else
#define ELI_SAMPLE_HD inline
#endif

namespace eli {

ELI_SAMPLE_HD float sample_fsub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
ELI_SAMPLE_HD float sample_fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
ELI_SAMPLE_HD float sample_fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
ELI_SAMPLE_HD double sample_dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
ELI_SAMPLE_HD double sample_dsub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}

// splitmix64's output function: a bijective 64-bit mixer.
ELI_SAMPLE_HD uint64_t sample_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The key of one draw (one row of one step).
ELI_SAMPLE_HD uint64_t sample_row_key(uint64_t seed, uint64_t offset) {
  return sample_mix64(sample_mix64(seed ^ 0x6A09E667F3BCC909ull) + offset * 0x9E3779B97F4A7C15ull);
}

// 64 random bits for token t of the draw `row_key` (splitmix64's stream at position t + 1).
ELI_SAMPLE_HD uint64_t sample_token_bits(uint64_t row_key, int32_t t) {
  return sample_mix64(row_key + (static_cast<uint64_t>(static_cast<uint32_t>(t)) + 1u) * 0x9E3779B97F4A7C15ull);
}

// An upper bound of sample_gumbel (its largest value is 54 ln 2 = 37.4, at v = 2^-54): a token whose
// s + kSampleGumbelMax is below the best key so far cannot win the draw.
constexpr float kSampleGumbelMax = 38.0f;

// Standard Gumbel noise from 64 random bits (see the header comment for its range).
ELI_SAMPLE_HD float sample_gumbel(uint64_t bits) {
  float v = sample_fmul(sample_fadd(static_cast<float>(bits >> 11), 0.5f), 0x1p-53f);  // (0, 1]
  v = v < 0x1.fffffep-1f ? v : 0x1.fffffep-1f;
  const float e = -log1pf(-v);  // Exp(1), accurate for small v
  return -logf(e);
}

// Temperature-scaled logit relative to the max, s = (z - zmax) * inv_t <= 0.
ELI_SAMPLE_HD float sample_scaled(float z, float zmax, float inv_t) {
  return sample_fmul(sample_fsub(z, zmax), inv_t);
}

// Gumbel-max key of token t: argmax over the survivors is the sampled token.
ELI_SAMPLE_HD float sample_gumbel_key(float s, uint64_t row_key, int32_t t) {
  return sample_fadd(s, sample_gumbel(sample_token_bits(row_key, t)));
}

ELI_SAMPLE_HD float sample_clamp_to_float(double v) {
  return static_cast<float>(v > FLT_MAX ? FLT_MAX : (v < -FLT_MAX ? -FLT_MAX : v));
}

// The penalised value of a logit: repetition, then presence/frequency (count > 0 only); as
// runtime/engine/sampler.cc apply_penalties, with the same double arithmetic and clamps.
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

ELI_SAMPLE_HD bool sample_penalties_active(double repetition, double presence, double frequency) {
  return repetition != 1.0 || presence != 0.0 || frequency != 0.0;
}

// Order of candidates: higher logit first, ties by lower id. True if (za, a) comes before (zb, b).
ELI_SAMPLE_HD bool sample_before(float za, int32_t a, float zb, int32_t b) {
  return za > zb || (za == zb && a < b);
}

}  // namespace eli
