// runtime/core/tensor.h: the owning tensor: a TensorView plus a shared buffer that keeps the
// memory alive (a device allocation, a memory-mapped file, or a host vector).
//
// Invariants: view().data points inside the buffer for as long as the Tensor (or a copy) lives.
#pragma once

#include <memory>
#include <vector>

#include "runtime/core/tensor_view.h"

namespace eli {

class Allocator;

class Tensor {
 public:
  Tensor() = default;
  Tensor(TensorView view, std::shared_ptr<void> owner) : view_(view), owner_(std::move(owner)) {}

  // Uninitialised contiguous tensor on `device`.
  static Tensor empty(Allocator& device, DType dtype, std::vector<int64_t> shape);
  // Host tensor backed by an aligned heap buffer.
  static Tensor host(DType dtype, std::vector<int64_t> shape);

  const TensorView& view() const { return view_; }
  bool defined() const { return view_.data != nullptr; }
  template <typename T>
  T* ptr() const { return static_cast<T*>(view_.data); }
  int64_t numel() const { return view_.numel(); }
  int64_t dim(int i) const { return view_.shape[i]; }
  uint64_t nbytes() const;

 private:
  TensorView view_{};
  std::shared_ptr<void> owner_;
};

}  // namespace eli
