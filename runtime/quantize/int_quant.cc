// runtime/quantize/int_quant.cc: see int_quant.h.
#include "runtime/quantize/int_quant.h"

#include <algorithm>
#include <cmath>

#include "eli/error.h"
#include "runtime/core/float_convert.h"

namespace eli {

int64_t checked_group_size(const IntQuantSpec& spec, int64_t k) {
  ELI_CHECK_ARG(spec.bits == 4 || spec.bits == 8, "bits must be 4 or 8, got ", spec.bits);
  ELI_CHECK_ARG(k > 0, "the matrix has no input columns");
  const int64_t gs = spec.group_size == -1 ? k : spec.group_size;
  ELI_CHECK_ARG(gs > 0, "group_size must be positive or -1 (per channel), got ", spec.group_size);
  ELI_CHECK_ARG(k % gs == 0, "group_size ", gs, " does not divide the ", k, " input features");
  ELI_CHECK_ARG(spec.zero_min >= 0 && spec.zero_min < (1 << spec.bits), "zero_min ", spec.zero_min,
                " is outside [0, 2^bits)");
  return gs;
}

namespace {

float stored_scale(double s, bool f16) {
  float f = static_cast<float>(s);
  if (!f16) return f;
  // Smallest positive normal f16 up to the largest finite one: a scale must stay positive.
  f = std::min(std::max(f, 6.103515625e-05f), 65504.0f);
  return f16_to_f32(f32_to_f16(f));
}

}  // namespace

void int_group_params(const float* values, int64_t len, int64_t stride, const IntQuantSpec& spec, float* scale,
                      int32_t* zero) {
  const int maxq = (1 << spec.bits) - 1;
  double lo = 0.0, hi = 0.0;
  for (int64_t i = 0; i < len; ++i) {
    const double v = values[i * stride];
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (spec.sym) {
    const double amax = std::max(-lo, hi);
    *scale = amax > 0.0 ? stored_scale(2.0 * amax / maxq, spec.f16_scales) : 1.0f;
    *zero = (maxq + 1) / 2;
    return;
  }
  if (hi - lo <= 0.0) {
    *scale = 1.0f;
    *zero = std::max((maxq + 1) / 2, spec.zero_min);
    return;
  }
  *scale = stored_scale((hi - lo) / maxq, spec.f16_scales);
  const double z = std::nearbyint(-lo / static_cast<double>(*scale));
  *zero = static_cast<int32_t>(std::min<double>(std::max<double>(z, spec.zero_min), maxq));
}

uint8_t int_quant_value(float w, float scale, int32_t zero, int bits) {
  const int maxq = (1 << bits) - 1;
  const double q = std::nearbyint(static_cast<double>(w) / scale) + zero;
  return static_cast<uint8_t>(std::min<double>(std::max<double>(q, 0.0), maxq));
}

IntQuantResult sized_int_quant_result(int64_t n, int64_t k, int64_t gs) {
  IntQuantResult r;
  r.n = n;
  r.k = k;
  r.group_size = gs;
  r.groups = k / gs;
  r.q.resize(static_cast<size_t>(n * k));
  r.scales.resize(static_cast<size_t>(n * r.groups));
  r.zeros.resize(static_cast<size_t>(n * r.groups));
  r.g_idx.resize(static_cast<size_t>(k));
  return r;
}

IntQuantResult quantize_rtn(const float* w, int64_t n, int64_t k, const IntQuantSpec& spec) {
  const int64_t gs = checked_group_size(spec, k);
  IntQuantResult r = sized_int_quant_result(n, k, gs);
  for (int64_t j = 0; j < k; ++j) r.g_idx[j] = static_cast<int32_t>(j / gs);
  for (int64_t row = 0; row < n; ++row) {
    for (int64_t g = 0; g < r.groups; ++g) {
      const float* v = w + row * k + g * gs;
      float s;
      int32_t z;
      int_group_params(v, gs, 1, spec, &s, &z);
      r.scales[row * r.groups + g] = s;
      r.zeros[row * r.groups + g] = z;
      for (int64_t j = 0; j < gs; ++j) r.q[row * k + g * gs + j] = int_quant_value(v[j], s, z, spec.bits);
    }
  }
  return r;
}

std::vector<float> dequantize(const IntQuantResult& r) {
  std::vector<float> out(static_cast<size_t>(r.n * r.k));
  for (int64_t row = 0; row < r.n; ++row) {
    for (int64_t j = 0; j < r.k; ++j) {
      const int64_t g = row * r.groups + r.g_idx[j];
      out[row * r.k + j] = static_cast<float>(static_cast<int32_t>(r.q[row * r.k + j]) - r.zeros[g]) * r.scales[g];
    }
  }
  return out;
}

double output_error(const float* w, const float* w_hat, int64_t n, int64_t k, const float* H) {
  double total = 0.0;
  std::vector<double> d(static_cast<size_t>(k));
  for (int64_t row = 0; row < n; ++row) {
    for (int64_t j = 0; j < k; ++j) d[j] = static_cast<double>(w_hat[row * k + j]) - w[row * k + j];
    for (int64_t i = 0; i < k; ++i) {
      if (d[i] == 0.0) continue;
      const float* h = H + i * k;
      double acc = 0.0;
      for (int64_t j = 0; j < k; ++j) acc += h[j] * d[j];
      total += d[i] * acc;
    }
  }
  return total;
}

}  // namespace eli
