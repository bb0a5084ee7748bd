// kernels/ref/gguf_quantize_k23.cc: the Q3_K and Q2_K block writers of the GGUF quantizer
// (kernels/ref/gguf_quantize.h; layouts as kernels/ref/dequant_ref.cc decodes them): 16 sub-blocks
// of 16, Q3_K with 6-bit signed scale codes against one fp16 d (levels -4..3), Q2_K with 4-bit scale
// and 4-bit min codes against fp16 d and dmin (levels 0..3).
// Sub-block scales (and Q2_K's mins) come from the fits of gguf_quantize.cc; their codes against
// the super-block scale(s) are coarse (Q2_K: 4 bits), so with search the super-block scale is chosen among a few
// candidates around the max-abs one (each fp16-rounded as stored) and each sub-block's code among
// its rounded code and the two beside it, all scored by the block's weighted squared error with
// every value rounded to its nearest level under the stored scales (what the bytes decode to).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/ref/gguf_quantize_fit.h"
#include "runtime/core/float_convert.h"

namespace eli {
namespace gguf_detail {
namespace {

// The weights the stored-block candidates are scored by: per sub-block of 16 as importance().
void block_weights16(const float* x, const float* qw, float* w) {
  for (int j = 0; j < 16; ++j) importance(x + 16 * j, 16, w + 16 * j, qw != nullptr ? qw + 16 * j : nullptr);
}

// One Q3_K sub-block under scale code `sc`: nearest levels q in [-4, 3], weighted error.
double q3_sub_error(const float* x, const float* w, float d, int sc, int* q) {
  const float ds = d * static_cast<float>(sc);
  double err = 0.0;
  for (int l = 0; l < 16; ++l) {
    q[l] = ds != 0.0f ? nearest_clamped(x[l] / ds, -4, 3) : 0;
    const float e = x[l] - ds * static_cast<float>(q[l]);
    err += static_cast<double>(w[l]) * e * e;
  }
  return err;
}

// The block under super-block scale d: scale codes in [-32, 31] and levels; returns the error.
double q3_block(const float* x, const float* w, const float* s, float d, bool search, int* sc, int* q) {
  double total = 0.0;
  for (int j = 0; j < 16; ++j) {
    const int c0 = d != 0.0f ? nearest_clamped(s[j] / d, -32, 31) : 0;
    int qt[16];
    double best = q3_sub_error(x + 16 * j, w + 16 * j, d, c0, q + 16 * j);
    sc[j] = c0;
    for (int c = std::max(-32, c0 - 1); search && d != 0.0f && c <= std::min(31, c0 + 1); ++c) {
      if (c == c0) continue;
      const double e = q3_sub_error(x + 16 * j, w + 16 * j, d, c, qt);
      if (e < best) {
        best = e;
        sc[j] = c;
        std::copy(qt, qt + 16, q + 16 * j);
      }
    }
    total += best;
  }
  return total;
}

// Q3_K: hmask[32], qs[64], scales[12] (6-bit codes biased by 32), fp16 d; y = d * sc * q.
}  // namespace

void block_q3_k(const float* x, const float* qw, uint8_t* b, int64_t col, bool search) {
  float s[16];
  float ms = 0.0f;  // the sub-block scale of largest magnitude, signed
  for (int j = 0; j < 16; ++j) {
    s[j] = fit_symmetric(x + 16 * j, 16, 4, search, qw != nullptr ? qw + 16 * j : nullptr);
    if (std::fabs(s[j]) > std::fabs(ms)) ms = s[j];
  }
  const uint16_t dh0 = scale_to_f16(ms != 0.0f ? ms / -32.0f : 0.0f, DType::kQ3_K, col, max_abs(x, kQKK));
  float w[kQKK];
  block_weights16(x, qw, w);
  int sc[16], q[kQKK], sc_t[16], q_t[kQKK];
  uint16_t dh = dh0;
  double best = q3_block(x, w, s, f16_to_f32(dh0), search, sc, q);
  for (int k = -8; search && ms != 0.0f && k <= 8; ++k) {  // divisors 30 .. 34 (k = 0: the max-abs one)
    if (k == 0) continue;
    const uint16_t h = f32_to_f16(ms / -(32.0f + 0.25f * static_cast<float>(k)));
    if (!std::isfinite(f16_to_f32(h)) || h == dh0) continue;
    const double e = q3_block(x, w, s, f16_to_f32(h), true, sc_t, q_t);
    if (e < best) {
      best = e;
      dh = h;
      std::copy(sc_t, sc_t + 16, sc);
      std::copy(q_t, q_t + kQKK, q);
    }
  }
  std::memset(b, 0, 110);
  uint8_t* hmask = b;
  uint8_t* qs = b + 32;
  uint8_t* scales = b + 96;
  for (int j = 0; j < 16; ++j) {
    const int c = sc[j] + 32;  // 0 .. 63
    scales[j % 8] |= static_cast<uint8_t>((c & 0x0f) << (j < 8 ? 0 : 4));
    scales[8 + j % 4] |= static_cast<uint8_t>((c >> 4) << (2 * (j / 4)));
  }
  for (int e = 0; e < kQKK; ++e) {
    const int u = q[e] + 4;  // 0 .. 7: low 2 bits in qs, bit 2 in hmask
    const int h = e / 128, sh = (e / 32) % 4, l = e % 32;
    qs[32 * h + l] |= static_cast<uint8_t>((u & 3) << (2 * sh));
    if (u & 4) hmask[l] |= static_cast<uint8_t>(1u << (e / 32));
  }
  store_f16(b + 108, dh);
}

namespace {

// One Q2_K sub-block under codes (cs, cm): nearest levels q in [0, 3], weighted error.
double q2_sub_error(const float* x, const float* w, float d, float dmin, int cs, int cm, int* q) {
  const float ds = d * static_cast<float>(cs), dm = dmin * static_cast<float>(cm);
  double err = 0.0;
  for (int l = 0; l < 16; ++l) {
    q[l] = ds > 0.0f ? nearest_clamped((x[l] + dm) / ds, 0, 3) : 0;
    const float e = x[l] - (ds * static_cast<float>(q[l]) - dm);
    err += static_cast<double>(w[l]) * e * e;
  }
  return err;
}

// The block under super-block scales (d, dmin): 4-bit scale and min codes and levels; the error.
double q2_block(const float* x, const float* w, const ScaleMin* fit, float d, float dmin, bool search, int* sc,
                int* mn, int* q) {
  double total = 0.0;
  for (int j = 0; j < 16; ++j) {
    const int s0 = d > 0.0f ? nearest_clamped(fit[j].s / d, 0, 15) : 0;
    const int m0 = dmin > 0.0f ? nearest_clamped(fit[j].mn / dmin, 0, 15) : 0;
    double best = q2_sub_error(x + 16 * j, w + 16 * j, d, dmin, s0, m0, q + 16 * j);
    sc[j] = s0;
    mn[j] = m0;
    if (!search) {
      total += best;
      continue;
    }
    int qt[16];
    for (int cs = std::max(0, s0 - 1); cs <= std::min(15, s0 + 1); ++cs)
      for (int cm = std::max(0, m0 - 1); cm <= std::min(15, m0 + 1); ++cm) {
        if ((cs == s0 && cm == m0) || (cs > 0 && d <= 0.0f) || (cm > 0 && dmin <= 0.0f)) continue;
        const double e = q2_sub_error(x + 16 * j, w + 16 * j, d, dmin, cs, cm, qt);
        if (e < best) {
          best = e;
          sc[j] = cs;
          mn[j] = cm;
          std::copy(qt, qt + 16, q + 16 * j);
        }
      }
    total += best;
  }
  return total;
}

}  // namespace

// Q2_K: scales[16] (low nibble scale code, high nibble min code), qs[64], fp16 d, fp16 dmin;
// y = d * sc * q - dmin * mn.
void block_q2_k(const float* x, const float* qw, uint8_t* b, int64_t col, bool search) {
  ScaleMin fit[16];
  float max_s = 0.0f, max_m = 0.0f;
  for (int j = 0; j < 16; ++j) {
    fit[j] = fit_asymmetric(x + 16 * j, 16, 3, search, false, qw != nullptr ? qw + 16 * j : nullptr);
    max_s = std::max(max_s, fit[j].s);
    max_m = std::max(max_m, fit[j].mn);
  }
  const float amax = max_abs(x, kQKK);
  uint16_t dh = scale_to_f16(max_s / 15.0f, DType::kQ2_K, col, amax);
  uint16_t mh = scale_to_f16(max_m / 15.0f, DType::kQ2_K, col, amax);
  float w[kQKK];
  block_weights16(x, qw, w);
  int sc[16], mn[16], q[kQKK], sc_t[16], mn_t[16], q_t[kQKK];
  double best = q2_block(x, w, fit, f16_to_f32(dh), f16_to_f32(mh), search, sc, mn, q);
  // Coordinate search: the scale's divisor (13 .. 17; 15 is the max-abs one), then the min's.
  for (int pass = 0; search && pass < 2; ++pass) {
    const float top = pass == 0 ? max_s : max_m;
    if (!(top > 0.0f)) continue;
    const uint16_t h0 = pass == 0 ? dh : mh;
    for (int k = -8; k <= 8; ++k) {
      const uint16_t h = f32_to_f16(top / (15.0f + 0.25f * static_cast<float>(k)));
      if (!std::isfinite(f16_to_f32(h)) || h == h0) continue;
      const float d = pass == 0 ? f16_to_f32(h) : f16_to_f32(dh), dmin = pass == 0 ? f16_to_f32(mh) : f16_to_f32(h);
      const double e = q2_block(x, w, fit, d, dmin, true, sc_t, mn_t, q_t);
      if (e < best) {
        best = e;
        (pass == 0 ? dh : mh) = h;
        std::copy(sc_t, sc_t + 16, sc);
        std::copy(mn_t, mn_t + 16, mn);
        std::copy(q_t, q_t + kQKK, q);
      }
    }
  }
  std::memset(b, 0, 84);
  for (int j = 0; j < 16; ++j) b[j] = static_cast<uint8_t>(sc[j] | (mn[j] << 4));
  uint8_t* qs = b + 16;
  for (int e = 0; e < kQKK; ++e) qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>(q[e] << (2 * ((e / 32) % 4)));
  store_f16(b + 80, dh);
  store_f16(b + 82, mh);
}

}  // namespace gguf_detail
}  // namespace eli
