// runtime/quantize/awq.h: AWQ's activation-aware scale search (Lin et al., 2023), written from the
// paper's description: input channel j of a weight is multiplied by s_j before quantization and the
// input by 1 / s_j (folded into the op that produces it), so channels with large activations keep
// more precision. s = mean|x|^alpha (clamped below at 1e-4), normalised by sqrt(max s * min s);
// alpha runs over {0, 1/grid, ..., (grid - 1)/grid} and the alpha whose RTN result
// deq(quant(W diag(s))) diag(s)^-1 has the smallest output error on the calibration inputs
// (output_error with H, int_quant.h) wins. alpha = 0 is plain RTN (s = 1), so the chosen error is
// never above RTN's.
//
// Invariants: throws eli::Error(kInvalidArgument) for bad specs or shapes; inputs are not modified.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/quantize/int_quant.h"

namespace eli {

class ThreadPool;

struct AwqSearchResult {
  std::vector<float> scales;  // (k) s_j (all 1 for alpha 0)
  double alpha = 0.0;
  double error = 0.0;         // output error of the chosen alpha
  double rtn_error = 0.0;     // alpha = 0
};

// x_abs_mean: (k) mean |x_j| over the calibration rows; H: (k, k) sum of x x^T.
AwqSearchResult awq_search(const float* w, int64_t n, int64_t k, const float* x_abs_mean, const float* H,
                           const IntQuantSpec& spec, int grid = 20, ThreadPool* pool = nullptr);

}  // namespace eli
