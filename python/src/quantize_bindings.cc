// python/src/quantize_bindings.cc: _eli's quantization functions (runtime/quantize): calibration
// statistics from a CPU engine, and the RTN / GPTQ / AWQ / per-channel quantizers on numpy arrays.
// Bindings only translate: arrays in (float32, C-contiguous), arrays out (owned by capsules);
// argument checks are the C++ functions' (eli::Error -> the mapped Python exception). Long calls
// release the GIL.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/vector.h>

#include <map>
#include <memory>
#include <optional>
#include <utility>

#include "eli/engine.h"
#include "eli/error.h"
#include "runtime/core/thread_pool.h"
#include "runtime/quantize/awq.h"
#include "runtime/quantize/calibration.h"
#include "runtime/quantize/channel_quant.h"
#include "runtime/quantize/gptq.h"
#include "runtime/quantize/int_quant.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace eli {
namespace {

using Mat = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Vec = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

// A numpy array owning a moved-in vector.
template <typename T>
nb::object to_numpy(std::vector<T>&& v, std::initializer_list<size_t> shape) {
  auto* owned = new std::vector<T>(std::move(v));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::cast(nb::ndarray<nb::numpy, T>(owned->data(), shape, owner));
}

IntQuantSpec make_spec(int bits, int64_t group_size, bool sym, int zero_min, bool f16_scales) {
  IntQuantSpec s;
  s.bits = bits;
  s.group_size = group_size;
  s.sym = sym;
  s.zero_min = zero_min;
  s.f16_scales = f16_scales;
  return s;
}

nb::tuple int_result(IntQuantResult&& r) {
  const size_t n = static_cast<size_t>(r.n), k = static_cast<size_t>(r.k), g = static_cast<size_t>(r.groups);
  return nb::make_tuple(to_numpy(std::move(r.q), {n, k}), to_numpy(std::move(r.scales), {n, g}),
                        to_numpy(std::move(r.zeros), {n, g}), to_numpy(std::move(r.g_idx), {k}));
}

void check_square(const Mat& h, int64_t k, const char* what) {
  ELI_CHECK_ARG(static_cast<int64_t>(h.shape(0)) == k && static_cast<int64_t>(h.shape(1)) == k, what, " must be (",
                k, ", ", k, "), got (", h.shape(0), ", ", h.shape(1), ")");
}

nb::dict calibrate_py(Engine& engine, const std::vector<std::vector<int32_t>>& sequences) {
  std::map<std::string, LinearStats> stats;
  {
    nb::gil_scoped_release release;
    stats = calibrate(engine, sequences);
  }
  nb::dict out;
  for (auto& [name, s] : stats) {
    const size_t k = static_cast<size_t>(s.cols);
    out[nb::str(name.c_str())] = nb::make_tuple(to_numpy(std::move(s.abs_mean), {k}),
                                                to_numpy(std::move(s.hessian), {k, k}), s.rows);
  }
  return out;
}

nb::tuple quantize_int_py(Mat w, int bits, int64_t group_size, bool sym, int zero_min, bool f16_scales,
                          const std::string& method, std::optional<Mat> hessian, bool act_order, double damp,
                          int64_t block_size, int n_threads) {
  const int64_t n = w.shape(0), k = w.shape(1);
  const IntQuantSpec spec = make_spec(bits, group_size, sym, zero_min, f16_scales);
  IntQuantResult r;
  if (method == "rtn") {
    nb::gil_scoped_release release;
    r = quantize_rtn(w.data(), n, k, spec);
  } else if (method == "gptq") {
    ELI_CHECK_ARG(hessian.has_value(), "GPTQ needs the calibration Hessian");
    check_square(*hessian, k, "the Hessian");
    GptqOptions opt;
    opt.act_order = act_order;
    opt.damp = damp;
    opt.block_size = block_size;
    nb::gil_scoped_release release;
    ThreadPool pool(n_threads);
    r = quantize_gptq(w.data(), n, k, hessian->data(), spec, opt, "weight", &pool);
  } else {
    ELI_THROW(kInvalidArgument, "integer quantization method must be rtn or gptq, got ", method);
  }
  return int_result(std::move(r));
}

nb::tuple awq_search_py(Mat w, Vec x_abs_mean, Mat hessian, int bits, int64_t group_size, bool sym, int zero_min,
                        bool f16_scales, int grid, int n_threads) {
  const int64_t n = w.shape(0), k = w.shape(1);
  ELI_CHECK_ARG(static_cast<int64_t>(x_abs_mean.shape(0)) == k, "mean |x| must have ", k, " entries, got ",
                x_abs_mean.shape(0));
  check_square(hessian, k, "the Hessian");
  const IntQuantSpec spec = make_spec(bits, group_size, sym, zero_min, f16_scales);
  AwqSearchResult r;
  {
    nb::gil_scoped_release release;
    ThreadPool pool(n_threads);
    r = awq_search(w.data(), n, k, x_abs_mean.data(), hessian.data(), spec, grid, &pool);
  }
  return nb::make_tuple(to_numpy(std::move(r.scales), {static_cast<size_t>(k)}), r.alpha, r.error, r.rtn_error);
}

double output_error_py(Mat w, Mat w_hat, Mat hessian) {
  const int64_t n = w.shape(0), k = w.shape(1);
  ELI_CHECK_ARG(w_hat.shape(0) == w.shape(0) && w_hat.shape(1) == w.shape(1), "w and w_hat differ in shape");
  check_square(hessian, k, "the Hessian");
  nb::gil_scoped_release release;
  return output_error(w.data(), w_hat.data(), n, k, hessian.data());
}

nb::tuple quantize_channel_py(Mat w, const std::string& kind) {
  const size_t n = w.shape(0), k = w.shape(1);
  ChannelQuantResult r;
  {
    nb::gil_scoped_release release;
    r = quantize_channel(w.data(), static_cast<int64_t>(n), static_cast<int64_t>(k), kind.c_str());
  }
  return nb::make_tuple(to_numpy(std::move(r.codes), {n, k}), to_numpy(std::move(r.scales), {n}));
}

}  // namespace

void bind_quantize(nb::module_& m) {
  m.def("calibrate", &calibrate_py, "engine"_a, "sequences"_a,
        "Scores each token sequence on a CPU engine and returns {linear name: (mean |x| (k,), mean x x^T (k, k), "
        "rows)}.");
  m.def("quantize_int", &quantize_int_py, "w"_a, "bits"_a, "group_size"_a, "sym"_a, "zero_min"_a = 0,
        "f16_scales"_a = true, "method"_a = "rtn", "hessian"_a = nb::none(), "act_order"_a = false, "damp"_a = 0.01,
        "block_size"_a = 128, "n_threads"_a = 0,
        "RTN or GPTQ integer quantization of an (n, k) float32 matrix: (codes u8 (n, k), scales (n, G), zeros i32 "
        "(n, G), g_idx i32 (k)).");
  m.def("awq_search", &awq_search_py, "w"_a, "x_abs_mean"_a, "hessian"_a, "bits"_a, "group_size"_a, "sym"_a = false,
        "zero_min"_a = 0, "f16_scales"_a = true, "grid"_a = 20, "n_threads"_a = 0,
        "AWQ's per-input-channel scale search: (scales (k,), alpha, error, rtn_error).");
  m.def("quant_output_error", &output_error_py, "w"_a, "w_hat"_a, "hessian"_a,
        "sum over rows of (w_hat - w) H (w_hat - w)^T.");
  m.def("quantize_channel", &quantize_channel_py, "w"_a, "kind"_a,
        "Per-output-channel int8 or fp8 (e4m3) codes (n, k) u8 and scales (n,).");
}

}  // namespace eli
