// runtime/core/tensor_view.h: the one non-owning tensor view (DLPack-compatible in spirit), internal.
//
// Invariants: trivially copyable; shape and strides are in elements (for block-quantized dtypes,
// the innermost dimension counts elements and must be contiguous); at most kMaxDims dims; dims
// beyond ndim are 1 with stride 0. The view never frees its data.
#pragma once

#include <cstdint>

#include "eli/device.h"
#include "eli/dtype.h"

namespace eli {

constexpr int kMaxDims = 4;

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  DeviceId device{};
  int ndim = 0;
  int64_t shape[kMaxDims] = {1, 1, 1, 1};
  int64_t strides[kMaxDims] = {0, 0, 0, 0};

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  bool is_contiguous() const {
    int64_t expect = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != expect) return false;
      expect *= shape[i];
    }
    return true;
  }
  template <typename T>
  T* ptr() const { return static_cast<T*>(data); }
};

// Contiguous view of `data` with the given shape (row-major strides).
TensorView make_view(void* data, DType dtype, DeviceId device, int ndim, const int64_t* shape);
inline TensorView make_view_1d(void* data, DType dtype, DeviceId device, int64_t n) {
  return make_view(data, dtype, device, 1, &n);
}
inline TensorView make_view_2d(void* data, DType dtype, DeviceId device, int64_t rows, int64_t cols) {
  int64_t s[2] = {rows, cols};
  return make_view(data, dtype, device, 2, s);
}

}  // namespace eli
