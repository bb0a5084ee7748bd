// kernels/cuda/wq_w8a8_numerics.cuh: the scalar numerics the W8A8 CUDA kernels share, as
// __host__ __device__ functions so the CPU tests (tests/cpp/test_w8a8_host.cc) check them against
// kernels/ref (fp8.h, wq_ref.cc) in every build:
//   - the per-token scale and int8 code of a value (round half to even, clamp to [-127, 127]),
//   - f32 -> e4m3 (round to nearest even, saturating to +-448, NaN -> 0x7F), bit-exact with
//     f32_to_fp8_e4m3, and e4m3 -> f32,
//   - e4m3 pairs widened to f16 pairs by bit moves (value * 2^-8, exact for every finite code),
//     the operands of the f16 tensor-core fallback and of the FP8 GEMV.
// Divisions are correctly rounded on both sides (__fdiv_rn on the device) so codes match the CPU.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define ELI_W8A8_HD __host__ __device__ __forceinline__
#else
#include <cmath>
#define ELI_W8A8_HD inline
#endif

namespace eli {
namespace w8a8 {

ELI_W8A8_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

ELI_W8A8_HD float round_even(float v) {
#if defined(__CUDA_ARCH__)
  return rintf(v);
#else
  return std::nearbyint(v);
#endif
}

// The row's scale: static_scale when > 0, else amax / qmax, 1 for an all-zero row.
ELI_W8A8_HD float row_scale(float amax, float qmax, float static_scale) {
  return static_scale > 0.0f ? static_scale : amax > 0.0f ? div_rn(amax, qmax) : 1.0f;
}

ELI_W8A8_HD int8_t quant_int8(float x, float s) {
  const float v = round_even(div_rn(x, s));
  const float c = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
  return static_cast<int8_t>(c);
}

ELI_W8A8_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  return u;
#endif
}

ELI_W8A8_HD float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
#endif
}

// f32 -> e4m3 code, round to nearest even, saturating (|x| >= 448 -> +-448), NaN -> 0x7F.
ELI_W8A8_HD uint8_t f32_to_e4m3(float x) {
  const uint32_t u = f32_bits(x);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return 0x7F;                  // NaN
  if (a >= 0x43E00000u) return sign | 0x7E;          // >= 448 (and inf): saturate
  const int e = static_cast<int>(a >> 23) - 127;     // unbiased exponent of |x|
  if (e < -6) {
    // Subnormal e4m3 (or zero): multiples of 2^-9. |x| * 2^9 rounded to even, in [0, 8]
    // (8 = the smallest normal, code 0x08, which the encoding below yields too).
    const float q = round_even(bits_f32(a) * 512.0f);
    return sign | static_cast<uint8_t>(q);
  }
  // Normal: keep 3 mantissa bits, round half to even on the 20 dropped bits.
  const uint32_t mant = a & 0x7FFFFFu;
  uint32_t code = (static_cast<uint32_t>(e + 7) << 3) | (mant >> 20);
  const uint32_t rest = mant & 0xFFFFFu;
  if (rest > 0x80000u || (rest == 0x80000u && (code & 1u))) ++code;  // may carry into the exponent
  if (code > 0x7Eu) code = 0x7Eu;  // rounding up past 448 saturates
  return sign | static_cast<uint8_t>(code);
}

// e4m3 code -> f32 (0x7F / 0xFF, NaN in e4m3, are not expected: loaders reject them).
ELI_W8A8_HD float e4m3_to_f32(uint8_t b) {
  const uint32_t e = (b >> 3) & 15u, m = b & 7u;
  float v = e == 0 ? static_cast<float>(m) * (1.0f / 512.0f)
                   : bits_f32(((e + 120u) << 23) | (m << 20));  // 2^(e-7) * (1 + m/8)
  return (b & 0x80) ? -v : v;
}

// Two e4m3 codes (bytes `lo` in bits 0..7 and `hi` in bits 16..23 of t, other bits clear) -> the
// bits of two f16 holding value * 2^-8 each (exact: e4m3's exponent and mantissa fit f16's).
ELI_W8A8_HD uint32_t e4m3x2_spread_to_f16x2(uint32_t t) {
  return ((t & 0x00800080u) << 8) | ((t & 0x007F007Fu) << 7);
}

// Bytes 0, 1 (hi = false) or 2, 3 (hi = true) of a 32-bit word of e4m3 codes -> f16 pair bits
// (low half from the lower byte), each value * 2^-8.
ELI_W8A8_HD uint32_t e4m3x4_to_f16x2(uint32_t w, bool hi) {
  const uint32_t t = hi ? (((w >> 16) & 0xFFu) | ((w >> 8) & 0x00FF0000u)) : ((w & 0xFFu) | ((w << 8) & 0x00FF0000u));
  return e4m3x2_spread_to_f16x2(t);
}

// The factor that undoes the 2^-8 of both operands of an f16-widened product.
constexpr float kF16WidenUnscale = 65536.0f;

}  // namespace w8a8
}  // namespace eli
