// kernels/cpu/wq_avx2.cc: AVX2 + FMA inner loops of the quantized-weight kernels (wq_isa.h): int4
// and uint8 weights widened to f32 in registers, int8 x int8 through 16-bit madd, e4m3 shifted to
// f16 and widened by F16C. Compiled with -mavx2 -mfma -mf16c (CMake: *_avx2.cc).
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/wq_isa.h"

namespace eli {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

inline __m256 u8x8_to_ps(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)); }

float dot_u4(const uint8_t* q, const float* x, int64_t n_chunks, float zf) {
  const __m256 z = _mm256_set1_ps(zf);
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  const __m128i mask = _mm_set1_epi8(15);
  for (int64_t c = 0; c < n_chunks; ++c) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * c));
    const __m128i lo = _mm_and_si128(b, mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
    const float* xc = x + 32 * c;
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xc), _mm256_sub_ps(u8x8_to_ps(lo), z), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xc + 8), _mm256_sub_ps(u8x8_to_ps(_mm_srli_si128(lo, 8)), z), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(xc + 16), _mm256_sub_ps(u8x8_to_ps(hi), z), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(xc + 24), _mm256_sub_ps(u8x8_to_ps(_mm_srli_si128(hi, 8)), z), a3);
  }
  return hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

float dot_u8(const uint8_t* q, const float* x, int64_t n, float zf) {
  const __m256 z = _mm256_set1_ps(zf);
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + j));
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), _mm256_sub_ps(u8x8_to_ps(b), z), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 8), _mm256_sub_ps(u8x8_to_ps(_mm_srli_si128(b, 8)), z), a1);
  }
  float s = hsum(_mm256_add_ps(a0, a1));
  for (; j < n; ++j) s += x[j] * (static_cast<float>(q[j]) - zf);
  return s;
}

int32_t dot_i8(const int8_t* a, const int8_t* b, int64_t n) {
  __m256i acc = _mm256_setzero_si256();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m256i va = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + j)));
    const __m256i vb = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + j)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(va, vb));
  }
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  int32_t r = _mm_cvtsi128_si32(s);
  for (; j < n; ++j) r += static_cast<int32_t>(a[j]) * b[j];
  return r;
}

// e4m3 -> f16 is a shift: sign to bit 15, exponent and mantissa to bits 13..7 (the f16 exponent
// bias 15 vs e4m3's 7 makes the f16 value 2^-8 of the e4m3 one, subnormals included); F16C widens
// to f32 and the sum is scaled by 2^8 once. NaN codes (never in a loaded weight) are not special.
inline __m256i e4m3_to_f16(__m128i b16) {
  const __m256i v = _mm256_cvtepu8_epi16(b16);
  const __m256i sign = _mm256_slli_epi16(_mm256_and_si256(v, _mm256_set1_epi16(0x80)), 8);
  const __m256i rest = _mm256_slli_epi16(_mm256_and_si256(v, _mm256_set1_epi16(0x7F)), 7);
  return _mm256_or_si256(sign, rest);
}

float dot_fp8(const uint8_t* q, const float* x, int64_t n, const float* table) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m256i h = e4m3_to_f16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + j)));
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), _mm256_cvtph_ps(_mm256_castsi256_si128(h)), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 8), _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), a1);
  }
  float s = hsum(_mm256_add_ps(a0, a1)) * 256.0f;
  for (; j < n; ++j) s += x[j] * table[q[j]];
  return s;
}

}  // namespace

const WqIsa& wq_isa_avx2() {
  static const WqIsa kIsa{"avx2", dot_u4, dot_u8, dot_i8, dot_fp8};
  return kIsa;
}

}  // namespace eli
