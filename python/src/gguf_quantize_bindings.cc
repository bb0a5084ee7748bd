// python/src/gguf_quantize_bindings.cc: _eli.gguf_quantize / _eli.gguf_dequantize, the numeric core
// of eli's GGUF requantizer (python/eli/quantize/gguf_requant.py): a float32 matrix to GGUF block
// bytes (kernels/ref/gguf_quantize.h) and block bytes back to float32 with eli's reference
// dequantizers (kernels/ref/dequant_ref.h). Rows are spread over a ThreadPool; the GIL is released
// while the numbers are computed. Type names are ggml's, lower case ("q4_k", "f16").
//
// Invariants: inputs are 2-D C-contiguous CPU arrays; a row length that is not a multiple of the
// type's block size, an unknown type, a byte row of the wrong size or a non-finite value raises
// ValueError (eli::Error kInvalidArgument); the returned arrays own their memory. gguf_quantize's
// optional imatrix (cols,) weights the squared error per column (kernels/ref/gguf_quantize.h).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eli/dtype.h"
#include "eli/error.h"
#include "kernels/ref/dequant_ref.h"
#include "kernels/ref/gguf_quantize.h"
#include "runtime/core/thread_pool.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace eli {
namespace {

using F32In = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using U8In = nb::ndarray<const uint8_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using F32Vec = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

// F32, F16, BF16 or one of the 12 GGUF block types eli reads, by ggml's name (any case).
DType gguf_type_from_name(const std::string& name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16})
    if (lower == dtype_name(t)) return t;
  for (DType t : kGgufBlockTypes)
    if (lower == dtype_name(t)) return t;
  ELI_THROW(kInvalidArgument, "unknown GGUF tensor type '", name, "'");
}

// A pool for a large job (none for a small one: thread start-up would dominate).
std::unique_ptr<ThreadPool> pool_for(int64_t elements, int n_threads) {
  if (n_threads == 1 || elements < (int64_t{1} << 16)) return nullptr;
  return std::make_unique<ThreadPool>(n_threads);
}

template <typename T>
nb::ndarray<nb::numpy, T, nb::ndim<2>> owned_matrix(std::unique_ptr<std::vector<T>> data, size_t rows, size_t cols) {
  T* ptr = data->data();
  nb::capsule owner(data.release(), [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T, nb::ndim<2>>(ptr, {rows, cols}, owner);
}

nb::ndarray<nb::numpy, uint8_t, nb::ndim<2>> gguf_quantize(const std::string& qtype, F32In x, bool search,
                                                            int n_threads, std::optional<F32Vec> imatrix) {
  const DType t = gguf_type_from_name(qtype);
  ELI_CHECK_ARG(gguf_quantize_supported(t), "GGUF quantization to ", dtype_name(t),
                " is not supported (supported: q8_0, q4_0, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs)");
  const DTypeInfo& info = dtype_info(t);
  const auto rows = static_cast<int64_t>(x.shape(0)), cols = static_cast<int64_t>(x.shape(1));
  ELI_CHECK_ARG(cols > 0 && cols % info.block_elems == 0, dtype_name(t), ": row length ", cols,
                " is not a positive multiple of the block size ", info.block_elems);
  ELI_CHECK_ARG(!imatrix || static_cast<int64_t>(imatrix->shape(0)) == cols, "imatrix: ", cols,
                " column weights expected, got ", imatrix ? static_cast<int64_t>(imatrix->shape(0)) : 0);
  const int64_t row_bytes = cols / info.block_elems * info.block_bytes;
  auto out = std::make_unique<std::vector<uint8_t>>(static_cast<size_t>(rows * row_bytes));
  {
    nb::gil_scoped_release release;
    std::unique_ptr<ThreadPool> pool = pool_for(rows * cols, n_threads);
    quantize_matrix_gguf(t, x.data(), rows, cols, out->data(), pool.get(), search,
                         imatrix ? imatrix->data() : nullptr);
  }
  return owned_matrix(std::move(out), static_cast<size_t>(rows), static_cast<size_t>(row_bytes));
}

nb::ndarray<nb::numpy, float, nb::ndim<2>> gguf_dequantize(const std::string& qtype, U8In data, int64_t cols,
                                                            int n_threads) {
  const DType t = gguf_type_from_name(qtype);
  const DTypeInfo& info = dtype_info(t);
  ELI_CHECK_ARG(cols > 0 && cols % info.block_elems == 0, dtype_name(t), ": row length ", cols,
                " is not a positive multiple of the block size ", info.block_elems);
  const int64_t rows = static_cast<int64_t>(data.shape(0));
  const int64_t row_bytes = cols / info.block_elems * info.block_bytes;
  ELI_CHECK_ARG(static_cast<int64_t>(data.shape(1)) == row_bytes, dtype_name(t), ": a row of ", cols,
                " values takes ", row_bytes, " bytes, got rows of ", data.shape(1));
  auto out = std::make_unique<std::vector<float>>(static_cast<size_t>(rows * cols));
  {
    nb::gil_scoped_release release;
    std::unique_ptr<ThreadPool> pool = pool_for(rows * cols, n_threads);
    const uint8_t* in = data.data();
    float* o = out->data();
    parallel_for(pool.get(), rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) dequant_row_ref(t, in + r * row_bytes, o + r * cols, cols);
    }, std::max<int64_t>(1, 16384 / cols));
  }
  return owned_matrix(std::move(out), static_cast<size_t>(rows), static_cast<size_t>(cols));
}

}  // namespace

void bind_gguf_quantize(nb::module_& m) {
  m.def("gguf_quantize", &gguf_quantize, "qtype"_a, "x"_a, "search"_a = true, "n_threads"_a = 0,
        "imatrix"_a = nb::none(),
        "Quantizes a float32 (rows, cols) matrix to GGUF blocks of qtype (q8_0, q4_0, q5_0, q5_1, q2_k, q3_k, "
        "q4_k, q5_k, q6_k, iq4_nl, iq4_xs); returns uint8 (rows, row_bytes). search=False: plain max-abs scaling. imatrix: "
        "float32 (cols,) importance weights (mean x_j^2 over calibration rows) weighting the squared error.");
  m.def("gguf_dequantize", &gguf_dequantize, "qtype"_a, "data"_a, "cols"_a, "n_threads"_a = 0,
        "eli's reference dequantization of uint8 (rows, row_bytes) GGUF rows of qtype (any type eli "
        "reads, f32/f16/bf16 included) to float32 (rows, cols).");
}

}  // namespace eli
