// kernels/ref/wq_ref.cc: see wq_ref.h. Plain loops, double accumulation; no speed concerns.
#include "kernels/ref/wq_ref.h"

#include <cmath>
#include <vector>

#include "eli/error.h"
#include "kernels/ref/activation.h"
#include "kernels/ref/fp8.h"

namespace eli {

namespace {

void check_matrix(const WqMatrix& w, int64_t k) {
  ELI_CHECK(w.q != nullptr && w.scales != nullptr, "wq: weight without data or scales");
  const bool grouped = w.format == WeightFormat::kInt4Grouped || w.format == WeightFormat::kInt8Grouped;
  ELI_CHECK(w.format == WeightFormat::kInt4Grouped || w.format == WeightFormat::kInt8Grouped ||
                w.format == WeightFormat::kInt8Channel || w.format == WeightFormat::kFp8Channel,
            "wq: not a quantized layout: ", weight_format_name(w.format));
  if (grouped) {
    ELI_CHECK(w.zeros != nullptr && w.group_size > 0 && k % w.group_size == 0, "wq: group size ", w.group_size,
              " does not divide k ", k);
  }
  if (w.format == WeightFormat::kInt4Grouped) ELI_CHECK(k % 32 == 0, "wq: int4 rows need k % 32 == 0, got ", k);
}

// Activation row as the kernel sees it, in double: gathered through the act-order permutation;
// the W8A8 formats quantize it per token (the shared f32 functions) and dequantize it exactly.
void effective_x(const WqMatrix& w, const float* x, int64_t k, std::vector<double>& out) {
  std::vector<float> in(x, x + k);
  if (w.perm != nullptr) {  // act-order: stored column j multiplies x[perm[j]]
    for (int64_t j = 0; j < k; ++j) in[j] = x[w.perm[j]];
  }
  out.assign(in.begin(), in.end());
  const float static_scale = w.act_scale != nullptr ? *w.act_scale : 0.0f;
  if (w.format == WeightFormat::kInt8Channel) {
    std::vector<int8_t> q(static_cast<size_t>(k));
    const double s = wq_quantize_row_int8(in.data(), k, q.data(), static_scale);
    for (int64_t j = 0; j < k; ++j) out[j] = q[j] * s;
  } else if (w.format == WeightFormat::kFp8Channel) {
    std::vector<uint8_t> q(static_cast<size_t>(k));
    const double s = wq_quantize_row_fp8(in.data(), k, q.data(), static_scale);
    for (int64_t j = 0; j < k; ++j) out[j] = fp8_e4m3_to_f32(q[j]) * s;
  }
}

double dot_row(const std::vector<double>& x, const std::vector<float>& wrow) {
  double acc = 0.0;
  for (size_t j = 0; j < x.size(); ++j) acc += x[j] * wrow[j];
  return acc;
}

}  // namespace

void wq_dequant_row(const WqMatrix& w, int64_t k, int64_t r, float* out) {
  const int64_t groups = wq_groups(w, k);
  const int64_t gs = k / groups;
  switch (w.format) {
    case WeightFormat::kInt4Grouped: {
      const uint8_t* row = static_cast<const uint8_t*>(w.q) + r * (k / 2);
      for (int64_t c = 0; c < k; ++c) {
        const uint8_t b = row[(c / 32) * 16 + (c % 16)];
        const int q = (c % 32) < 16 ? (b & 15) : (b >> 4);
        const int64_t g = r * groups + c / gs;
        out[c] = (static_cast<float>(q) - w.zeros[g]) * w.scales[g];
      }
      return;
    }
    case WeightFormat::kInt8Grouped: {
      const uint8_t* row = static_cast<const uint8_t*>(w.q) + r * k;
      for (int64_t c = 0; c < k; ++c) {
        const int64_t g = r * groups + c / gs;
        out[c] = (static_cast<float>(row[c]) - w.zeros[g]) * w.scales[g];
      }
      return;
    }
    case WeightFormat::kInt8Channel: {
      const int8_t* row = static_cast<const int8_t*>(w.q) + r * k;
      for (int64_t c = 0; c < k; ++c) out[c] = static_cast<float>(row[c]) * w.scales[r];
      return;
    }
    case WeightFormat::kFp8Channel: {
      const uint8_t* row = static_cast<const uint8_t*>(w.q) + r * k;
      for (int64_t c = 0; c < k; ++c) out[c] = fp8_e4m3_to_f32(row[c]) * w.scales[r];
      return;
    }
    default: ELI_THROW(kInternal, "wq: not a quantized layout: ", weight_format_name(w.format));
  }
}

float wq_quantize_row_int8(const float* x, int64_t k, int8_t* q, float static_scale) {
  float amax = 0.0f;
  for (int64_t j = 0; j < k; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  const float s = static_scale > 0.0f ? static_scale : amax > 0.0f ? amax / 127.0f : 1.0f;
  for (int64_t j = 0; j < k; ++j) {
    const float v = std::nearbyint(x[j] / s);
    q[j] = static_cast<int8_t>(std::fmin(127.0f, std::fmax(-127.0f, v)));
  }
  return s;
}

float wq_quantize_row_fp8(const float* x, int64_t k, uint8_t* q, float static_scale) {
  float amax = 0.0f;
  for (int64_t j = 0; j < k; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  const float s = static_scale > 0.0f ? static_scale : amax > 0.0f ? amax / 448.0f : 1.0f;
  for (int64_t j = 0; j < k; ++j) q[j] = f32_to_fp8_e4m3(x[j] / s);
  return s;
}

void wq_gemv_ref(const void* args, const ExecContext&) {
  const auto& a = *static_cast<const GemvArgs*>(args);
  const auto& w = *static_cast<const WqMatrix*>(a.w);
  ELI_CHECK(a.m >= 0 && a.n >= 0 && a.k > 0, "wq gemv: bad sizes");
  check_matrix(w, a.k);
  const bool gated = a.gated != GatedAct::kNone;
  ELI_CHECK(!gated || a.n % 2 == 0, "wq gemv: a gated activation needs an even n, got ", a.n);
  std::vector<float> xn(static_cast<size_t>(a.k)), wrow(static_cast<size_t>(a.k));
  std::vector<double> xe;
  std::vector<double> y(static_cast<size_t>(a.n));
  for (int64_t r = 0; r < a.m; ++r) {
    const float* x = a.x + r * a.x_stride;
    double inv = 1.0;
    if (a.norm_weight != nullptr) {
      double ss = 0.0;
      for (int64_t j = 0; j < a.k; ++j) ss += static_cast<double>(x[j]) * x[j];
      inv = 1.0 / std::sqrt(ss / static_cast<double>(a.k) + static_cast<double>(a.norm_eps));
    }
    for (int64_t j = 0; j < a.k; ++j) {
      xn[j] = a.norm_weight != nullptr
                  ? static_cast<float>(x[j] * inv * (static_cast<double>(a.norm_weight[j]) + a.norm_weight_offset))
                  : x[j];
    }
    effective_x(w, xn.data(), a.k, xe);
    for (int64_t n = 0; n < a.n; ++n) {
      wq_dequant_row(w, a.k, n, wrow.data());
      y[n] = (a.bias != nullptr ? a.bias[n] : 0.0) + dot_row(xe, wrow);
    }
    float* out = a.out + r * a.out_stride;
    const int64_t n_out = gated ? a.n / 2 : a.n;
    for (int64_t n = 0; n < n_out; ++n) {
      const double v = gated ? gated_act_value(a.gated, y[n]) * y[n + n_out] : y[n];
      out[n] = static_cast<float>(a.accumulate ? out[n] + v : v);
    }
  }
}

void wq_gemm_ref(const void* args, const ExecContext&) {
  const auto& a = *static_cast<const GemmArgs*>(args);
  const auto& w = *static_cast<const WqMatrix*>(a.w);
  ELI_CHECK(a.m >= 0 && a.n >= 0 && a.k > 0, "wq gemm: bad sizes");
  ELI_CHECK_KIND(kUnsupported, a.x_dtype == DType::kF32 && a.out_dtype == DType::kF32,
                 "wq gemm (cpu): x and out must be float32");
  check_matrix(w, a.k);
  std::vector<float> wrow(static_cast<size_t>(a.k));
  std::vector<std::vector<double>> xs(static_cast<size_t>(a.m));
  for (int64_t i = 0; i < a.m; ++i) effective_x(w, static_cast<const float*>(a.x) + i * a.x_stride, a.k, xs[i]);
  float* out = static_cast<float*>(a.out);
  for (int64_t j = 0; j < a.n; ++j) {
    wq_dequant_row(w, a.k, j, wrow.data());
    for (int64_t i = 0; i < a.m; ++i) {
      double acc = (a.bias != nullptr ? a.bias[j] : 0.0) + dot_row(xs[i], wrow);
      float& o = out[i * a.out_stride + j];
      o = static_cast<float>(a.accumulate ? o + acc : acc);
    }
  }
}

}  // namespace eli
