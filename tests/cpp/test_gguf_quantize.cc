// tests/cpp/test_gguf_quantize.cc: the GGUF block quantizers (kernels/ref/gguf_quantize.h), checked
// through eli's reference dequantization (kernels/ref/dequant_ref.h).
//   NearestLevel: on odd numbers of rows and super-blocks (threaded), every value of Q4_0 / Q5_0 /
//     Q5_1 / Q2_K / Q3_K / Q4_K / Q5_K / Q6_K (IQ4_NL / IQ4_XS: see IQ4 below) decodes
//     to the representable level of its sub-block nearest to it under the scales stored in the bytes
//     (a bound derived from the format alone: |err| <= step / 2 inside the block's range, the nearest
//     end outside it); Q8_0 (rounded with the f32 d = amax / 127, as specified) errs by at most d / 2
//     plus 127 times the fp16 rounding of d.
//   IQ4 (IQ4_NL / IQ4_XS, non-linear grid kIq4Values): every value decodes to the grid point nearest
//     to it under the stored block (sub-block) scale; IQ4_XS's shared super-block scale costs little.
//   SearchBeatsMaxAbs: the scale search's mean squared error is below plain max-abs scaling's.
//   Imatrix: column weights lower the weighted error they define (every searched type); all-ones
//     weights change nothing; zero / negative / NaN weights are handled or refused.
//   Edge cases: zero, constant, tiny and large rows; NaN / infinities / fp16-overflowing scales,
//     bad row lengths and unsupported types refused with kInvalidArgument naming the place.
// The Python test tests/python/test_gguf_requant.py compares with gguf-py's quantizer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "eli/error.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/ref/dequant_ref.h"
#include "kernels/ref/gguf_quantize.h"
#include "runtime/core/float_convert.h"
#include "runtime/core/thread_pool.h"

namespace eli {
namespace {

const DType kTypes[] = {DType::kQ8_0, DType::kQ4_0, DType::kQ5_0, DType::kQ5_1, DType::kQ2_K, DType::kQ3_K,
                        DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS};
const DType kSearched[] = {DType::kQ4_0, DType::kQ5_0, DType::kQ5_1, DType::kQ2_K, DType::kQ3_K,
                           DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS};

bool is_iq4(DType t) { return t == DType::kIQ4_NL || t == DType::kIQ4_XS; }

float f16_at(const uint8_t* p) { return f16_to_f32(quant::load_u16(p)); }

int64_t row_bytes(DType t, int64_t cols) { return cols / dtype_info(t).block_elems * dtype_info(t).block_bytes; }

std::vector<uint8_t> quantize(DType t, const std::vector<float>& x, int64_t rows, int64_t cols, bool search = true,
                              ThreadPool* pool = nullptr, const float* col_weights = nullptr) {
  std::vector<uint8_t> q(static_cast<size_t>(rows * row_bytes(t, cols)));
  quantize_matrix_gguf(t, x.data(), rows, cols, q.data(), pool, search, col_weights);
  return q;
}

std::vector<float> dequantize(DType t, const std::vector<uint8_t>& q, int64_t rows, int64_t cols) {
  std::vector<float> y(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) dequant_row_ref(t, q.data() + r * row_bytes(t, cols), y.data() + r * cols, cols);
  return y;
}

// The stored grid of the sub-block holding element e of a block: value(q) = scale * q - offset for
// integer q in [qmin, qmax], computed as the dequantizer does.
struct Grid {
  float scale, offset;
  int qmin, qmax;
};

Grid grid_of(DType t, const uint8_t* b, int e) {
  switch (t) {
    case DType::kQ8_0: return {f16_at(b), 0.0f, -128, 127};
    case DType::kQ4_0: return {f16_at(b), 0.0f, -8, 7};
    case DType::kQ5_0: return {f16_at(b), 0.0f, -16, 15};
    case DType::kQ5_1: return {f16_at(b), -f16_at(b + 2), 0, 31};
    case DType::kQ4_K:
    case DType::kQ5_K: {
      int sc, mn;
      quant::k_scale_min(b + 4, e / 32, &sc, &mn);
      return {f16_at(b) * static_cast<float>(sc), f16_at(b + 2) * static_cast<float>(mn), 0,
              t == DType::kQ4_K ? 15 : 31};
    }
    case DType::kQ6_K:
      return {f16_at(b + 208) * static_cast<float>(static_cast<int8_t>(b[192 + e / 16])), 0.0f, -32, 31};
    case DType::kQ2_K: {
      const uint8_t sm = b[e / 16];
      return {f16_at(b + 80) * static_cast<float>(sm & 0x0f), f16_at(b + 82) * static_cast<float>(sm >> 4), 0, 3};
    }
    case DType::kQ3_K: {  // 6-bit code j: low nibble in byte j % 8 (j >= 8: high half), top 2 bits in 8 + j % 4
      const int j = e / 16;
      const int lo = (b[96 + j % 8] >> (j < 8 ? 0 : 4)) & 0x0f, hi = (b[96 + 8 + j % 4] >> (2 * (j / 4))) & 3;
      return {f16_at(b + 108) * static_cast<float>((lo | (hi << 4)) - 32), 0.0f, -4, 3};
    }
    default: ADD_FAILURE() << "no grid for " << dtype_name(t); return {0, 0, 0, 0};
  }
}

void random_rows(std::mt19937& rng, int64_t rows, int64_t cols, std::vector<float>* x) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  x->resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = std::pow(10.0f, static_cast<float>(r % 5) - 2.0f);  // 0.01 .. 100
    const float shift = (r % 3 == 1) ? 0.5f * scale : 0.0f;                 // some rows off-centre
    for (int64_t c = 0; c < cols; ++c) {
      float v = g(rng) * scale + shift;
      if (u(rng) < 0.01f) v *= 8.0f;  // outliers
      (*x)[static_cast<size_t>(r * cols + c)] = v;
    }
  }
}

TEST(GgufQuantize, EveryValueDecodesToItsNearestStoredLevel) {
  std::mt19937 rng(7);
  ThreadPool pool(3);
  for (DType t : kTypes) {
    if (is_iq4(t)) continue;  // a non-linear grid: IQ4EveryValueDecodesToItsNearestGridPoint
    SCOPED_TRACE(dtype_name(t));
    const int64_t be = dtype_info(t).block_elems, bb = dtype_info(t).block_bytes;
    const int64_t rows = 7, cols = be == 32 ? 32 * 11 : 256 * 3;  // odd numbers of blocks
    std::vector<float> x;
    random_rows(rng, rows, cols, &x);
    const std::vector<uint8_t> q = quantize(t, x, rows, cols, true, &pool);
    const std::vector<float> y = dequantize(t, q, rows, cols);
    int bad = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols && bad < 5; ++c) {
        const uint8_t* b = q.data() + r * row_bytes(t, cols) + c / be * bb;
        const Grid g = grid_of(t, b, static_cast<int>(c % be));
        const float xv = x[r * cols + c], yv = y[r * cols + c];
        float best = std::numeric_limits<float>::infinity();
        for (int l = g.qmin; l <= g.qmax; ++l) best = std::min(best, std::fabs(xv - (g.scale * static_cast<float>(l) - g.offset)));
        const float err = std::fabs(xv - yv);
        // Float rounding of (x + offset) / scale can flip a near-tie: allow 1e-5 of the step. Q8_0
        // rounds with the f32 d (as llama.cpp specifies), not the stored fp16 one: its own bound below.
        if (t != DType::kQ8_0 && err > best + 1e-5f * std::fabs(g.scale) + 1e-6f * std::fabs(xv)) {
          ++bad;
          ADD_FAILURE() << "row " << r << " col " << c << ": x " << xv << " decodes to " << yv << " (err " << err
                        << "), nearest level is " << best << " away (step " << g.scale << ")";
        }
        if (t == DType::kQ8_0 && c % 32 == 0) {  // Q8_0: |err| <= d/2 + 127 |d - fp16(d)| over the block
          float amax = 0.0f;
          for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[r * cols + c + j]));
          const float d = amax / 127.0f, d16 = f16_at(b);
          const float bound = 0.5f * d + 127.0f * std::fabs(d - d16) + 1e-6f * amax;
          for (int j = 0; j < 32; ++j)
            EXPECT_LE(std::fabs(x[r * cols + c + j] - y[r * cols + c + j]), bound) << "row " << r << " col " << c + j;
        }
      }
  }
}

double mse(const std::vector<float>& a, const std::vector<float>& b);

// IQ4_NL / IQ4_XS: the scale of the 32 values holding element e (IQ4_XS: d times its sub-block code);
// the representable values are that scale times kIq4Values.
float iq4_scale(DType t, const uint8_t* b, int e) {
  if (t == DType::kIQ4_NL) return f16_at(b);
  const int j = e / 32;
  const int lo = (b[4 + j / 2] >> (4 * (j % 2))) & 0x0f, hi = (quant::load_u16(b + 2) >> (2 * j)) & 3;
  return f16_at(b) * static_cast<float>((lo | (hi << 4)) - 32);
}

TEST(GgufQuantize, IQ4EveryValueDecodesToItsNearestGridPoint) {
  std::mt19937 rng(17);
  ThreadPool pool(3);
  for (DType t : {DType::kIQ4_NL, DType::kIQ4_XS}) {
    SCOPED_TRACE(dtype_name(t));
    const int64_t be = dtype_info(t).block_elems, bb = dtype_info(t).block_bytes;
    const int64_t rows = 7, cols = be == 32 ? 32 * 11 : 256 * 3;
    std::vector<float> x;
    random_rows(rng, rows, cols, &x);
    const std::vector<uint8_t> q = quantize(t, x, rows, cols, true, &pool);
    const std::vector<float> y = dequantize(t, q, rows, cols);
    int bad = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols && bad < 5; ++c) {
        const float s = iq4_scale(t, q.data() + r * row_bytes(t, cols) + c / be * bb, static_cast<int>(c % be));
        const float xv = x[r * cols + c], yv = y[r * cols + c];
        float best = std::numeric_limits<float>::infinity();
        for (int8_t v : kIq4Values) best = std::min(best, std::fabs(xv - s * static_cast<float>(v)));
        if (std::fabs(xv - yv) > best + 1e-5f * std::fabs(s) + 1e-6f * std::fabs(xv)) {
          ++bad;
          ADD_FAILURE() << "row " << r << " col " << c << ": x " << xv << " decodes to " << yv
                        << ", the nearest grid point is " << best << " away (scale " << s << ")";
        }
      }
  }
}

// IQ4_XS stores its sub-block scales as 6-bit codes of one fp16 d (4.25 bits a value, IQ4_NL 4.5):
// with the super-block scale and codes searched, that costs under 5% of IQ4_NL's error.
TEST(GgufQuantize, IQ4XsCloseToNl) {
  std::mt19937 rng(23);
  std::student_t_distribution<float> heavy(4.0f);
  const int64_t rows = 16, cols = 1024;
  std::vector<float> x(rows * cols);
  for (auto& v : x) v = 0.02f * heavy(rng);
  const double nl = mse(x, dequantize(DType::kIQ4_NL, quantize(DType::kIQ4_NL, x, rows, cols), rows, cols));
  const double xs = mse(x, dequantize(DType::kIQ4_XS, quantize(DType::kIQ4_XS, x, rows, cols), rows, cols));
  std::printf("IQ4_NL mse %.4g, IQ4_XS mse %.4g\n", nl, xs);
  EXPECT_LT(xs, 1.05 * nl);
}

TEST(GgufQuantize, ThreadedEqualsSingleThreaded) {
  std::mt19937 rng(3);
  ThreadPool pool(4);
  for (DType t : kTypes) {
    std::vector<float> x;
    random_rows(rng, 9, 512, &x);
    EXPECT_EQ(quantize(t, x, 9, 512, true, &pool), quantize(t, x, 9, 512, true, nullptr)) << dtype_name(t);
  }
}

double mse(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += (static_cast<double>(a[i]) - b[i]) * (a[i] - b[i]);
  return s / static_cast<double>(a.size());
}

TEST(GgufQuantize, SearchBeatsMaxAbsScaling) {
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::student_t_distribution<float> heavy(4.0f);  // weight-like heavy tails
  const int64_t rows = 33, cols = 1024;
  std::vector<float> gauss(rows * cols), tails(rows * cols);
  for (auto& v : gauss) v = g(rng);
  for (auto& v : tails) v = heavy(rng);
  for (DType t : kSearched) {
    for (const std::vector<float>* x : {&gauss, &tails}) {
      const double searched = mse(*x, dequantize(t, quantize(t, *x, rows, cols, true), rows, cols));
      const double plain = mse(*x, dequantize(t, quantize(t, *x, rows, cols, false), rows, cols));
      SCOPED_TRACE(std::string(dtype_name(t)) + (x == &gauss ? " gaussian" : " student-t"));
      EXPECT_LT(searched, 0.97 * plain) << "search mse " << searched << ", max-abs mse " << plain;
      std::printf("%s %s: mse search %.4g, max-abs %.4g (%.1f%% lower)\n", dtype_name(t),
                  x == &gauss ? "gaussian " : "student-t", searched, plain, 100.0 * (1.0 - searched / plain));
    }
  }
}

TEST(GgufQuantize, ZeroConstantTinyAndLargeRows) {
  for (DType t : kTypes) {
    SCOPED_TRACE(dtype_name(t));
    const int64_t cols = 256;
    // rows: zeros, +constant, -constant, tiny, large (std 1e4), one spike in zeros
    std::vector<float> x(6 * cols, 0.0f);
    std::mt19937 rng(5);
    std::normal_distribution<float> g(0.0f, 1.0f);
    for (int64_t c = 0; c < cols; ++c) {
      x[1 * cols + c] = 0.37f;
      x[2 * cols + c] = -2.5f;
      x[3 * cols + c] = 1e-30f * g(rng);
      x[4 * cols + c] = 1e4f * g(rng);
    }
    x[5 * cols + 77] = 3.0f;
    const std::vector<float> y = dequantize(t, quantize(t, x, 6, cols), 6, cols);
    for (int64_t c = 0; c < cols; ++c) {
      EXPECT_EQ(y[c], 0.0f) << "zeros, col " << c;
      EXPECT_NEAR(y[1 * cols + c], 0.37f, 0.37f * 2e-3f) << "constant, col " << c;
      EXPECT_NEAR(y[2 * cols + c], -2.5f, 2.5f * 2e-3f) << "negative constant, col " << c;
      EXPECT_LE(std::fabs(y[3 * cols + c]), 1e-29f) << "tiny, col " << c;
      EXPECT_TRUE(std::isfinite(y[4 * cols + c]));
      if (is_iq4(t) && c / 32 == 77 / 32)  // no zero on the IQ4 grid: the spike's 32 decode to +-scale or less
        EXPECT_LE(std::fabs(y[5 * cols + c]), c == 77 ? 3.1f : 3.0f / 100.0f) << "spike row, col " << c;
      else
        EXPECT_EQ(y[5 * cols + c], c == 77 ? y[5 * cols + 77] : 0.0f) << "spike row, col " << c;
    }
    EXPECT_NEAR(y[5 * cols + 77], 3.0f, 3.0f * 2e-3f);
    // The large row keeps its relative accuracy.
    double num = 0, den = 0;
    for (int64_t c = 0; c < cols; ++c) {
      num += std::pow(x[4 * cols + c] - y[4 * cols + c], 2.0);
      den += std::pow(x[4 * cols + c], 2.0);
    }
    const double bound = t == DType::kQ2_K ? 0.4 : (t == DType::kQ3_K ? 0.2 : 0.12);
    EXPECT_LT(std::sqrt(num / den), bound) << "relative rms error of the 1e4 row";
  }
}

void expect_invalid(DType t, const std::vector<float>& x, int64_t rows, int64_t cols, const std::string& needle) {
  std::vector<uint8_t> q(static_cast<size_t>(std::max<int64_t>(1, rows * row_bytes(t, cols))));
  try {
    quantize_matrix_gguf(t, x.data(), rows, cols, q.data(), nullptr);
    ADD_FAILURE() << dtype_name(t) << ": expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(GgufQuantize, RefusesNonFiniteOverflowingAndMisshapedInput) {
  for (DType t : kTypes) {
    SCOPED_TRACE(dtype_name(t));
    std::vector<float> x(3 * 256, 0.5f);
    x[2 * 256 + 40] = std::numeric_limits<float>::quiet_NaN();
    expect_invalid(t, x, 3, 256, "row 2: ");
    expect_invalid(t, x, 3, 256, "column 40 is NaN");
    x[2 * 256 + 40] = -std::numeric_limits<float>::infinity();
    expect_invalid(t, x, 3, 256, "infinite");
    x[2 * 256 + 40] = 3e38f;  // finite, but no fp16 block scale can reach it
    expect_invalid(t, x, 3, 256, "overflows fp16");
    expect_invalid(t, std::vector<float>(3 * 100, 1.0f), 3, 100, "not a positive multiple of the block size");
  }
  expect_invalid(DType::kQ4_1, std::vector<float>(256, 1.0f), 1, 256, "not supported");
  expect_invalid(DType::kF16, std::vector<float>(256, 1.0f), 1, 256, "not supported");
  EXPECT_THROW(quantize_row_gguf(DType::kQ4_K, std::vector<float>(300, 1.0f).data(), 300, nullptr), Error);
}

// ---- importance matrix ----------------------------------------------------------------------

// sum over rows and columns of qw[c] (y - x)^2 / count: the error an imatrix asks to minimize (with
// qw[c] = mean x_c^2 it is the expected squared output error of the row for independent inputs).
double weighted_mse(const std::vector<float>& x, const std::vector<float>& y, const std::vector<float>& qw,
                    int64_t cols) {
  double s = 0.0;
  for (size_t i = 0; i < x.size(); ++i) s += qw[i % cols] * std::pow(static_cast<double>(x[i]) - y[i], 2.0);
  return s / static_cast<double>(x.size());
}

// Activation-like column weights: log-normal, spread over ~3 orders of magnitude, a few huge columns.
std::vector<float> imatrix_like(std::mt19937& rng, int64_t cols) {
  std::normal_distribution<float> g(0.0f, 1.5f);
  std::vector<float> qw(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) qw[c] = std::exp(g(rng)) * (c % 97 == 5 ? 100.0f : 1.0f);
  return qw;
}

TEST(GgufQuantize, ImatrixLowersTheWeightedError) {
  std::mt19937 rng(21);
  std::student_t_distribution<float> heavy(4.0f);
  const int64_t rows = 17, cols = 768;
  std::vector<float> x(rows * cols);
  for (auto& v : x) v = 0.02f * heavy(rng);
  const std::vector<float> qw = imatrix_like(rng, cols);
  for (DType t : kSearched) {
    const std::vector<float> plain = dequantize(t, quantize(t, x, rows, cols, true), rows, cols);
    const std::vector<float> weighted = dequantize(t, quantize(t, x, rows, cols, true, nullptr, qw.data()), rows, cols);
    const double e_plain = weighted_mse(x, plain, qw, cols), e_w = weighted_mse(x, weighted, qw, cols);
    std::printf("%s: imatrix-weighted mse %.4g with the imatrix, %.4g without (%.1f%% lower); plain mse %.4g vs %.4g\n",
                dtype_name(t), e_w, e_plain, 100.0 * (1.0 - e_w / e_plain), mse(x, weighted), mse(x, plain));
    EXPECT_LT(e_w, 0.95 * e_plain) << dtype_name(t);
  }
}

TEST(GgufQuantize, ImatrixOfOnesChangesNothingAndZerosFallBack) {
  std::mt19937 rng(4);
  std::vector<float> x;
  random_rows(rng, 5, 512, &x);
  const std::vector<float> ones(512, 1.0f), zeros(512, 0.0f);
  for (DType t : kTypes) {
    SCOPED_TRACE(dtype_name(t));
    const std::vector<uint8_t> plain = quantize(t, x, 5, 512);
    EXPECT_EQ(quantize(t, x, 5, 512, true, nullptr, ones.data()), plain);
    EXPECT_EQ(quantize(t, x, 5, 512, true, nullptr, zeros.data()), plain);  // no statistics: unweighted
  }
}

TEST(GgufQuantize, RefusesBadImatrixWeights) {
  std::vector<float> x(2 * 256, 0.5f), qw(256, 1.0f);
  for (float bad : {-1.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    qw[13] = bad;
    std::vector<uint8_t> q(static_cast<size_t>(2 * row_bytes(DType::kQ3_K, 256)));
    try {
      quantize_matrix_gguf(DType::kQ3_K, x.data(), 2, 256, q.data(), nullptr, true, qw.data());
      ADD_FAILURE() << "weight " << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("weight of column 13"), std::string::npos) << e.what();
    }
  }
}

// Q2_K / Q3_K: an outlier in one sub-block costs the other sub-blocks of its super-block at most
// what the format forces (codes against the outlier's scale), and never the other super-blocks.
TEST(GgufQuantize, LowBitOutlierStaysInItsSuperBlock) {
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(3 * 256);
  for (auto& v : x) v = g(rng);
  std::vector<float> clean = x;
  x[256 + 40] = 60.0f;
  for (DType t : {DType::kQ2_K, DType::kQ3_K}) {
    SCOPED_TRACE(dtype_name(t));
    const std::vector<float> y = dequantize(t, quantize(t, x, 1, 768), 1, 768);
    const std::vector<float> yc = dequantize(t, quantize(t, clean, 1, 768), 1, 768);
    for (int c : {0, 512}) {  // the other super-blocks are bit for bit unchanged
      for (int i = c; i < c + 256; ++i) EXPECT_EQ(y[i], yc[i]) << i;
    }
    EXPECT_NEAR(y[256 + 40], 60.0f, 60.0f * 0.05f);  // the outlier itself is kept
  }
}

}  // namespace
}  // namespace eli
