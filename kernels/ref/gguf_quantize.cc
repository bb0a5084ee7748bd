// kernels/ref/gguf_quantize.cc: the GGUF block quantizers (layouts: kernels/ref/dequant_ref.cc).
//
// Scale search (search = true), written for eli from the idea of llama.cpp's make_qx / make_qkx
// quants: each value gets an importance weight w = rms(block) + |x| (large weights matter more, none
// is ignored). For a candidate grid (a trial inverse scale near the max-abs one), every value is
// rounded to its level q;
// with the q's fixed, the weighted least-squares scale (and, for the offset types, the offset) has
// a closed form, and so has its weighted error, by which the candidates are ranked; the best is
// refined twice (re-round at the fitted scale, re-fit). The max-abs (min/max) grid is one of the
// candidates, and its least-squares scale errs no more than the max-abs scale itself.
// Storing: sub-block scales are coded against the super-block scale (6-bit unsigned for Q4_K /
// Q5_K scale and min, int8 for Q6_K), fp16 scales rounded, and only then every value is rounded to
// its nearest level under the stored scales, so the bytes decode to the nearest representable grid
// point for each value that lies inside its block's range. Q2_K / Q3_K (coarse 4 / 6-bit sub-block
// codes, 16 sub-blocks) also search the super-block scale and each sub-block's code by the stored
// block's weighted error (kernels/ref/gguf_quantize_k23.cc). An importance matrix (col_weights)
// multiplies every weight w above.
#include "kernels/ref/gguf_quantize.h"

#include "kernels/ref/gguf_quantize_fit.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "eli/error.h"
#include "runtime/core/float_convert.h"
#include "runtime/core/thread_pool.h"

namespace eli {
namespace gguf_detail {

uint16_t scale_to_f16(float s, DType dtype, int64_t col, float amax) {
  const uint16_t h = f32_to_f16(s);
  ELI_CHECK_ARG(std::isfinite(f16_to_f32(h)), dtype_name(dtype), ": values up to |x| = ", amax, " in the block at column ",
                col, " exceed the type's range (the block scale ", s, " overflows fp16, max 65504)");
  return h;
}

float max_abs(const float* x, int n) {
  float a = 0.0f;
  for (int i = 0; i < n; ++i) a = std::max(a, std::fabs(x[i]));
  return a;
}

// w[i] = rms(x) + |x[i]|, times the importance-matrix column weight qw[i] when qw is given and not
// all zero over these n values (a block no calibration row reached keeps the plain weights).
void importance(const float* x, int n, float* w, const float* qw) {
  double s2 = 0.0;
  for (int i = 0; i < n; ++i) s2 += static_cast<double>(x[i]) * x[i];
  const float rms = static_cast<float>(std::sqrt(s2 / n));
  for (int i = 0; i < n; ++i) w[i] = rms + std::fabs(x[i]);
  if (qw == nullptr) return;
  float total = 0.0f;
  for (int i = 0; i < n; ++i) total += qw[i];
  if (!(total > 0.0f)) return;
  for (int i = 0; i < n; ++i) w[i] *= qw[i];
}

// ---- symmetric fit: x ~ s * q, q in [-nmax, nmax - 1] ------------------------------------------
// The value of largest magnitude goes to the -nmax end (the side with one more level), so s has the
// opposite sign of that value. (Also trying it on the nmax - 1 side lowers the plain MSE on random
// rows by 1-5% but raised SmolLM2's KL / perplexity after requantization: not done.) A candidate is scored by its least-squares error with its levels
// fixed, sum w x^2 - sxl^2 / sl2: maximizing sxl^2 / sl2 minimizes it (re-rounding to the nearest
// levels at the fitted scale, done when storing, can only lower the error further).

namespace {

struct SymFit {
  float s = 0.0f;
  double score = -1.0;  // sxl^2 / sl2 of the best candidate
};

// x normalized to max |x| = 1 (fit_symmetric), n a multiple of 8: the sums run in 8 float lanes.
void sym_candidate(const float* x, const float* w, int n, int nmax, float is, SymFit* best) {
  float sxl[8] = {}, sl2[8] = {};
  const float lo = static_cast<float>(-nmax), hi = static_cast<float>(nmax - 1);
  for (int i = 0; i < n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const float q = round_clamped(is * x[i + k], lo, hi);
      const float wq = w[i + k] * q;
      sxl[k] += wq * x[i + k];
      sl2[k] += wq * q;
    }
  double a = 0.0, b = 0.0;
  for (int k = 0; k < 8; ++k) {
    a += sxl[k];
    b += sl2[k];
  }
  if (b > 0.0 && a * a > best->score * b) {
    best->s = static_cast<float>(a / b);
    best->score = a * a / b;
  }
}

}  // namespace

float fit_symmetric(const float* x, int n, int nmax, bool search, const float* qw) {
  float amax = 0.0f, m = 0.0f;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      m = x[i];
    }
  if (amax == 0.0f) return 0.0f;
  if (!search) return m / static_cast<float>(-nmax);  // max-abs scaling
  // Fit on x / amax (no float overflow for any finite input), scale back at the end.
  float xn[kQK], wn[kQK];
  const float inv = 1.0f / amax;
  for (int i = 0; i < n; ++i) xn[i] = x[i] * inv;
  importance(xn, n, wn, qw);
  const float mn = m * inv;  // +-1
  SymFit best;
  for (int step = -9; step <= 9; ++step)  // step 0: the max-abs grid
    sym_candidate(xn, wn, n, nmax, -(static_cast<float>(nmax) + 0.1f * static_cast<float>(step)) / mn, &best);
  for (int it = 0; it < 2 && best.s != 0.0f; ++it) sym_candidate(xn, wn, n, nmax, 1.0f / best.s, &best);
  return best.s != 0.0f ? best.s * amax : m / static_cast<float>(-nmax);
}

// ---- offset fit: x ~ s * q - mn, q in [0, nmax], s > 0 -----------------------------------------
// mn >= 0 (the lowest level at or below 0, as Q4_K / Q5_K store it) unless free_offset (Q5_1's m).

namespace {

struct AsymFit {
  ScaleMin f{0.0f, 0.0f};
  double err = 0.0;
  bool found = false;
};

// The weighted least-squares (s, b) of x ~ s q + b for the levels x rounds to at inverse scale `is`
// from `lo`, scored by its error in closed form.
// x normalized to max |x| = 1 (fit_asymmetric), n a multiple of 8: the sums run in 8 float lanes.
void asym_candidate(const float* x, const float* w, int n, int nmax, float is, float lo, bool free_offset,
                    AsymFit* best) {
  float l1[8] = {}, l2[8] = {}, lx[8] = {};
  const float top = static_cast<float>(nmax);
  for (int i = 0; i < n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const float q = round_clamped(is * (x[i + k] - lo), 0.0f, top);
      const float wq = w[i + k] * q;
      l1[k] += wq;
      l2[k] += wq * q;
      lx[k] += wq * x[i + k];
    }
  double sw = 0, sl = 0, sl2 = 0, sx = 0, sxl = 0, sx2 = 0;
  for (int k = 0; k < 8; ++k) {
    sl += l1[k];
    sl2 += l2[k];
    sxl += lx[k];
  }
  for (int i = 0; i < n; ++i) {  // (candidate-independent; cheap next to the loop above)
    sw += w[i];
    sx += static_cast<double>(w[i]) * x[i];
    sx2 += static_cast<double>(w[i]) * x[i] * x[i];
  }
  const double det = sw * sl2 - sl * sl;
  if (det <= 0.0) return;
  double s = (sw * sxl - sx * sl) / det;
  double b = (sl2 * sx - sl * sxl) / det;
  if (!free_offset && b > 0.0) {  // the offset may only lower the grid (mn >= 0)
    b = 0.0;
    s = sxl / sl2;
  }
  if (!(s > 0.0)) return;
  const double err = sx2 - 2 * s * sxl - 2 * b * sx + s * s * sl2 + 2 * s * b * sl + b * b * sw;
  if (!best->found || err < best->err) {
    best->f = {static_cast<float>(s), static_cast<float>(-b)};
    best->err = err;
    best->found = true;
  }
}

}  // namespace

ScaleMin fit_asymmetric(const float* x, int n, int nmax, bool search, bool free_offset, const float* qw) {
  float lo = free_offset ? x[0] : 0.0f, hi = x[0];
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (hi <= lo) return {0.0f, -lo};  // every value equals lo
  const ScaleMin minmax{(hi - lo) / static_cast<float>(nmax), -lo};
  if (!search) return minmax;
  // Fit on x / amax (no float overflow for any finite input), scale back at the end.
  const float amax = std::max(std::fabs(lo), std::fabs(hi)), inv = 1.0f / amax;
  float xn[kQK], wn[kQK];
  for (int i = 0; i < n; ++i) xn[i] = x[i] * inv;
  importance(xn, n, wn, qw);
  const float lon = lo * inv, range = (hi - lo) * inv;
  AsymFit best;
  for (int step = 0; step <= 20; ++step)  // step 10: the min/max grid
    asym_candidate(xn, wn, n, nmax, (static_cast<float>(nmax) - 1.0f + 0.1f * static_cast<float>(step)) / range, lon,
                   free_offset, &best);
  for (int it = 0; it < 2 && best.found; ++it)
    asym_candidate(xn, wn, n, nmax, 1.0f / best.f.s, -best.f.mn, free_offset, &best);
  if (!best.found) return minmax;
  return {best.f.s * amax, best.f.mn * amax};
}

}  // namespace gguf_detail

namespace {

using namespace gguf_detail;

// ---- block writers ---------------------------------------------------------------------------

// Q8_0: d = amax / 127 (f32), q = roundf(x / d) through the f32 reciprocal, as ggml's reference.
void block_q8_0(const float* x, uint8_t* b, int64_t col) {
  const float amax = max_abs(x, kQK);
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, scale_to_f16(d, DType::kQ8_0, col, amax));
  for (int j = 0; j < kQK; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::roundf(x[j] * id)));
}

// Q4_0: fp16 d, nibble j = q[j] + 8 (low) and q[j + 16] + 8 (high).
void block_q4_0(const float* x, const float* qw, uint8_t* b, int64_t col, bool search) {
  const float s = fit_symmetric(x, kQK, 8, search, qw);
  const uint16_t h = scale_to_f16(s, DType::kQ4_0, col, max_abs(x, kQK));
  const float d = f16_to_f32(h);
  store_f16(b, h);
  int q[kQK];
  for (int j = 0; j < kQK; ++j) q[j] = d != 0.0f ? nearest_clamped(x[j] / d, -8, 7) + 8 : 8;
  for (int j = 0; j < kQK / 2; ++j) b[2 + j] = static_cast<uint8_t>(q[j] | (q[j + kQK / 2] << 4));
}

// The 5th bits of a 32-element Q5 block: bit j of qh = bit 4 of q[j].
void store_q5_bits(const int* q, uint8_t* qh_out, uint8_t* qs) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 0x0f) | ((q[j + kQK / 2] & 0x0f) << 4));
    qh |= static_cast<uint32_t>(q[j] >> 4) << j;
    qh |= static_cast<uint32_t>(q[j + kQK / 2] >> 4) << (j + kQK / 2);
  }
  for (int k = 0; k < 4; ++k) qh_out[k] = static_cast<uint8_t>(qh >> (8 * k));
}

// Q5_0: fp16 d, u32 qh, nibbles; y = d (q - 16).
void block_q5_0(const float* x, const float* qw, uint8_t* b, int64_t col, bool search) {
  const float s = fit_symmetric(x, kQK, 16, search, qw);
  const uint16_t h = scale_to_f16(s, DType::kQ5_0, col, max_abs(x, kQK));
  const float d = f16_to_f32(h);
  store_f16(b, h);
  int q[kQK];
  for (int j = 0; j < kQK; ++j) q[j] = d != 0.0f ? nearest_clamped(x[j] / d, -16, 15) + 16 : 16;
  store_q5_bits(q, b + 2, b + 6);
}

// Q5_1: fp16 d, fp16 m, u32 qh, nibbles; y = d q + m (m of either sign).
void block_q5_1(const float* x, const float* qw, uint8_t* b, int64_t col, bool search) {
  const ScaleMin f = fit_asymmetric(x, kQK, 31, search, true, qw);
  const float amax = max_abs(x, kQK);
  const uint16_t dh = scale_to_f16(f.s, DType::kQ5_1, col, amax);
  const uint16_t mh = scale_to_f16(-f.mn, DType::kQ5_1, col, amax);
  const float d = f16_to_f32(dh), m = f16_to_f32(mh);
  store_f16(b, dh);
  store_f16(b + 2, mh);
  int q[kQK];
  for (int j = 0; j < kQK; ++j) q[j] = d > 0.0f ? nearest_clamped((x[j] - m) / d, 0, 31) : 0;
  store_q5_bits(q, b + 4, b + 8);
}

// Q4_K (nmax 15) / Q5_K (nmax 31): 8 sub-blocks of 32, each with a 6-bit scale and min code.
void block_q45_k(const float* x, const float* qw, uint8_t* b, int64_t col, bool q5, bool search) {
  const DType dtype = q5 ? DType::kQ5_K : DType::kQ4_K;
  const int nmax = q5 ? 31 : 15;
  ScaleMin fit[8];
  float max_s = 0.0f, max_m = 0.0f;
  for (int j = 0; j < 8; ++j) {
    fit[j] = fit_asymmetric(x + 32 * j, 32, nmax, search, false, qw != nullptr ? qw + 32 * j : nullptr);
    max_s = std::max(max_s, fit[j].s);
    max_m = std::max(max_m, fit[j].mn);
  }
  const float amax = max_abs(x, kQKK);
  const uint16_t dh = scale_to_f16(max_s / 63.0f, dtype, col, amax);
  const uint16_t mh = scale_to_f16(max_m / 63.0f, dtype, col, amax);
  const float d = f16_to_f32(dh), dmin = f16_to_f32(mh);
  int sc[8], mn[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = d > 0.0f ? nearest_clamped(fit[j].s / d, 0, 63) : 0;
    mn[j] = dmin > 0.0f ? nearest_clamped(fit[j].mn / dmin, 0, 63) : 0;
  }
  std::memset(b, 0, static_cast<size_t>(q5 ? 176 : 144));
  store_f16(b, dh);
  store_f16(b + 2, mh);
  uint8_t* s = b + 4;  // 12 packed bytes (see k_scale_min in dequant_ref.cc)
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      s[j] |= static_cast<uint8_t>(sc[j]);
      s[j + 4] |= static_cast<uint8_t>(mn[j]);
    } else {
      s[j + 4] = static_cast<uint8_t>((sc[j] & 0x0f) | ((mn[j] & 0x0f) << 4));
      s[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
      s[j] |= static_cast<uint8_t>((mn[j] >> 4) << 6);
    }
  }
  int q[kQKK];
  for (int j = 0; j < 8; ++j) {
    const float ds = d * static_cast<float>(sc[j]), dm = dmin * static_cast<float>(mn[j]);
    for (int l = 0; l < 32; ++l) q[32 * j + l] = ds > 0.0f ? nearest_clamped((x[32 * j + l] + dm) / ds, 0, nmax) : 0;
  }
  uint8_t* qh = b + 16;
  uint8_t* qs = q5 ? b + 48 : b + 16;
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      const int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
      qs[32 * c + l] = static_cast<uint8_t>((lo & 0x0f) | ((hi & 0x0f) << 4));
      if (q5) qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
    }
}

// Q6_K: 16 sub-blocks of 16 with int8 scales against one fp16 d, 6-bit quants biased by 32.
void block_q6_k(const float* x, const float* qw, uint8_t* b, int64_t col, bool search) {
  float s[16];
  float ms = 0.0f;  // the sub-block scale of largest magnitude, signed
  for (int j = 0; j < 16; ++j) {
    s[j] = fit_symmetric(x + 16 * j, 16, 32, search, qw != nullptr ? qw + 16 * j : nullptr);
    if (std::fabs(s[j]) > std::fabs(ms)) ms = s[j];
  }
  std::memset(b, 0, 210);
  const uint16_t dh = scale_to_f16(ms != 0.0f ? ms / -128.0f : 0.0f, DType::kQ6_K, col, max_abs(x, kQKK));
  const float d = f16_to_f32(dh);
  int8_t* scales = reinterpret_cast<int8_t*>(b + 192);
  int q[kQKK];
  for (int j = 0; j < 16; ++j) {
    const int sc = d != 0.0f ? nearest_clamped(s[j] / d, -128, 127) : 0;
    scales[j] = static_cast<int8_t>(sc);
    const float ds = d * static_cast<float>(sc);
    for (int l = 0; l < 16; ++l) q[16 * j + l] = (ds != 0.0f ? nearest_clamped(x[16 * j + l] / ds, -32, 31) : 0) + 32;
  }
  store_f16(b + 208, dh);
  uint8_t* ql = b;
  uint8_t* qh = b + 128;
  for (int half = 0; half < 2; ++half) {
    const int* qq = q + 128 * half;
    for (int l = 0; l < 32; ++l) {
      const int q1 = qq[l], q2 = qq[l + 32], q3 = qq[l + 64], q4 = qq[l + 96];
      ql[64 * half + l] = static_cast<uint8_t>((q1 & 0x0f) | ((q3 & 0x0f) << 4));
      ql[64 * half + l + 32] = static_cast<uint8_t>((q2 & 0x0f) | ((q4 & 0x0f) << 4));
      qh[32 * half + l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
  }
}

}  // namespace

bool gguf_quantize_supported(DType dtype) {
  return dtype == DType::kQ8_0 || dtype == DType::kQ4_0 || dtype == DType::kQ5_0 || dtype == DType::kQ5_1 ||
         dtype == DType::kQ2_K || dtype == DType::kQ3_K || dtype == DType::kQ4_K || dtype == DType::kQ5_K ||
         dtype == DType::kQ6_K || dtype == DType::kIQ4_NL || dtype == DType::kIQ4_XS;
}

namespace {

void check_supported(DType dtype) {
  ELI_CHECK_ARG(gguf_quantize_supported(dtype), "GGUF quantization to ", dtype_name(dtype),
                " is not supported (supported: q8_0, q4_0, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs)");
}

void check_weights(const float* col_weights, int64_t n) {
  if (col_weights == nullptr) return;
  for (int64_t i = 0; i < n; ++i)
    ELI_CHECK_ARG(std::isfinite(col_weights[i]) && col_weights[i] >= 0.0f, "importance weights: the weight of column ",
                  i, " is ", col_weights[i], "; weights must be finite and >= 0");
}

void quantize_row_checked(DType dtype, const float* x, int64_t n, void* out, bool search, const float* col_weights) {
  const DTypeInfo& info = dtype_info(dtype);
  for (int64_t i = 0; i < n; ++i)
    ELI_CHECK_ARG(std::isfinite(x[i]), dtype_name(dtype), ": the value at column ", i, " is ",
                  std::isnan(x[i]) ? "NaN" : "infinite", "; only finite weights can be quantized");
  auto* o = static_cast<uint8_t*>(out);
  for (int64_t blk = 0; blk < n / info.block_elems; ++blk) {
    const float* xb = x + blk * info.block_elems;
    const float* qw = col_weights != nullptr ? col_weights + blk * info.block_elems : nullptr;
    uint8_t* ob = o + blk * info.block_bytes;
    const int64_t col = blk * info.block_elems;
    switch (dtype) {
      case DType::kQ8_0: block_q8_0(xb, ob, col); break;
      case DType::kQ4_0: block_q4_0(xb, qw, ob, col, search); break;
      case DType::kQ5_0: block_q5_0(xb, qw, ob, col, search); break;
      case DType::kQ5_1: block_q5_1(xb, qw, ob, col, search); break;
      case DType::kQ2_K: block_q2_k(xb, qw, ob, col, search); break;
      case DType::kQ3_K: block_q3_k(xb, qw, ob, col, search); break;
      case DType::kQ4_K: block_q45_k(xb, qw, ob, col, false, search); break;
      case DType::kQ5_K: block_q45_k(xb, qw, ob, col, true, search); break;
      case DType::kQ6_K: block_q6_k(xb, qw, ob, col, search); break;
      case DType::kIQ4_NL: block_iq4_nl(xb, qw, ob, col, search); break;
      case DType::kIQ4_XS: block_iq4_xs(xb, qw, ob, col, search); break;
      default: ELI_THROW(kInternal, "quantize_row_gguf: unhandled dtype ", dtype_name(dtype));
    }
  }
}

}  // namespace

void quantize_row_gguf(DType dtype, const float* x, int64_t n, void* out, bool search, const float* col_weights) {
  check_supported(dtype);
  const DTypeInfo& info = dtype_info(dtype);
  ELI_CHECK_ARG(n >= 0 && n % info.block_elems == 0, dtype_name(dtype), ": row length ", n,
                " is not a multiple of the block size ", info.block_elems);
  check_weights(col_weights, n);
  quantize_row_checked(dtype, x, n, out, search, col_weights);
}

void quantize_matrix_gguf(DType dtype, const float* x, int64_t rows, int64_t cols, void* out, ThreadPool* pool,
                          bool search, const float* col_weights) {
  check_supported(dtype);
  const DTypeInfo& info = dtype_info(dtype);
  ELI_CHECK_ARG(rows >= 0 && cols > 0 && cols % info.block_elems == 0, dtype_name(dtype), ": row length ", cols,
                " is not a positive multiple of the block size ", info.block_elems);
  check_weights(col_weights, cols);
  const int64_t row_bytes = cols / info.block_elems * info.block_bytes;
  auto* o = static_cast<uint8_t*>(out);
  const int64_t grain = std::max<int64_t>(1, 16384 / cols);
  parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      try {
        quantize_row_checked(dtype, x + r * cols, cols, o + r * row_bytes, search, col_weights);
      } catch (const Error& e) {
        throw Error(e.kind(), detail::concat("row ", r, ": ", e.message()), e.location(), e.condition());
      }
    }
  }, grain);
}

}  // namespace eli
