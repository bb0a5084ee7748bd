// kernels/ref/gguf_quantize_iq4.cc: the IQ4_NL and IQ4_XS block quantizers (layouts:
// kernels/ref/dequant_ref.cc). Both store 4-bit indices into the fixed non-linear grid kIq4Values
// (-127 ... 113, denser near 0) times a block scale: IQ4_NL one fp16 scale per 32 values, IQ4_XS one
// fp16 super-block scale d per 256 values and a 6-bit code l in [-32, 31] per 32 (scale d * l).
//
// Scale search (search = true), written for eli from the idea of llama.cpp's quantize_row_iq4_nl
// (best_index_int8 over the grid, a least-squares scale per trial): for a block of 32 with importance
// weights w (rms(block) + |x|, times the imatrix column weight, as gguf_quantize.cc), each trial
// inverse scale maps the value of largest magnitude onto the grid near either end (-127 + t or
// 113 + t, t in [-kTry, kTry]: the grid is asymmetric, so both signs of the scale are tried); every
// value is rounded to its nearest level, the weighted least-squares scale for those levels has a
// closed form, and the trial whose fit leaves the lowest weighted error wins; the winner is refined
// twice (re-round at the fitted scale, re-fit). IQ4_XS then codes the 8 sub-block scales against d:
// a few d (the largest sub-block scale onto code -32 and nearby, or onto +31) are tried; for each,
// every sub-block takes the code among nearest / nearest - 1 / nearest + 1 (ties: the nearest) whose
// re-rounded block has the lowest weighted error, and the d with the lowest total error is stored.
// Every value is finally rounded to its nearest level under the stored (fp16-rounded) scales, so
// the bytes decode to the nearest representable point. search = false: plain max-abs scaling (the
// largest |x| onto -127; IQ4_XS: the largest sub-block scale onto code -32), the baseline the tests
// compare the search against.
//
// Invariants: x holds 32 (IQ4_NL) / 256 (IQ4_XS) finite values (checked by the caller), qw null or
// as many weights >= 0; a scale that overflows fp16 is kInvalidArgument naming the column.
#include <cmath>
#include <cstring>

#include "kernels/ref/dequant_ref.h"
#include "kernels/ref/gguf_quantize_fit.h"
#include "runtime/core/float_convert.h"

namespace eli {
namespace gguf_detail {

namespace {

constexpr int kLo = -127, kHi = 113;  // kIq4Values' ends
constexpr int kTry = 8;               // trial offsets (grid units) each side of either end
constexpr int kHalfSteps = 2 * (kHi - kLo) + 1;

// The index of the grid level nearest to every v in [kLo, kHi], by half-unit: the midpoints between
// adjacent levels of kIq4Values are all multiples of 0.5, so floor(2 (v - kLo)) decides it exactly
// (a value exactly at a midpoint goes to the upper level).
struct NearestTable {
  uint8_t idx[kHalfSteps];
  NearestTable() {
    for (int k = 0; k < kHalfSteps; ++k) {
      const float c = static_cast<float>(kLo) + (static_cast<float>(k) + 0.5f) * 0.5f;
      int best = 0;
      for (int i = 1; i < 16; ++i)
        if (std::fabs(c - kIq4Values[i]) < std::fabs(c - kIq4Values[best])) best = i;
      idx[k] = static_cast<uint8_t>(best);
    }
  }
};

const NearestTable& nearest_table() {
  static const NearestTable t;
  return t;
}

// The nearest grid index to v (grid units); v outside the grid clamps to its ends (NaN: the low end).
inline int nearest_index(float v, const NearestTable& t) {
  v = v > static_cast<float>(kHi) ? static_cast<float>(kHi) : (v >= static_cast<float>(kLo) ? v : static_cast<float>(kLo));
  return t.idx[static_cast<int>(2.0f * (v - static_cast<float>(kLo)))];
}

struct Iq4Fit {
  float s = 0.0f;
  double score = -1.0;  // sumqx^2 / sumq2 of the best trial (maximizing it minimizes the error)
};

// Rounds x (n values) at inverse scale `is` and keeps the least-squares scale if it fits better.
void iq4_trial(const float* x, const float* w, int n, float is, const NearestTable& t, Iq4Fit* best) {
  double sqx = 0.0, sq2 = 0.0;
  for (int i = 0; i < n; ++i) {
    const float q = static_cast<float>(kIq4Values[nearest_index(is * x[i], t)]);
    const float wq = w[i] * q;
    sqx += static_cast<double>(wq) * x[i];
    sq2 += static_cast<double>(wq) * q;
  }
  if (sq2 > 0.0 && sqx * sqx > best->score * sq2) {
    best->s = static_cast<float>(sqx / sq2);
    best->score = sqx * sqx / sq2;
  }
}

// The scale s of x ~ s * kIq4Values[idx] for a block of n (<= 32) values; 0 for an all-zero block.
// wn (out, may be null when !search): the importance weights of the normalized block.
float fit_iq4(const float* x, int n, bool search, const float* qw, float* wn_out) {
  float amax = 0.0f, m = 0.0f;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      m = x[i];
    }
  float xn[kQK], wn[kQK];
  const float inv = amax > 0.0f ? 1.0f / amax : 0.0f;
  for (int i = 0; i < n; ++i) xn[i] = x[i] * inv;
  importance(xn, n, wn, qw);
  if (wn_out != nullptr) std::memcpy(wn_out, wn, sizeof(float) * static_cast<size_t>(n));
  if (amax == 0.0f) return 0.0f;
  if (!search) return m / static_cast<float>(kLo);
  const NearestTable& t = nearest_table();
  const float mn = m * inv;  // +-1
  Iq4Fit best;
  for (int end : {kLo, kHi})
    for (int k = -kTry; k <= kTry; ++k) iq4_trial(xn, wn, n, static_cast<float>(end + k) / mn, t, &best);
  for (int it = 0; it < 2 && best.s != 0.0f; ++it) iq4_trial(xn, wn, n, 1.0f / best.s, t, &best);
  return best.s != 0.0f ? best.s * amax : m / static_cast<float>(kLo);
}

// Indices of x under the stored scale d (0 for d == 0: index 8 is the level 1, i.e. the value 0).
void round_iq4(const float* x, int n, float d, uint8_t* idx) {
  const NearestTable& t = nearest_table();
  if (d == 0.0f) {
    std::memset(idx, 8, static_cast<size_t>(n));
    return;
  }
  const float id = 1.0f / d;
  for (int i = 0; i < n; ++i) idx[i] = static_cast<uint8_t>(nearest_index(x[i] * id, t));
}

// The weighted squared error of x stored at scale d (values rounded to their nearest levels).
double iq4_error(const float* x, const float* w, int n, float d) {
  uint8_t idx[kQK];
  round_iq4(x, n, d, idx);
  double e = 0.0;
  for (int i = 0; i < n; ++i) {
    const double r = static_cast<double>(x[i]) - static_cast<double>(d) * kIq4Values[idx[i]];
    e += static_cast<double>(w[i]) * r * r;
  }
  return e;
}

// 32 indices -> 16 bytes: byte j holds idx[j] (low nibble) and idx[j + 16] (high).
void pack_iq4(const uint8_t* idx, uint8_t* qs) {
  for (int j = 0; j < kQK / 2; ++j) qs[j] = static_cast<uint8_t>(idx[j] | (idx[j + kQK / 2] << 4));
}

}  // namespace

// IQ4_NL: fp16 d, 16 bytes of indices.
void block_iq4_nl(const float* x, const float* qw, uint8_t* b, int64_t col, bool search) {
  const float s = fit_iq4(x, kQK, search, qw, nullptr);
  const uint16_t h = scale_to_f16(s, DType::kIQ4_NL, col, max_abs(x, kQK));
  store_f16(b, h);
  uint8_t idx[kQK];
  round_iq4(x, kQK, f16_to_f32(h), idx);
  pack_iq4(idx, b + 2);
}

// IQ4_XS: fp16 d, u16 scales_h (2 high bits of each code + 32), u8 scales_l[4] (low nibbles),
// 8 x 16 bytes of indices.
void block_iq4_xs(const float* x, const float* qw, uint8_t* b, int64_t col, bool search) {
  float s[8], w[kQKK];
  float ms = 0.0f;  // the sub-block scale of largest magnitude, signed
  for (int j = 0; j < 8; ++j) {
    s[j] = fit_iq4(x + 32 * j, 32, search, qw != nullptr ? qw + 32 * j : nullptr, w + 32 * j);
    if (std::fabs(s[j]) > std::fabs(ms)) ms = s[j];
  }
  const float amax = max_abs(x, kQKK);
  // Candidate d: ms onto code -32 (the plain choice) and slightly inside it, or onto +31.
  static constexpr float kCodes[] = {-32.0f, -31.5f, -31.0f, -30.5f, 31.0f, 30.5f};
  const int n_cand = search ? static_cast<int>(sizeof(kCodes) / sizeof(kCodes[0])) : 1;
  uint16_t best_h = 0;
  int best_l[8] = {};
  double best_err = -1.0;
  for (int c = 0; c < n_cand && ms != 0.0f; ++c) {
    const uint16_t h = scale_to_f16(ms / kCodes[c], DType::kIQ4_XS, col, amax);
    const float d = f16_to_f32(h);
    if (d == 0.0f) continue;
    int l[8];
    double err = 0.0;
    for (int j = 0; j < 8; ++j) {
      const int l0 = nearest_clamped(s[j] / d, -32, 31);
      l[j] = l0;
      if (!search) continue;
      // The nearest code first: a neighbour must do strictly better (an all-zero sub-block keeps 0).
      double e0 = iq4_error(x + 32 * j, w + 32 * j, 32, d * static_cast<float>(l0));
      for (int cand : {l0 - 1, l0 + 1}) {
        if (cand < -32 || cand > 31) continue;
        const double e = iq4_error(x + 32 * j, w + 32 * j, 32, d * static_cast<float>(cand));
        if (e < e0) {
          e0 = e;
          l[j] = cand;
        }
      }
      err += e0;
    }
    if (best_err < 0.0 || err < best_err) {
      best_err = err;
      best_h = h;
      std::memcpy(best_l, l, sizeof(l));
    }
  }
  std::memset(b, 0, 136);
  store_f16(b, best_h);
  const float d = f16_to_f32(best_h);
  uint16_t scales_h = 0;
  for (int j = 0; j < 8; ++j) {
    const int code = best_l[j] + 32;  // [0, 63]
    b[4 + j / 2] |= static_cast<uint8_t>((code & 0x0f) << (4 * (j % 2)));
    scales_h |= static_cast<uint16_t>((code >> 4) << (2 * j));
    uint8_t idx[kQK];
    round_iq4(x + 32 * j, 32, d * static_cast<float>(best_l[j]), idx);
    pack_iq4(idx, b + 8 + 16 * j);
  }
  store_f16(b + 2, scales_h);
}

}  // namespace gguf_detail
}  // namespace eli
