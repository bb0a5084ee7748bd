// kernels/cpu/quant_avx2_blocks.h: AVX2 building blocks of the 32-element GGUF block types, shared
// by the dot products (quant_dot_avx2.cc) and the prefill GEMM (quant_gemm_avx2.cc): 32 weight
// quants into one register as bytes in element order, and the horizontal float sum.
//
// Invariants: include only from files built with -mavx2 -mfma -mf16c (the *_avx2.cc files);
// everything is `static inline` (internal linkage) and integer-exact.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/quant_blocks.h"
#include "kernels/ref/dequant_ref.h"

namespace eli {
namespace quant_avx2 {

using quant::load_u16;
using quant::load_u32;

static inline float h2f(const uint8_t* p) { return _cvtsh_ss(load_u16(p)); }

// The float sum of the 8 lanes as ((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7)): the
// association hsum4 gives each of its four sums (so one-row and tiled forms agree bit for bit).
static inline float hsum(__m256 v) {
  const __m256 h = _mm256_hadd_ps(v, v);
  const __m256 h2 = _mm256_hadd_ps(h, h);
  return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(h2), _mm256_extractf128_ps(h2, 1)));
}
// {hsum(a), hsum(b), hsum(c), hsum(d)} with the same operations per sum.
static inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

static inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
static inline __m256i ones16() { return _mm256_set1_epi16(1); }
static inline __m256i low4() { return _mm256_set1_epi8(0x0f); }

// 8 int32 lanes of sum q[e] * x[e]: q unsigned bytes, x signed.
static inline __m256i dot_u8s8(__m256i q, __m256i x) { return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), ones16()); }
// The same for signed q (|x| <= 127).
static inline __m256i dot_s8s8(__m256i q, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q)), ones16());
}
// 16 bytes of nibbles -> 32 bytes: the low nibbles, then the high nibbles.
static inline __m256i nibbles(const uint8_t* p) {
  const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_and_si256(_mm256_blend_epi32(t, _mm256_srli_epi16(t, 4), 0xf0), low4());
}
// Byte i = 0xff where bit i of `bits` is set, else 0.
static inline __m256i bit_bytes(uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i mask = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
}
// The 5th bits of Q5_0 / Q5_1 (a u32 at `bits`) over the low nibbles at `qs`.
static inline __m256i five_bits(const uint8_t* bits, const uint8_t* qs) {
  return _mm256_or_si256(nibbles(qs), _mm256_and_si256(bit_bytes(load_u32(bits)), _mm256_set1_epi8(0x10)));
}

// Bytes (v >> shift) & mask, shifting 16-bit lanes (exact for the bits a mask keeps below 8 - shift).
static inline __m256i shr_mask(__m256i v, int shift, int mask) {
  return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(shift)), _mm256_set1_epi8(static_cast<char>(mask)));
}
// A madd multiplier: sub-block scale lo for elements 0..15, hi for 16..31.
static inline __m256i scale_pair(int lo, int hi) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(hi)), _mm_set1_epi16(static_cast<short>(lo)));
}
static inline __m256i iq4_lookup(const uint8_t* p) {
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4Values));
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(t, 4), m)),
                          _mm_shuffle_epi8(table, _mm_and_si128(t, m)));
}

// How a 32-element block type's quants meet the activations: kSigned quants (Q8_0, IQ4_NL) go
// through the sign trick; the others are unsigned bytes q_u with value = q_u * d + offset, the
// offset being the stored f16 min at wb + 2 (kStored: Q4_1, Q5_1) or -8 d / -16 d (Q4_0 / Q5_0,
// whose signed quants are q_u - 8 / q_u - 16). An offset o of a weight block is taken out with the
// activation block's s = d_x * sum(q_x): offs = fma(o, s, offs) per block, added after the sum.
enum class Off { kNone, kStored, kMinus8, kMinus16 };
// The factor c of out = acc + offs * c (a power of two or 1: the product is exact).
constexpr float off_scale(Off off) { return off == Off::kMinus8 ? -8.0f : off == Off::kMinus16 ? -16.0f : 1.0f; }

// Lane p = the sum of the 8 int32 lanes of v[p] (exact): a phadd tree, then the two halves added.
static inline __m256i reduce8_epi32(const __m256i* v) {
  const __m256i ab = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
  const __m256i cd = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20), _mm256_permute2x128_si256(ab, cd, 0x31));
}

struct DecodeQ4_0 {
  __m256i operator()(const uint8_t* wb) const { return nibbles(wb + 2); }  // q_u = q + 8
};
struct DecodeQ4_1 {
  __m256i operator()(const uint8_t* wb) const { return nibbles(wb + 4); }
};
struct DecodeQ5_0 {
  __m256i operator()(const uint8_t* wb) const { return five_bits(wb + 2, wb + 6); }  // q_u = q + 16
};
struct DecodeQ5_1 {
  __m256i operator()(const uint8_t* wb) const { return five_bits(wb + 4, wb + 8); }
};
struct DecodeQ8_0 {
  __m256i operator()(const uint8_t* wb) const { return load256(wb + 2); }
};
struct DecodeIq4Nl {
  __m256i operator()(const uint8_t* wb) const { return iq4_lookup(wb + 2); }
};

}  // namespace quant_avx2
}  // namespace eli
