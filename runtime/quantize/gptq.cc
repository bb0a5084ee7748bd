// runtime/quantize/gptq.cc: see gptq.h.
#include "runtime/quantize/gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "eli/error.h"
#include "runtime/core/thread_pool.h"

namespace eli {
namespace {

// In place: a (k, k) symmetric positive definite A -> its lower Cholesky factor L (A = L L^T);
// the upper triangle is left unspecified. False when a pivot is not positive.
bool cholesky_lower(std::vector<double>& a, int64_t k) {
  for (int64_t j = 0; j < k; ++j) {
    double d = a[j * k + j];
    for (int64_t p = 0; p < j; ++p) d -= a[j * k + p] * a[j * k + p];
    if (!(d > 0.0) || !std::isfinite(d)) return false;
    const double ljj = std::sqrt(d);
    a[j * k + j] = ljj;
    for (int64_t i = j + 1; i < k; ++i) {
      double s = a[i * k + j];
      const double* li = &a[i * k];
      const double* lj = &a[j * k];
      for (int64_t p = 0; p < j; ++p) s -= li[p] * lj[p];
      a[i * k + j] = s / ljj;
    }
  }
  return true;
}

// U with H^-1 = U^T U (upper), from the lower Cholesky factor L of H: H^-1 = L^-T L^-1, then the
// Cholesky factor of that.
bool inverse_upper_factor(std::vector<double> h, int64_t k, std::vector<double>* u) {
  if (!cholesky_lower(h, k)) return false;
  // Linv = L^-1 (lower), column by column by forward substitution.
  std::vector<double> linv(static_cast<size_t>(k * k), 0.0);
  for (int64_t c = 0; c < k; ++c) {
    linv[c * k + c] = 1.0 / h[c * k + c];
    for (int64_t i = c + 1; i < k; ++i) {
      double s = 0.0;
      for (int64_t p = c; p < i; ++p) s -= h[i * k + p] * linv[p * k + c];
      linv[i * k + c] = s / h[i * k + i];
    }
  }
  // Hinv = Linv^T Linv: Hinv[i][j] = sum_{p >= max(i, j)} Linv[p][i] Linv[p][j].
  std::vector<double> hinv(static_cast<size_t>(k * k), 0.0);
  for (int64_t p = 0; p < k; ++p) {
    const double* row = &linv[p * k];
    for (int64_t i = 0; i <= p; ++i) {
      if (row[i] == 0.0) continue;
      double* out = &hinv[i * k];
      for (int64_t j = 0; j <= i; ++j) out[j] += row[i] * row[j];
    }
  }
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < i; ++j) hinv[j * k + i] = hinv[i * k + j];
  }
  if (!cholesky_lower(hinv, k)) return false;
  u->assign(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j <= i; ++j) (*u)[j * k + i] = hinv[i * k + j];
  }
  return true;
}

}  // namespace

IntQuantResult quantize_gptq(const float* w, int64_t n, int64_t k, const float* H, const IntQuantSpec& spec,
                             const GptqOptions& opt, const std::string& name, ThreadPool* pool) {
  const int64_t gs = checked_group_size(spec, k);
  ELI_CHECK_ARG(opt.damp >= 0.0 && std::isfinite(opt.damp), "GPTQ damping must be >= 0, got ", opt.damp);
  ELI_CHECK_ARG(opt.block_size > 0, "GPTQ block size must be positive, got ", opt.block_size);
  ELI_CHECK_ARG(n > 0, name, ": the matrix has no rows");

  // Dead inputs and the visiting order.
  std::vector<char> dead(static_cast<size_t>(k), 0);
  double mean_diag = 0.0;
  for (int64_t j = 0; j < k; ++j) {
    const double d = H[j * k + j];
    ELI_CHECK_ARG(std::isfinite(d) && d >= 0.0, name, ": the calibration Hessian has a bad diagonal entry ", d,
                  " at input ", j);
    dead[j] = d == 0.0;
    mean_diag += dead[j] ? 1.0 : d;
  }
  mean_diag /= static_cast<double>(k);
  std::vector<int64_t> perm(static_cast<size_t>(k));
  std::iota(perm.begin(), perm.end(), 0);
  if (opt.act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return H[a * k + a] > H[b * k + b]; });
  }
  // Damped H in visiting order.
  std::vector<double> hp(static_cast<size_t>(k * k));
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t a = perm[i], b = perm[j];
      double v = dead[a] || dead[b] ? 0.0 : static_cast<double>(H[a * k + b]);
      if (i == j) v = (dead[a] ? 1.0 : v) + opt.damp * mean_diag;
      hp[i * k + j] = v;
    }
  }
  std::vector<double> u;
  ELI_CHECK_ARG(inverse_upper_factor(std::move(hp), k, &u), name,
                ": the calibration Hessian is not positive definite after damping ", opt.damp,
                " (use more calibration text, or a larger damping)");

  IntQuantResult r = sized_int_quant_result(n, k, gs);
  for (int64_t i = 0; i < k; ++i) r.g_idx[perm[i]] = static_cast<int32_t>(i / gs);

  const int64_t bs = opt.block_size;
  parallel_for(pool, n, [&](int64_t r0, int64_t r1) {
    std::vector<double> row(static_cast<size_t>(k)), err(static_cast<size_t>(bs));
    std::vector<float> group(static_cast<size_t>(gs));
    for (int64_t rr = r0; rr < r1; ++rr) {
      for (int64_t i = 0; i < k; ++i) row[i] = dead[perm[i]] ? 0.0 : w[rr * k + perm[i]];
      float s = 1.0f;
      int32_t z = 0;
      for (int64_t b0 = 0; b0 < k; b0 += bs) {
        const int64_t b1 = std::min(k, b0 + bs);
        for (int64_t i = b0; i < b1; ++i) {
          if (i % gs == 0) {
            for (int64_t j = 0; j < gs; ++j) group[j] = static_cast<float>(row[i + j]);
            int_group_params(group.data(), gs, 1, spec, &s, &z);
            r.scales[rr * r.groups + i / gs] = s;
            r.zeros[rr * r.groups + i / gs] = z;
          }
          const uint8_t q = int_quant_value(static_cast<float>(row[i]), s, z, spec.bits);
          r.q[rr * k + perm[i]] = q;
          const double deq = static_cast<double>(static_cast<float>(static_cast<int32_t>(q) - z) * s);
          const double e = (row[i] - deq) / u[i * k + i];
          err[i - b0] = e;
          const double* ui = &u[i * k];
          for (int64_t j = i + 1; j < b1; ++j) row[j] -= e * ui[j];
        }
        for (int64_t i = b0; i < b1; ++i) {
          const double e = err[i - b0];
          if (e == 0.0) continue;
          const double* ui = &u[i * k];
          for (int64_t j = b1; j < k; ++j) row[j] -= e * ui[j];
        }
      }
    }
  }, 1);
  return r;
}

}  // namespace eli
