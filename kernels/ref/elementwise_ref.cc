// kernels/ref/elementwise_ref.cc: reference Embedding and the RMSNorm / RoPE building blocks of
// the other references (see ref_kernels.h for the semantics). Plain loops, double accumulation.
#include <cmath>

#include "eli/error.h"
#include "kernels/ref/ref_kernels.h"

namespace eli {

namespace {

template <typename Load>
void embedding_ref(const EmbeddingArgs& a, Load load) {
  ELI_CHECK(a.vocab > 0 && a.hidden >= 0 && a.n_tokens >= 0, "embedding: bad sizes");
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    int64_t id = static_cast<int64_t>(a.ids[t]) - a.row_offset;
    if (a.zero_outside && (id < 0 || id >= a.vocab)) {  // another rank's row
      for (int64_t j = 0; j < a.hidden; ++j) a.out[t * a.hidden + j] = 0.0f;
      continue;
    }
    if (id < 0) id = 0;
    if (id >= a.vocab) id = a.vocab - 1;
    for (int64_t j = 0; j < a.hidden; ++j) a.out[t * a.hidden + j] = load(id * a.hidden + j) * a.scale;
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

void ref_rms_norm_rows(float* out, const float* x, const float* weight, int64_t rows, int64_t hidden,
                       int64_t out_stride, int64_t x_stride, float eps, float weight_offset) {
  ELI_CHECK(hidden > 0 && rows >= 0, "rms_norm: bad sizes");
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + r * x_stride;
    double ss = 0.0;
    for (int64_t j = 0; j < hidden; ++j) ss += static_cast<double>(src[j]) * src[j];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(hidden) + static_cast<double>(eps));
    float* dst = out + r * out_stride;
    for (int64_t j = 0; j < hidden; ++j) {
      const double w = static_cast<double>(weight[j]) + weight_offset;
      dst[j] = static_cast<float>(src[j] * inv * w);
    }
  }
}

void ref_rope_rows(float* x, const int32_t* positions, const float* inv_freq_all, const int32_t* table_of_token,
                   int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rot_dim, int64_t row_stride,
                   float attention_scaling) {
  ELI_CHECK(rot_dim >= 0 && rot_dim % 2 == 0 && rot_dim <= head_dim, "rope: bad rot_dim ", rot_dim,
            " for head_dim ", head_dim);
  const int64_t half = rot_dim / 2;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t table = table_of_token != nullptr ? table_of_token[t] : 0;
    const float* inv_freq = inv_freq_all + table * half;
    const float pos = static_cast<float>(positions[t]);
    for (int64_t h = 0; h < n_heads; ++h) {
      float* p = x + t * row_stride + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float angle = pos * inv_freq[i];  // f32 product, as HF transformers
        const double c = std::cos(static_cast<double>(angle)) * attention_scaling;
        const double s = std::sin(static_cast<double>(angle)) * attention_scaling;
        const double x1 = p[i], x2 = p[i + half];
        p[i] = static_cast<float>(x1 * c - x2 * s);
        p[i + half] = static_cast<float>(x2 * c + x1 * s);
      }
    }
  }
}

}  // namespace eli
