// kernels/ref/fp8.h: OCP FP8 e4m3 ("e4m3fn": finite, max 448, 0x7F / 0xFF are NaN) <-> f32, as
// CUDA's __nv_fp8_e4m3 and torch.float8_e4m3fn convert: round to nearest, ties to even, saturating
// to +-448 (NaN stays NaN).
//
// Invariants: fp8_e4m3_to_f32 is exact (a 256-entry table); f32_to_fp8_e4m3(fp8_e4m3_to_f32(b)) == b
// for every finite code b except -0 -> 0x80 (kept) .
#pragma once

#include <cmath>
#include <cstdint>

namespace eli {

// The 256 decoded values (index = code).
inline const float* fp8_e4m3_table() {
  static const struct Table {
    float v[256];
    Table() {
      for (int b = 0; b < 256; ++b) {
        const int e = (b >> 3) & 15, m = b & 7;
        float x = e == 0 ? std::ldexp(static_cast<float>(m), -9) : std::ldexp(1.0f + m / 8.0f, e - 7);
        if ((b & 0x7F) == 0x7F) x = NAN;
        v[b] = (b & 0x80) ? -x : x;
      }
    }
  } kTable;
  return kTable.v;
}

inline float fp8_e4m3_to_f32(uint8_t b) { return fp8_e4m3_table()[b]; }

inline uint8_t f32_to_fp8_e4m3(float x) {
  if (std::isnan(x)) return 0x7F;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const float a = std::fabs(x);
  const float* t = fp8_e4m3_table();
  if (a >= 448.0f) return sign | 0x7E;
  // Positive codes 0x00..0x7E are increasing in value: binary search for the last code <= a.
  int lo = 0, hi = 0x7E;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (t[mid] <= a) lo = mid; else hi = mid - 1;
  }
  if (t[lo] == a || lo == 0x7E) return sign | static_cast<uint8_t>(lo);
  const float below = a - t[lo], above = t[lo + 1] - a;
  int code = lo;
  if (above < below || (above == below && (lo & 1))) code = lo + 1;  // tie: the even code
  return sign | static_cast<uint8_t>(code);
}

}  // namespace eli
