// runtime/quantize/awq.cc: see awq.h.
#include "runtime/quantize/awq.h"

#include <algorithm>
#include <cmath>

#include "eli/error.h"
#include "runtime/core/thread_pool.h"

namespace eli {
namespace {

// Output error of RTN on W diag(s), mapped back by diag(s)^-1 (rows in parallel).
double scaled_rtn_error(const float* w, int64_t n, int64_t k, const std::vector<float>& s, const float* H,
                        const IntQuantSpec& spec, ThreadPool* pool) {
  std::vector<double> row_err(static_cast<size_t>(n), 0.0);
  parallel_for(pool, n, [&](int64_t r0, int64_t r1) {
    std::vector<float> scaled(static_cast<size_t>(k)), back(static_cast<size_t>(k));
    for (int64_t r = r0; r < r1; ++r) {
      const float* wr = w + r * k;
      for (int64_t j = 0; j < k; ++j) scaled[j] = wr[j] * s[j];
      const IntQuantResult q = quantize_rtn(scaled.data(), 1, k, spec);
      const std::vector<float> deq = dequantize(q);
      for (int64_t j = 0; j < k; ++j) back[j] = deq[j] / s[j];
      row_err[r] = output_error(wr, back.data(), 1, k, H);
    }
  }, 1);
  double total = 0.0;
  for (double e : row_err) total += e;
  return total;
}

}  // namespace

AwqSearchResult awq_search(const float* w, int64_t n, int64_t k, const float* x_abs_mean, const float* H,
                           const IntQuantSpec& spec, int grid, ThreadPool* pool) {
  checked_group_size(spec, k);
  ELI_CHECK_ARG(grid >= 1 && grid <= 1000, "the AWQ grid must have 1..1000 points, got ", grid);
  ELI_CHECK_ARG(n > 0, "the matrix has no rows");
  for (int64_t j = 0; j < k; ++j) {
    ELI_CHECK_ARG(std::isfinite(x_abs_mean[j]) && x_abs_mean[j] >= 0.0f, "mean |x| of input ", j, " is ",
                  x_abs_mean[j]);
  }
  AwqSearchResult best;
  best.error = INFINITY;
  std::vector<float> s(static_cast<size_t>(k));
  for (int step = 0; step < grid; ++step) {
    const double alpha = static_cast<double>(step) / grid;
    double lo = INFINITY, hi = 0.0;
    std::vector<double> raw(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j) {
      raw[j] = std::pow(std::max<double>(x_abs_mean[j], 1e-4), alpha);
      lo = std::min(lo, raw[j]);
      hi = std::max(hi, raw[j]);
    }
    const double norm = std::sqrt(lo * hi);
    for (int64_t j = 0; j < k; ++j) s[j] = step == 0 ? 1.0f : static_cast<float>(raw[j] / norm);
    const double err = scaled_rtn_error(w, n, k, s, H, spec, pool);
    if (step == 0) best.rtn_error = err;
    if (err < best.error) {
      best.error = err;
      best.alpha = alpha;
      best.scales = s;
    }
  }
  return best;
}

}  // namespace eli
