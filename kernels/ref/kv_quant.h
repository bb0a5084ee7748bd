// kernels/ref/kv_quant.h: the scalar rules of the quantized KV cache (kv_cache_dtype int8 / fp8),
// shared by the reference, the CPU kernels and (mirrored in device code) the CUDA kernels.
//
// Format: every (slot, kv head) row of hd values of K (and of V) is stored as hd int8 or fp8 e4m3
// bytes plus one f32 scale in a parallel array (runtime/kv/kv_cache.h):
//   scale = amax / qmax  (amax = max |x| over the row; qmax = 127 for int8, 448 for e4m3),
//   q     = round(x * (1 / scale))   (int8: round half to even, clamped to [-127, 127];
//                                     e4m3: OCP e4m3 round to nearest even, saturated to +-448),
//   x'    = q * scale.
// A row of zeros has scale 0 and stores zeros. A row holding a NaN or an infinity gets a
// non-finite scale, so the attention output (and the logits) become non-finite and the engine's
// non-finite check fails the request: quantization never hides a bad value.
// Invariants: pure functions, no allocation; f32_to_e4m3(e4m3_to_f32(b)) == b for every finite b.
#pragma once

#include <cmath>
#include <cstdint>

#include "eli/dtype.h"

namespace eli {

constexpr float kKvInt8Max = 127.0f;
constexpr float kKvFp8Max = 448.0f;  // largest finite e4m3

inline bool kv_dtype_quantized(DType dt) { return dt == DType::kI8 || dt == DType::kF8E4M3; }
inline float kv_qmax(DType dt) { return dt == DType::kI8 ? kKvInt8Max : kKvFp8Max; }

// OCP e4m3 (bias 7, no infinities, 0x7f / 0xff NaN) -> f32, exact.
inline float e4m3_to_f32(uint8_t b) {
  const int e = (b >> 3) & 15, m = b & 7;
  float v;
  if (e == 15 && m == 7) {
    v = NAN;
  } else if (e == 0) {
    v = std::ldexp(static_cast<float>(m), -9);
  } else {
    v = std::ldexp(1.0f + static_cast<float>(m) / 8.0f, e - 7);
  }
  return (b & 0x80) ? -v : v;
}

// f32 -> OCP e4m3, round to nearest even, saturating to +-448 (NaN -> 0x7f with the sign).
inline uint8_t f32_to_e4m3(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const float a = std::fabs(x);
  if (std::isnan(a)) return static_cast<uint8_t>(sign | 0x7f);
  if (a >= kKvFp8Max) return static_cast<uint8_t>(sign | 0x7e);
  if (a < 0.015625f) {  // below the smallest normal 2^-6: subnormals in units of 2^-9
    const int q = static_cast<int>(std::nearbyint(a * 512.0f));  // 0..8; 8 is the smallest normal 0x08
    return static_cast<uint8_t>(sign | q);
  }
  int e = 0;
  const float fr = std::frexp(a, &e);  // a = fr * 2^e, fr in [0.5, 1)
  --e;                                 // a = (2 fr) * 2^e, 2 fr in [1, 2)
  int mq = static_cast<int>(std::nearbyint((2.0f * fr - 1.0f) * 8.0f));
  if (mq == 8) {
    mq = 0;
    ++e;
  }
  const int code = ((e + 7) << 3) | mq;
  return static_cast<uint8_t>(sign | (code > 0x7e ? 0x7e : code));
}

inline int8_t f32_to_kv_int8(float x) {
  float r = std::nearbyint(x);
  r = r > kKvInt8Max ? kKvInt8Max : (r < -kKvInt8Max ? -kKvInt8Max : r);
  return static_cast<int8_t>(r);
}

// Quantizes one row of n values into dst (int8 or e4m3 bytes per dt); returns its scale.
inline float kv_quantize_row(const float* x, int64_t n, DType dt, void* dst) {
  float amax = 0.0f;
  bool bad = false;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    if (!(a <= 3.4e38f)) bad = true;  // NaN or infinity
    amax = a > amax ? a : amax;
  }
  if (bad) amax = NAN;
  const float scale = amax / kv_qmax(dt);
  const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
  if (dt == DType::kI8) {
    int8_t* q = static_cast<int8_t*>(dst);
    for (int64_t i = 0; i < n; ++i) q[i] = f32_to_kv_int8(x[i] * inv);
  } else {
    uint8_t* q = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n; ++i) q[i] = f32_to_e4m3(x[i] * inv);
  }
  return scale;
}

// Element i of a quantized row, unscaled (the caller multiplies by the row's scale).
inline float kv_load_unscaled(const void* row, DType dt, int64_t i) {
  return dt == DType::kI8 ? static_cast<float>(static_cast<const int8_t*>(row)[i])
                          : e4m3_to_f32(static_cast<const uint8_t*>(row)[i]);
}

}  // namespace eli
