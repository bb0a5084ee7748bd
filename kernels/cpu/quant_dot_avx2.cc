// kernels/cpu/quant_dot_avx2.cc: AVX2 dot products of the GGUF block types with 8-bit quantized
// activations (built with -mavx2 -mfma -mf16c; called only where the CPU has them).
//
// Building blocks: 32 weight quants are brought into one register as bytes in element order
// (nibbles: low nibbles are elements 0..15, high nibbles 16..31), then
//   unsigned quants (Q4_1, Q5_1, K types): maddubs(q_u8, x_s8) -> 16 pair sums (int16, no
//     overflow: |q| <= 63, |x| <= 127), madd with the sub-block scales -> 8 int32 lanes;
//   signed quants (Q4_0, Q5_0, Q8_0, IQ4): maddubs(|q|, sign(x, q)) (|x| <= 127, so sign() never
//     overflows), then madd.
// Offsets of the K types (Q6_K's -32, Q3_K's -4, mins) are taken out with the activation block
// sums (bsums) in scalar code. Integer sums are exact; one float multiply-add per block.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/ref/dequant_ref.h"

namespace eli {
namespace {

using quant::load_u16;
using quant::load_u32;

inline float h2f(const uint8_t* p) { return _cvtsh_ss(load_u16(p)); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m256i ones16() { return _mm256_set1_epi16(1); }
inline __m256i low4() { return _mm256_set1_epi8(0x0f); }

// 8 int32 lanes of sum q[e] * x[e]: q unsigned bytes, x signed.
inline __m256i dot_u8s8(__m256i q, __m256i x) { return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), ones16()); }
// The same for signed q (|x| <= 127).
inline __m256i dot_s8s8(__m256i q, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q)), ones16());
}
// 16 bytes of nibbles -> 32 bytes: the low nibbles, then the high nibbles.
inline __m256i nibbles(const uint8_t* p) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), low4());
}
// Byte i = 0xff where bit i of `bits` is set, else 0.
inline __m256i bit_bytes(uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i mask = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
}
// The 5th bits of Q5_0 / Q5_1 (a u32 at `bits`) over the low nibbles at `qs`.
inline __m256i five_bits(const uint8_t* bits, const uint8_t* qs) {
  return _mm256_or_si256(nibbles(qs), _mm256_and_si256(bit_bytes(load_u32(bits)), _mm256_set1_epi8(0x10)));
}

// Bytes (v >> shift) & mask, shifting 16-bit lanes (exact for the bits a mask keeps below 8 - shift).
inline __m256i shr_mask(__m256i v, int shift, int mask) {
  return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(shift)), _mm256_set1_epi8(static_cast<char>(mask)));
}
// A madd multiplier: sub-block scale lo for elements 0..15, hi for 16..31.
inline __m256i scale_pair(int lo, int hi) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(hi)), _mm_set1_epi16(static_cast<short>(lo)));
}
inline __m256i iq4_lookup(const uint8_t* p) {
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4Values));
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(t, 4), m)),
                          _mm_shuffle_epi8(table, _mm_and_si128(t, m)));
}

// ---- 32-element types -----------------------------------------------------------------------

float dot_q4_0(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8x32*>(xq);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / 32; ++b, wb += 18) {
    const __m256i q = _mm256_sub_epi8(nibbles(wb + 2), _mm256_set1_epi8(8));
    const __m256i p = dot_s8s8(q, load256(xb[b].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(wb) * xb[b].d), _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

float dot_q4_1(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8x32*>(xq);
  __m256 acc = _mm256_setzero_ps();
  float offs = 0.0f;
  for (int64_t b = 0; b < k / 32; ++b, wb += 20) {
    const __m256i p = dot_u8s8(nibbles(wb + 4), load256(xb[b].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(wb) * xb[b].d), _mm256_cvtepi32_ps(p), acc);
    offs += h2f(wb + 2) * xb[b].s;
  }
  return hsum(acc) + offs;
}

float dot_q5_0(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8x32*>(xq);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / 32; ++b, wb += 22) {
    const __m256i q = _mm256_sub_epi8(five_bits(wb + 2, wb + 6), _mm256_set1_epi8(16));
    const __m256i p = dot_s8s8(q, load256(xb[b].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(wb) * xb[b].d), _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

float dot_q5_1(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8x32*>(xq);
  __m256 acc = _mm256_setzero_ps();
  float offs = 0.0f;
  for (int64_t b = 0; b < k / 32; ++b, wb += 24) {
    const __m256i p = dot_u8s8(five_bits(wb + 4, wb + 8), load256(xb[b].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(wb) * xb[b].d), _mm256_cvtepi32_ps(p), acc);
    offs += h2f(wb + 2) * xb[b].s;
  }
  return hsum(acc) + offs;
}

float dot_q8_0(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8x32*>(xq);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / 32; ++b, wb += 34) {
    const __m256i p = dot_s8s8(load256(wb + 2), load256(xb[b].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(wb) * xb[b].d), _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

float dot_iq4_nl(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8x32*>(xq);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / 32; ++b, wb += 18) {
    const __m256i p = dot_s8s8(iq4_lookup(wb + 2), load256(xb[b].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(wb) * xb[b].d), _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

// ---- K types (256-element super-blocks, Q8xK activations) -----------------------------------

float dot_q2_k(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.0f;
  for (int64_t b = 0; b < k / 256; ++b, wb += 84) {
    const uint8_t* sc = wb;
    __m256i isum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i v = load256(wb + 16 + 32 * h);
      for (int s = 0; s < 4; ++s) {
        const int g = 8 * h + 2 * s;
        const __m256i p = _mm256_maddubs_epi16(shr_mask(v, 2 * s, 3), load256(xb[b].qs + 128 * h + 32 * s));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair(sc[g] & 0x0f, sc[g + 1] & 0x0f)));
      }
    }
    int msum = 0;
    for (int g = 0; g < 16; ++g) msum += (sc[g] >> 4) * xb[b].bsums[g];
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(wb + 80) * xb[b].d), _mm256_cvtepi32_ps(isum), acc);
    mins += h2f(wb + 82) * xb[b].d * static_cast<float>(msum);
  }
  return hsum(acc) - mins;
}

float dot_q3_k(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / 256; ++b, wb += 110) {
    int sc[16];
    int bias = 0;
    for (int g = 0; g < 16; ++g) {
      sc[g] = quant::q3_k_scale(wb + 96, g);
      bias += sc[g] * xb[b].bsums[g];
    }
    const __m256i hm = load256(wb);
    __m256i isum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i v = load256(wb + 32 + 32 * h);
      for (int s = 0; s < 4; ++s) {
        const int g = 8 * h + 2 * s;
        // Unsigned 3-bit quant: low 2 bits | hmask bit << 2; the stored value is this minus 4.
        const __m256i qu = _mm256_or_si256(shr_mask(v, 2 * s, 3), _mm256_slli_epi16(shr_mask(hm, 4 * h + s, 1), 2));
        const __m256i p = _mm256_maddubs_epi16(qu, load256(xb[b].qs + 128 * h + 32 * s));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair(sc[g], sc[g + 1])));
      }
    }
    const float dd = h2f(wb + 108) * xb[b].d;
    acc = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(isum), acc);
    acc = _mm256_sub_ps(acc, _mm256_setr_ps(dd * static_cast<float>(4 * bias), 0, 0, 0, 0, 0, 0, 0));
  }
  return hsum(acc);
}

template <int kBits>
float dot_q45_k(int64_t k, const void* w, const void* xq) {
  constexpr int kBytes = kBits == 4 ? 144 : 176;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.0f;
  for (int64_t b = 0; b < k / 256; ++b, wb += kBytes) {
    int sc[8], mn[8];
    int msum = 0;
    for (int s = 0; s < 8; ++s) {
      quant::k_scale_min(wb + 4, s, &sc[s], &mn[s]);
      msum += mn[s] * (xb[b].bsums[2 * s] + xb[b].bsums[2 * s + 1]);
    }
    const uint8_t* qs = wb + (kBits == 4 ? 16 : 48);
    const __m256i qh = kBits == 5 ? load256(wb + 16) : _mm256_setzero_si256();
    __m256i isum = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i v = load256(qs + 32 * c);
      __m256i lo = _mm256_and_si256(v, low4());
      __m256i hi = shr_mask(v, 4, 0x0f);
      if (kBits == 5) {
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(shr_mask(qh, 2 * c, 1), 4));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(shr_mask(qh, 2 * c + 1, 1), 4));
      }
      const __m256i plo = _mm256_maddubs_epi16(lo, load256(xb[b].qs + 64 * c));
      const __m256i phi = _mm256_maddubs_epi16(hi, load256(xb[b].qs + 64 * c + 32));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(plo, _mm256_set1_epi16(static_cast<short>(sc[2 * c]))));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(phi, _mm256_set1_epi16(static_cast<short>(sc[2 * c + 1]))));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(wb) * xb[b].d), _mm256_cvtepi32_ps(isum), acc);
    mins += h2f(wb + 2) * xb[b].d * static_cast<float>(msum);
  }
  return hsum(acc) - mins;
}

float dot_q6_k(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  __m256 acc = _mm256_setzero_ps();
  float offs = 0.0f;
  for (int64_t b = 0; b < k / 256; ++b, wb += 210) {
    const auto* sc = reinterpret_cast<const int8_t*>(wb + 192);
    int bias = 0;
    for (int g = 0; g < 16; ++g) bias += sc[g] * xb[b].bsums[g];
    __m256i isum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load256(wb + 64 * h), ql1 = load256(wb + 64 * h + 32);
      const __m256i qh = load256(wb + 128 + 32 * h);
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(ql0, low4()), _mm256_slli_epi16(shr_mask(qh, 0, 3), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(ql1, low4()), _mm256_slli_epi16(shr_mask(qh, 2, 3), 4));
      q[2] = _mm256_or_si256(shr_mask(ql0, 4, 0x0f), _mm256_slli_epi16(shr_mask(qh, 4, 3), 4));
      q[3] = _mm256_or_si256(shr_mask(ql1, 4, 0x0f), _mm256_slli_epi16(shr_mask(qh, 6, 3), 4));
      for (int g = 0; g < 4; ++g) {
        const int j = 8 * h + 2 * g;
        const __m256i p = _mm256_maddubs_epi16(q[g], load256(xb[b].qs + 128 * h + 32 * g));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair(sc[j], sc[j + 1])));
      }
    }
    const float dd = h2f(wb + 208) * xb[b].d;
    acc = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(isum), acc);
    offs += dd * static_cast<float>(32 * bias);
  }
  return hsum(acc) - offs;
}

float dot_iq4_xs(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / 256; ++b, wb += 136) {
    __m256i isum = _mm256_setzero_si256();
    for (int s = 0; s < 8; ++s) {
      const __m256i q = iq4_lookup(wb + 8 + 16 * s);
      const __m256i x = load256(xb[b].qs + 32 * s);
      const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, _mm256_set1_epi16(static_cast<short>(quant::iq4_xs_scale(wb, s)))));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(wb) * xb[b].d), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
}

// ---- four activation rows per weight row (prefill): same per-row operations as above ---------

// The four-row form of a 32-element block type of kBytes bytes: decode(wb) gives its 32 quants as
// bytes in element order (signed where kSigned), its f16 scale is at wb, and where kMin its f16 min
// at wb + 2 (taken out with the activation block sums). Per row, exactly the one-row form's ops.
template <int kBytes, bool kSigned, bool kMin, typename Decode>
void dot4_blocks32(int64_t k, const void* w, const void* const* xq, float* out, Decode decode) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const BlockQ8x32* xb[4];
  __m256 acc[4];
  float offs[4];
  for (int r = 0; r < 4; ++r) {
    xb[r] = static_cast<const BlockQ8x32*>(xq[r]);
    acc[r] = _mm256_setzero_ps();
    offs[r] = 0.0f;
  }
  for (int64_t b = 0; b < k / 32; ++b, wb += kBytes) {
    const __m256i q = decode(wb);
    const float dw = h2f(wb);
    const float mw = kMin ? h2f(wb + 2) : 0.0f;
    for (int r = 0; r < 4; ++r) {
      const __m256i x = load256(xb[r][b].qs);
      const __m256i p = kSigned ? dot_s8s8(q, x) : dot_u8s8(q, x);
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xb[r][b].d), _mm256_cvtepi32_ps(p), acc[r]);
      if (kMin) offs[r] += mw * xb[r][b].s;
    }
  }
  for (int r = 0; r < 4; ++r) out[r] = kMin ? hsum(acc[r]) + offs[r] : hsum(acc[r]);
}

void dot4_q4_0(int64_t k, const void* w, const void* const* xq, float* out) {
  dot4_blocks32<18, true, false>(k, w, xq, out,
                                 [](const uint8_t* wb) { return _mm256_sub_epi8(nibbles(wb + 2), _mm256_set1_epi8(8)); });
}

void dot4_q4_1(int64_t k, const void* w, const void* const* xq, float* out) {
  dot4_blocks32<20, false, true>(k, w, xq, out, [](const uint8_t* wb) { return nibbles(wb + 4); });
}

void dot4_q5_0(int64_t k, const void* w, const void* const* xq, float* out) {
  dot4_blocks32<22, true, false>(
      k, w, xq, out, [](const uint8_t* wb) { return _mm256_sub_epi8(five_bits(wb + 2, wb + 6), _mm256_set1_epi8(16)); });
}

void dot4_q5_1(int64_t k, const void* w, const void* const* xq, float* out) {
  dot4_blocks32<24, false, true>(k, w, xq, out, [](const uint8_t* wb) { return five_bits(wb + 4, wb + 8); });
}

void dot4_q8_0(int64_t k, const void* w, const void* const* xq, float* out) {
  dot4_blocks32<34, true, false>(k, w, xq, out, [](const uint8_t* wb) { return load256(wb + 2); });
}

void dot4_q4_k(int64_t k, const void* w, const void* const* xq, float* out) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const BlockQ8xK* xb[4];
  __m256 acc[4];
  float mins[4];
  for (int r = 0; r < 4; ++r) {
    xb[r] = static_cast<const BlockQ8xK*>(xq[r]);
    acc[r] = _mm256_setzero_ps();
    mins[r] = 0.0f;
  }
  for (int64_t b = 0; b < k / 256; ++b, wb += 144) {
    int sc[8], mn[8];
    for (int s = 0; s < 8; ++s) quant::k_scale_min(wb + 4, s, &sc[s], &mn[s]);
    __m256i isum[4];
    for (int r = 0; r < 4; ++r) isum[r] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i v = load256(wb + 16 + 32 * c);
      const __m256i lo = _mm256_and_si256(v, low4());
      const __m256i hi = shr_mask(v, 4, 0x0f);
      const __m256i slo = _mm256_set1_epi16(static_cast<short>(sc[2 * c]));
      const __m256i shi = _mm256_set1_epi16(static_cast<short>(sc[2 * c + 1]));
      for (int r = 0; r < 4; ++r) {
        const __m256i plo = _mm256_maddubs_epi16(lo, load256(xb[r][b].qs + 64 * c));
        const __m256i phi = _mm256_maddubs_epi16(hi, load256(xb[r][b].qs + 64 * c + 32));
        isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(plo, slo));
        isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(phi, shi));
      }
    }
    const float d = h2f(wb), dmin = h2f(wb + 2);
    for (int r = 0; r < 4; ++r) {
      int msum = 0;
      for (int s = 0; s < 8; ++s) msum += mn[s] * (xb[r][b].bsums[2 * s] + xb[r][b].bsums[2 * s + 1]);
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb[r][b].d), _mm256_cvtepi32_ps(isum[r]), acc[r]);
      mins[r] += dmin * xb[r][b].d * static_cast<float>(msum);
    }
  }
  for (int r = 0; r < 4; ++r) out[r] = hsum(acc[r]) - mins[r];
}

void dot4_q6_k(int64_t k, const void* w, const void* const* xq, float* out) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const BlockQ8xK* xb[4];
  __m256 acc[4];
  float offs[4];
  for (int r = 0; r < 4; ++r) {
    xb[r] = static_cast<const BlockQ8xK*>(xq[r]);
    acc[r] = _mm256_setzero_ps();
    offs[r] = 0.0f;
  }
  for (int64_t b = 0; b < k / 256; ++b, wb += 210) {
    const auto* sc = reinterpret_cast<const int8_t*>(wb + 192);
    __m256i isum[4];
    for (int r = 0; r < 4; ++r) isum[r] = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load256(wb + 64 * h), ql1 = load256(wb + 64 * h + 32);
      const __m256i qh = load256(wb + 128 + 32 * h);
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(ql0, low4()), _mm256_slli_epi16(shr_mask(qh, 0, 3), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(ql1, low4()), _mm256_slli_epi16(shr_mask(qh, 2, 3), 4));
      q[2] = _mm256_or_si256(shr_mask(ql0, 4, 0x0f), _mm256_slli_epi16(shr_mask(qh, 4, 3), 4));
      q[3] = _mm256_or_si256(shr_mask(ql1, 4, 0x0f), _mm256_slli_epi16(shr_mask(qh, 6, 3), 4));
      for (int g = 0; g < 4; ++g) {
        const int j = 8 * h + 2 * g;
        const __m256i scale = scale_pair(sc[j], sc[j + 1]);
        for (int r = 0; r < 4; ++r) {
          const __m256i p = _mm256_maddubs_epi16(q[g], load256(xb[r][b].qs + 128 * h + 32 * g));
          isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(p, scale));
        }
      }
    }
    const float dw = h2f(wb + 208);
    for (int r = 0; r < 4; ++r) {
      int bias = 0;
      for (int g = 0; g < 16; ++g) bias += sc[g] * xb[r][b].bsums[g];
      const float dd = dw * xb[r][b].d;
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(isum[r]), acc[r]);
      offs[r] += dd * static_cast<float>(32 * bias);
    }
  }
  for (int r = 0; r < 4; ++r) out[r] = hsum(acc[r]) - offs[r];
}

}  // namespace

QuantVecDot4Fn quant_vec_dot4_avx2(DType wtype) {
  switch (wtype) {
    case DType::kQ4_0: return dot4_q4_0;
    case DType::kQ4_1: return dot4_q4_1;
    case DType::kQ5_0: return dot4_q5_0;
    case DType::kQ5_1: return dot4_q5_1;
    case DType::kQ8_0: return dot4_q8_0;
    case DType::kQ4_K: return dot4_q4_k;
    case DType::kQ6_K: return dot4_q6_k;
    default: return nullptr;
  }
}

QuantVecDotFn quant_vec_dot_avx2(DType wtype) {
  switch (wtype) {
    case DType::kQ4_0: return dot_q4_0;
    case DType::kQ4_1: return dot_q4_1;
    case DType::kQ5_0: return dot_q5_0;
    case DType::kQ5_1: return dot_q5_1;
    case DType::kQ8_0: return dot_q8_0;
    case DType::kIQ4_NL: return dot_iq4_nl;
    case DType::kQ2_K: return dot_q2_k;
    case DType::kQ3_K: return dot_q3_k;
    case DType::kQ4_K: return dot_q45_k<4>;
    case DType::kQ5_K: return dot_q45_k<5>;
    case DType::kQ6_K: return dot_q6_k;
    case DType::kIQ4_XS: return dot_iq4_xs;
    default: return nullptr;
  }
}

}  // namespace eli
