// kernels/wq_matrix.h: how the GEMV / GEMM kernels of eli's integer and FP8 weight layouts
// (WeightFormat kInt4Grouped, kInt8Grouped, kInt8Channel, kFp8Channel) see their weight.
//
// For those formats GemvArgs::w and GemmArgs::w point to a WqMatrix (not to the raw bytes); the
// values of element (r, c) of the logical (n, k) matrix are
//   kInt4Grouped  (q - zeros[r, g]) * scales[r, g], q in [0, 15], g = c / group_size
//   kInt8Grouped  (q - zeros[r, g]) * scales[r, g], q in [0, 255]
//   kInt8Channel  q * scales[r], q in [-127, 127]; x is quantized per row (token) to int8 with
//                 scale max|x| / 127 (round half to even), the product is an int32 dot product
//   kFp8Channel   e4m3(q) * scales[r]; x is quantized per row to e4m3 with scale max|x| / 448
//                 (round to nearest even, saturating)
// Layout of q: row-major (n rows). kInt4Grouped packs each 32 columns of a row into 16 bytes:
// byte i of the chunk holds column 32c + i in its low nibble and column 32c + 16 + i in its high
// nibble (a 16-byte load unpacks to 32 consecutive columns: low nibbles then high nibbles). A GPU
// kernel (Marlin-class) re-tiles this canonical layout once in its LinearMethod's repack for the
// device; the CPU kernels read it as is.
//
// Invariants: k % 32 == 0 for kInt4Grouped; group_size divides k and is a multiple of 32 (or == k);
// scales / zeros are (n, k / group_size) row-major f32 (channel formats: (n), zeros nullptr).
#pragma once

#include <cstdint>

#include "runtime/core/weight_format.h"

namespace eli {

struct WqMatrix {
  const void* q = nullptr;
  const float* scales = nullptr;
  const float* zeros = nullptr;
  int64_t group_size = 0;  // grouped formats; == k for one group per row
  WeightFormat format = WeightFormat::kInt4Grouped;
  // (k) input permutation of act-order checkpoints: stored column j multiplies x[perm[j]] (the
  // kernel gathers x once per call; groups are contiguous in the stored order). nullptr: identity.
  const int32_t* perm = nullptr;
  // W8A8 formats: a static per-tensor input scale (one f32) used for every row instead of the
  // dynamic per-token max|x| / 127 (or / 448). nullptr: dynamic.
  const float* act_scale = nullptr;
};

// Groups per row of a (., k) matrix in `m`'s format (1 for the channel formats).
inline int64_t wq_groups(const WqMatrix& m, int64_t k) {
  const bool grouped = m.format == WeightFormat::kInt4Grouped || m.format == WeightFormat::kInt8Grouped;
  return grouped && m.group_size > 0 ? k / m.group_size : 1;
}

}  // namespace eli
