// kernels/ref/activation.h: the gated-MLP activations (GatedAct) as plain formulas, shared by the
// references and the CPU kernels so that both compute the same thing. CUDA kernels write the same
// formulas in f32 (kernels/cuda/mixed_elementwise.cu, gemv.cu).
//   silu(g)      = g / (1 + exp(-g))
//   gelu_tanh(g) = 0.5 g (1 + tanh(sqrt(2 / pi) (g + 0.044715 g^3)))   (PyTorch's approximate="tanh")
#pragma once

#include <cmath>

#include "kernels/ops.h"

namespace eli {

template <typename T>
inline T act_silu(T g) {
  return g / (T(1) + std::exp(-g));
}
template <typename T>
inline T act_gelu_tanh(T g) {
  const T k = T(0.7978845608028654);  // sqrt(2 / pi)
  return T(0.5) * g * (T(1) + std::tanh(k * (g + T(0.044715) * g * g * g)));
}
// act(g) for a gating activation (kSilu or kGeluTanh).
template <typename T>
inline T gated_act_value(GatedAct act, T g) {
  return act == GatedAct::kGeluTanh ? act_gelu_tanh(g) : act_silu(g);
}

}  // namespace eli
