// kernels/ref/matmul_ref.cc: reference Matmul, out[m, n] (+)= x[m, :] . w[n, :] + bias[n], with
// f32 or bf16 weights, accumulated in double.
#include "eli/error.h"
#include "kernels/ref/ref_kernels.h"

namespace eli {

namespace {

template <typename Load>
void matmul_ref(const MatmulArgs& a, Load load_w) {
  ELI_CHECK(a.m >= 0 && a.n >= 0 && a.k >= 0, "matmul: bad sizes");
  for (int64_t i = 0; i < a.m; ++i) {
    const float* x = a.x + i * a.x_stride;
    float* out = a.out + i * a.out_stride;
    for (int64_t j = 0; j < a.n; ++j) {
      double acc = a.bias != nullptr ? a.bias[j] : 0.0;
      for (int64_t p = 0; p < a.k; ++p) acc += static_cast<double>(x[p]) * load_w(j * a.k + p);
      if (a.accumulate) acc += out[j];
      out[j] = static_cast<float>(acc);
    }
  }
}

}  // namespace

void matmul_ref_f32(const void* args, const ExecContext&) {
  const auto& a = *static_cast<const MatmulArgs*>(args);
  const float* w = static_cast<const float*>(a.w);
  matmul_ref(a, [&](int64_t i) { return static_cast<double>(w[i]); });
}

void matmul_ref_bf16(const void* args, const ExecContext&) {
  const auto& a = *static_cast<const MatmulArgs*>(args);
  const uint16_t* w = static_cast<const uint16_t*>(a.w);
  matmul_ref(a, [&](int64_t i) { return static_cast<double>(bf16_to_f32(w[i])); });
}

}  // namespace eli
