// tests/cpp/wq_test_util.h: the grouped-integer weight view (kernels/wq_matrix.h) of host arrays,
// shared by the W4A16 / W8A16 kernel tests (tests/cpp/test_cuda_wq_kernels.cc) and their host
// emulation (tests/cpp/test_wq_cuda_host.cc). The arrays must outlive the view.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/wq_matrix.h"

namespace eli {

// bits 4 or 8; packed codes (wq_matrix.h's layout), per-group scales and zeros, an optional
// act-order permutation (empty: none).
inline WqMatrix grouped_view(int bits, const std::vector<uint8_t>& packed, const std::vector<float>& scales,
                             const std::vector<float>& zeros, int64_t gs, const std::vector<int32_t>& perm = {}) {
  WqMatrix w;
  w.q = packed.data();
  w.scales = scales.data();
  w.zeros = zeros.data();
  w.group_size = gs;
  w.format = bits == 4 ? WeightFormat::kInt4Grouped : WeightFormat::kInt8Grouped;
  w.perm = perm.empty() ? nullptr : perm.data();
  return w;
}

}  // namespace eli
