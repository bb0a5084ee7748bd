// runtime/model/linear_observer.h: an optional hook that sees the input rows of every linear
// product of a CPU forward (calibration for weight quantization: runtime/quantize/calibration.h).
//
// ForwardContext::linear() calls the observer installed on the calling thread, before the product,
// with the weight and the product's input exactly as the method receives it (un-normalised rows
// plus the RMSNorm prologue's weight when one is fused). Only CPU forwards call it: their input
// pointers are host memory and the forward runs eagerly on the calling thread.
//
// Invariants: no observer (the default) costs one thread-local load per linear; the observer must
// not keep the pointers past the call; ScopedLinearObserver restores the previous one.
#pragma once

#include <cstdint>

#include "runtime/model/linear_method.h"

namespace eli {

class LinearObserver {
 public:
  virtual ~LinearObserver() = default;
  // m rows of `in` (host memory) are about to be multiplied by `w`.
  virtual void observe(const LinearWeight& w, int64_t m, const LinearInput& in) = 0;
};

// The calling thread's observer, or nullptr.
LinearObserver* linear_observer();

// Installs `obs` on the calling thread for its lifetime.
class ScopedLinearObserver {
 public:
  explicit ScopedLinearObserver(LinearObserver* obs);
  ~ScopedLinearObserver();
  ScopedLinearObserver(const ScopedLinearObserver&) = delete;
  ScopedLinearObserver& operator=(const ScopedLinearObserver&) = delete;

 private:
  LinearObserver* prev_;
};

}  // namespace eli
