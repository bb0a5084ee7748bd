// kernels/ref/elementwise_ref.cc: reference Embedding, RmsNorm, Rope and Swiglu (see
// ref_kernels.h for the semantics). Plain loops, double accumulation.
#include <cmath>

#include "eli/error.h"
#include "kernels/ref/ref_kernels.h"

namespace eli {

namespace {

template <typename Load>
void embedding_ref(const EmbeddingArgs& a, Load load) {
  ELI_CHECK(a.vocab > 0 && a.hidden >= 0 && a.n_tokens >= 0, "embedding: bad sizes");
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    int64_t id = a.ids[t];
    if (id < 0) id = 0;
    if (id >= a.vocab) id = a.vocab - 1;
    for (int64_t j = 0; j < a.hidden; ++j) a.out[t * a.hidden + j] = load(id * a.hidden + j);
  }
}

}  // namespace

void embedding_ref_f32(const void* args, const ExecContext&) {
  const auto& a = *static_cast<const EmbeddingArgs*>(args);
  const float* table = static_cast<const float*>(a.table);
  embedding_ref(a, [&](int64_t i) { return table[i]; });
}

void embedding_ref_bf16(const void* args, const ExecContext&) {
  const auto& a = *static_cast<const EmbeddingArgs*>(args);
  const uint16_t* table = static_cast<const uint16_t*>(a.table);
  embedding_ref(a, [&](int64_t i) { return bf16_to_f32(table[i]); });
}

void embedding_ref_f16(const void* args, const ExecContext&) {
  const auto& a = *static_cast<const EmbeddingArgs*>(args);
  const uint16_t* table = static_cast<const uint16_t*>(a.table);
  embedding_ref(a, [&](int64_t i) { return f16_to_f32(table[i]); });
}

void rms_norm_ref(const void* args, const ExecContext&) {
  const auto& a = *static_cast<const RmsNormArgs*>(args);
  ELI_CHECK(a.hidden > 0 && a.rows >= 0, "rms_norm: bad sizes");
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* x = a.x + r * a.x_stride;
    float* out = a.out + r * a.out_stride;
    const float* src = x;
    if (a.residual != nullptr) {
      float* res = a.residual + r * a.hidden;
      for (int64_t j = 0; j < a.hidden; ++j) res[j] += x[j];
      src = res;
    }
    double ss = 0.0;
    for (int64_t j = 0; j < a.hidden; ++j) ss += static_cast<double>(src[j]) * src[j];
    double inv = 1.0 / std::sqrt(ss / static_cast<double>(a.hidden) + static_cast<double>(a.eps));
    for (int64_t j = 0; j < a.hidden; ++j) {
      double w = static_cast<double>(a.weight[j]) + a.weight_offset;
      out[j] = static_cast<float>(src[j] * inv * w);
    }
  }
}

void rope_ref(const void* args, const ExecContext&) {
  const auto& a = *static_cast<const RopeArgs*>(args);
  ELI_CHECK(a.rot_dim >= 0 && a.rot_dim % 2 == 0 && a.rot_dim <= a.head_dim, "rope: bad rot_dim ",
            a.rot_dim, " for head_dim ", a.head_dim);
  const int64_t half = a.rot_dim / 2;
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    const int64_t table = a.table_of_token != nullptr ? a.table_of_token[t] : 0;
    const float* inv_freq = a.inv_freq + table * half;
    const float pos = static_cast<float>(a.positions[t]);
    for (int64_t h = 0; h < a.n_heads; ++h) {
      float* x = a.x + t * a.row_stride + h * a.head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float angle = pos * inv_freq[i];  // f32 product, as HF transformers
        const double c = std::cos(static_cast<double>(angle)) * a.attention_scaling;
        const double s = std::sin(static_cast<double>(angle)) * a.attention_scaling;
        const double x1 = x[i], x2 = x[i + half];
        x[i] = static_cast<float>(x1 * c - x2 * s);
        x[i + half] = static_cast<float>(x2 * c + x1 * s);
      }
    }
  }
}

void swiglu_ref(const void* args, const ExecContext&) {
  const auto& a = *static_cast<const SwigluArgs*>(args);
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* gate = a.gate_up + r * a.in_stride;
    const float* up = gate + a.inter;
    float* out = a.out + r * a.out_stride;
    for (int64_t j = 0; j < a.inter; ++j) {
      const double g = gate[j];
      out[j] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[j]);
    }
  }
}

}  // namespace eli
