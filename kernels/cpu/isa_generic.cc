// kernels/cpu/isa_generic.cc: portable scalar versions of the CPU inner loops (see cpu_isa.h).
// Used by the "generic" CPU variants (threaded, no explicit SIMD) on any machine; the compiler may
// still vectorize them with the baseline ISA.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/cpu_isa.h"

namespace eli {

namespace {

constexpr int kTileM = 4;
constexpr int kTileN = 4;

inline float w_value(const float* p) { return *p; }
inline float w_value(const uint16_t* p) {
  uint32_t u = static_cast<uint32_t>(*p) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <typename W>
void tile_impl(const float* a, int64_t lda, const W* b, int64_t ldb, int64_t k, float* c,
               int64_t ldc, int mr, int nr) {
  float acc[kTileM][kTileN] = {};
  for (int64_t p = 0; p < k; ++p) {
    for (int i = 0; i < mr; ++i) {
      const float av = a[i * lda + p];
      for (int j = 0; j < nr; ++j) acc[i][j] += av * w_value(b + j * ldb + p);
    }
  }
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) c[i * ldc + j] += acc[i][j];
}

void tile_f32(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t k, float* c,
              int64_t ldc, int mr, int nr) {
  tile_impl(a, lda, b, ldb, k, c, ldc, mr, nr);
}
void tile_bf16(const float* a, int64_t lda, const uint16_t* b, int64_t ldb, int64_t k, float* c,
               int64_t ldc, int mr, int nr) {
  tile_impl(a, lda, b, ldb, k, c, ldc, mr, nr);
}

void bf16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = w_value(src + i);
}

void attention_row(const AttentionArgs& a, const int32_t* blocks, int64_t kv_head, const float* q,
                   float* out, int64_t lo, int64_t hi, float* scratch) {
  const int64_t hd = a.head_dim, bs = a.block_size;
  auto offset = [&](int64_t j) {
    const int64_t slot = static_cast<int64_t>(blocks[j / bs]) * bs + j % bs;
    return (slot * a.n_kv_heads + kv_head) * hd;
  };
  const int64_t n = hi - lo + 1;
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    const float* k = static_cast<const float*>(a.k_cache) + offset(lo + j);
    float s = 0.0f;
    for (int64_t d = 0; d < hd; ++d) s += q[d] * k[d];
    scratch[j] = s * a.scale;
    mx = scratch[j] > mx ? scratch[j] : mx;
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    scratch[j] = std::exp(scratch[j] - mx);
    sum += scratch[j];
  }
  for (int64_t d = 0; d < hd; ++d) out[d] = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    const float* v = static_cast<const float*>(a.v_cache) + offset(lo + j);
    for (int64_t d = 0; d < hd; ++d) out[d] += scratch[j] * v[d];
  }
  const float inv = 1.0f / sum;
  for (int64_t d = 0; d < hd; ++d) out[d] *= inv;
}

double sum_sq(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

void scale_mul(float* out, const float* x, const float* w, float offset, float inv_rms, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv_rms * (w[i] + offset);
}

void add_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void swiglu_row(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void rope_row(float* x, const float* cos, const float* sin, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] - b * sin[i];
    x[i + half] = b * cos[i] + a * sin[i];
  }
}

}  // namespace

const CpuIsa& cpu_isa_generic() {
  static const CpuIsa kIsa = {"generic",   tile_f32,  tile_bf16, kTileM,      kTileN,
                              bf16_to_f32, attention_row, sum_sq, scale_mul, add_inplace,
                              swiglu_row,  rope_row,  0,         nullptr,
                              nullptr,     nullptr};
  return kIsa;
}

}  // namespace eli
