// kernels/cpu/wq_generic.cc: the portable inner loops of the quantized-weight kernels (wq_isa.h);
// plain loops with several accumulators the compiler can vectorize.
#include "kernels/cpu/wq_isa.h"

namespace eli {
namespace {

float dot_u4(const uint8_t* q, const float* x, int64_t n_chunks, float z) {
  float acc[16] = {};
  for (int64_t c = 0; c < n_chunks; ++c) {
    const uint8_t* b = q + 16 * c;
    const float* xc = x + 32 * c;
    for (int i = 0; i < 16; ++i) {
      acc[i] += xc[i] * (static_cast<float>(b[i] & 15) - z) + xc[16 + i] * (static_cast<float>(b[i] >> 4) - z);
    }
  }
  float s = 0.0f;
  for (float v : acc) s += v;
  return s;
}

float dot_u8(const uint8_t* q, const float* x, int64_t n, float z) {
  float acc[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int i = 0; i < 8; ++i) acc[i] += x[j + i] * (static_cast<float>(q[j + i]) - z);
  }
  float s = 0.0f;
  for (float v : acc) s += v;
  for (; j < n; ++j) s += x[j] * (static_cast<float>(q[j]) - z);
  return s;
}

int32_t dot_i8(const int8_t* a, const int8_t* b, int64_t n) {
  int32_t s = 0;
  for (int64_t j = 0; j < n; ++j) s += static_cast<int32_t>(a[j]) * b[j];
  return s;
}

float dot_fp8(const uint8_t* q, const float* x, int64_t n, const float* table) {
  float acc[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int i = 0; i < 8; ++i) acc[i] += x[j + i] * table[q[j + i]];
  }
  float s = 0.0f;
  for (float v : acc) s += v;
  for (; j < n; ++j) s += x[j] * table[q[j]];
  return s;
}

}  // namespace

const WqIsa& wq_isa_generic() {
  static const WqIsa kIsa{"generic", dot_u4, dot_u8, dot_i8, dot_fp8};
  return kIsa;
}

}  // namespace eli
