// runtime/quantize/calibration.cc: see calibration.h.
#include "runtime/quantize/calibration.h"

#include <cmath>
#include <memory>

#include "eli/error.h"
#include "runtime/core/float_convert.h"
#include "runtime/core/thread_pool.h"
#include "runtime/model/linear_observer.h"

namespace eli {
namespace {

struct Accum {
  int64_t cols = 0, rows = 0;
  std::vector<double> abs_sum;
  std::vector<float> h;  // lower triangle accumulated, mirrored at the end
};

class StatsObserver final : public LinearObserver {
 public:
  explicit StatsObserver(ThreadPool* pool) : pool_(pool) {}

  void observe(const LinearWeight& w, int64_t m, const LinearInput& in) override {
    if (m <= 0 || w.name == "lm_head") return;
    const int64_t k = w.cols;
    Accum& a = stats_[w.name];
    if (a.cols == 0) {
      a.cols = k;
      a.abs_sum.assign(static_cast<size_t>(k), 0.0);
      a.h.assign(static_cast<size_t>(k * k), 0.0f);
    }
    ELI_CHECK_KIND(kInternal, a.cols == k, w.name, ": input width changed between calls");
    rows_.resize(static_cast<size_t>(m * k));
    for (int64_t r = 0; r < m; ++r) {
      float* dst = &rows_[r * k];
      const int64_t off = r * in.stride;
      for (int64_t j = 0; j < k; ++j) dst[j] = element(in, off + j);
      if (in.norm_weight != nullptr) {
        double ss = 0.0;
        for (int64_t j = 0; j < k; ++j) ss += static_cast<double>(dst[j]) * dst[j];
        const float inv = 1.0f / std::sqrt(static_cast<float>(ss / k) + in.norm_eps);
        for (int64_t j = 0; j < k; ++j) dst[j] = dst[j] * inv * in.norm_weight[j];
      }
      for (int64_t j = 0; j < k; ++j) a.abs_sum[j] += std::fabs(dst[j]);
    }
    a.rows += m;
    // H += X^T X (lower triangle), rows of H in parallel.
    const float* x = rows_.data();
    parallel_for(pool_, k, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        float* hi = &a.h[i * k];
        for (int64_t r = 0; r < m; ++r) {
          const float* xr = x + r * k;
          const float xi = xr[i];
          if (xi == 0.0f) continue;
          for (int64_t j = 0; j <= i; ++j) hi[j] += xi * xr[j];
        }
      }
    }, 8);
  }

  std::map<std::string, LinearStats> finish() {
    std::map<std::string, LinearStats> out;
    for (auto& [name, a] : stats_) {
      LinearStats s;
      s.cols = a.cols;
      s.rows = a.rows;
      const int64_t k = a.cols;
      const float inv = 1.0f / static_cast<float>(a.rows);
      s.abs_mean.resize(static_cast<size_t>(k));
      for (int64_t j = 0; j < k; ++j) s.abs_mean[j] = static_cast<float>(a.abs_sum[j] / a.rows);
      s.hessian = std::move(a.h);
      for (int64_t i = 0; i < k; ++i) {
        for (int64_t j = 0; j <= i; ++j) {
          s.hessian[i * k + j] *= inv;
          s.hessian[j * k + i] = s.hessian[i * k + j];
        }
      }
      out.emplace(name, std::move(s));
    }
    return out;
  }

 private:
  static float element(const LinearInput& in, int64_t i) {
    switch (in.dtype) {
      case DType::kF32: return static_cast<const float*>(in.x)[i];
      case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(in.x)[i]);
      case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(in.x)[i]);
      default: ELI_THROW(kUnsupported, "calibration: linear inputs of dtype ", dtype_name(in.dtype));
    }
  }

  ThreadPool* pool_;
  std::map<std::string, Accum> stats_;
  std::vector<float> rows_;
};

}  // namespace

std::map<std::string, LinearStats> calibrate(Engine& engine, const std::vector<std::vector<int32_t>>& sequences) {
  const EngineInfo& info = engine.info();
  ELI_CHECK_KIND(kUnsupported, info.device == "cpu", "calibration runs on the CPU engine only (this engine runs on ",
                 info.device, "); open the model with device=\"cpu\"");
  ELI_CHECK_ARG(!sequences.empty(), "calibration needs at least one token sequence");
  ThreadPool pool(info.n_threads > 0 ? info.n_threads : 0);
  StatsObserver obs(&pool);
  {
    ScopedLinearObserver scoped(&obs);
    for (const std::vector<int32_t>& seq : sequences) engine.score(seq);
  }
  std::map<std::string, LinearStats> out = obs.finish();
  ELI_CHECK_KIND(kUnsupported, !out.empty(),
                 "calibration saw no linear products (a tensor- or pipeline-parallel engine runs them on other "
                 "threads); use tensor_parallel_size = pipeline_parallel_size = 1");
  return out;
}

}  // namespace eli
