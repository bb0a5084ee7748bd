// kernels/cpu/quant_blocks.h: scale decoding of the GGUF K-type blocks, shared by the generic and
// the AVX2 dot products (layouts: kernels/ref/dequant_ref.cc).
//
// Invariants: integer-only, `static inline` (internal linkage: a copy compiled with AVX2 flags is
// never picked by the linker for a generic caller).
#pragma once

#include <cstdint>

namespace eli {
namespace quant {

// Q4_K / Q5_K: the j-th (scale, min) pair of 6 bits each from the 12 packed bytes.
static inline void k_scale_min(const uint8_t* s, int j, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q3_K: the j-th of 16 signed 6-bit scales (stored biased by 32).
static inline int q3_k_scale(const uint8_t* s, int j) {
  const int lo = j < 8 ? (s[j] & 0x0f) : (s[j - 8] >> 4);
  const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}

// IQ4_XS: the j-th of 8 signed 6-bit scales.
static inline int iq4_xs_scale(const uint8_t* b, int j) {
  const unsigned scales_h = static_cast<unsigned>(b[2] | (b[3] << 8));
  const int lo = (b[4 + j / 2] >> (4 * (j % 2))) & 0x0f;
  const int hi = (scales_h >> (2 * j)) & 3;
  return (lo | (hi << 4)) - 32;
}

static inline uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
static inline uint32_t load_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

}  // namespace quant
}  // namespace eli
