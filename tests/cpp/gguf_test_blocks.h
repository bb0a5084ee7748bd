// tests/cpp/gguf_test_blocks.h: random GGUF weight rows for the block-decoder tests (host) and the
// CUDA GGUF kernel tests: every byte random except the fp16 scale fields, which get finite values
// of a realistic size (so products stay far from f16/f32 limits), and the x-side 8-bit block
// quantization the CUDA GEMV applies (kernels/cuda/gguf_quantize_x.cu), written again here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "eli/dtype.h"
#include "runtime/core/float_convert.h"

namespace eli {
namespace gguf_test {

// The 12 block types with native CUDA kernels, in the priority order.
inline const std::vector<DType>& block_types() {
  static const std::vector<DType> v = {DType::kQ4_K, DType::kQ6_K,  DType::kQ8_0,   DType::kQ4_0,
                                       DType::kQ5_K, DType::kQ4_1,  DType::kQ5_0,   DType::kQ5_1,
                                       DType::kQ2_K, DType::kQ3_K,  DType::kIQ4_NL, DType::kIQ4_XS};
  return v;
}

// Byte offsets of the fp16 fields of a block (d, and dmin / m where the type has one).
inline std::vector<int> f16_fields(DType t) {
  switch (t) {
    case DType::kQ4_1: case DType::kQ5_1: case DType::kQ4_K: case DType::kQ5_K: return {0, 2};
    case DType::kQ6_K: return {208};
    case DType::kQ2_K: return {80, 82};
    case DType::kQ3_K: return {108};
    default: return {0};  // Q8_0, Q4_0, Q5_0, IQ4_NL, IQ4_XS
  }
}

// rows x k weights of type t (k a multiple of the block size), row-contiguous as in a GGUF file.
inline std::vector<uint8_t> random_rows(DType t, int64_t rows, int64_t k, std::mt19937& rng) {
  const DTypeInfo& info = dtype_info(t);
  const int64_t n_blocks = rows * (k / info.block_elems);
  std::vector<uint8_t> buf(static_cast<size_t>(n_blocks * info.block_bytes));
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : buf) b = static_cast<uint8_t>(byte(rng));
  // Scales: |d| in [2^-10, 2^-5]; the second field (dmin / m) likewise, either sign for m.
  std::uniform_real_distribution<float> mag(-10.f, -5.f);
  std::bernoulli_distribution neg(0.5);
  const std::vector<int> fields = f16_fields(t);
  for (int64_t b = 0; b < n_blocks; ++b) {
    for (int off : fields) {
      float v = std::exp2(mag(rng));
      if (neg(rng)) v = -v;
      const uint16_t h = f32_to_f16(v);
      std::memcpy(&buf[static_cast<size_t>(b * info.block_bytes + off)], &h, 2);
    }
  }
  return buf;
}

// One 32-block of x as the CUDA prologue quantizes it: d = max|v| / 127, q = round(v / d).
struct Q8Block {
  int8_t q[32];
  float d, s;  // s = d * sum(q)
};
inline Q8Block quantize_block(const float* v) {
  float amax = 0.f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[j]));
  Q8Block b;
  b.d = amax / 127.f;
  const float id = amax > 0.f ? 127.f / amax : 0.f;
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    const int q = std::max(-127, std::min(127, static_cast<int>(std::nearbyint(v[j] * id))));
    b.q[j] = static_cast<int8_t>(q);
    sum += q;
  }
  b.s = b.d * static_cast<float>(sum);
  return b;
}

}  // namespace gguf_test
}  // namespace eli
