// kernels/ref/gguf_quantize_fit.h: internal to the GGUF block quantizers (gguf_quantize.cc,
// gguf_quantize_k23.cc, gguf_quantize_iq4.cc): the shared rounding helpers and the weighted least-squares scale fits.
//
// Invariants: x holds n finite values, n <= 32 and a multiple of 8; qw is null or n importance
// weights >= 0 (all zero: ignored); fits return the scale (and offset) in x's units; not a public API.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "eli/dtype.h"

namespace eli {
namespace gguf_detail {

constexpr int kQK = 32;   // elements per Q8_0 / Q4_0 block
constexpr int kQKK = 256; // elements per K-type super-block

// Nearest integer of v after clamping it to [lo, hi] (no overflow for huge v; NaN gives lo).
inline int nearest_clamped(float v, int lo, int hi) {
  v = v > static_cast<float>(hi) ? static_cast<float>(hi) : (v >= static_cast<float>(lo) ? v : static_cast<float>(lo));
  return static_cast<int>(std::lrintf(v));
}

// round(min(max(v, lo), hi)) to nearest even, as a float: branch-free (adding and subtracting
// 1.5 * 2^23 rounds any |v| < 2^22), so the candidate loops below vectorize.
inline float round_clamped(float v, float lo, float hi) {
  constexpr float kMagic = 12582912.0f;
  v = std::min(std::max(v, lo), hi);
  return (v + kMagic) - kMagic;
}

inline void store_f16(uint8_t* p, uint16_t h) {
  p[0] = static_cast<uint8_t>(h & 0xff);
  p[1] = static_cast<uint8_t>(h >> 8);
}


// x ~ s * q - mn, q in [0, nmax] (s > 0; mn >= 0 unless free_offset).
struct ScaleMin {
  float s, mn;
};

// The fp16 code of a block scale; kInvalidArgument when it overflows fp16 (values too large).
uint16_t scale_to_f16(float s, DType dtype, int64_t col, float amax);
float max_abs(const float* x, int n);
// w[i] = rms(x) + |x[i]|, times qw[i] when qw is given and not all zero.
void importance(const float* x, int n, float* w, const float* qw = nullptr);
// The scale s of x ~ s * q, q in [-nmax, nmax - 1] (search = false: max-abs scaling).
float fit_symmetric(const float* x, int n, int nmax, bool search, const float* qw = nullptr);
// The scale and offset of x ~ s * q - mn, q in [0, nmax] (search = false: min/max scaling).
ScaleMin fit_asymmetric(const float* x, int n, int nmax, bool search, bool free_offset, const float* qw = nullptr);

// The Q2_K / Q3_K super-block writers (gguf_quantize_k23.cc): 256 values of x to b; qw null or 256.
void block_q2_k(const float* x, const float* qw, uint8_t* b, int64_t col, bool search);
void block_q3_k(const float* x, const float* qw, uint8_t* b, int64_t col, bool search);
// The IQ4_NL (32 values) / IQ4_XS (256 values) block writers (gguf_quantize_iq4.cc); qw null or as many.
void block_iq4_nl(const float* x, const float* qw, uint8_t* b, int64_t col, bool search);
void block_iq4_xs(const float* x, const float* qw, uint8_t* b, int64_t col, bool search);

}  // namespace gguf_detail
}  // namespace eli
