// runtime/quantize/gptq.h: GPTQ (Frantar et al., 2022): integer quantization of a (n, k) weight
// that compensates each column's rounding error on the columns not yet quantized, weighted by the
// inverse of the calibration inputs' second moment H = sum_t x_t x_t^T.
//
// Algorithm (written from the paper's description):
//   1. dead inputs (H_jj = 0) get H_jj = 1 and weight 0; H += damp * mean(diag H) * I;
//   2. act_order: columns are visited by decreasing H_jj (stable), else in order;
//   3. U = the upper Cholesky factor of H^-1 (H^-1 = U^T U), in visiting order (double precision);
//   4. per row (rows are independent), per block of block_size columns, per column i: at a group's
//      first column its grid (int_quant.h) is taken from the row's current values of the group's
//      columns; q_i = quant(w_i); e = (w_i - deq(q_i)) / U_ii; w_j -= e U_ij for the block's later
//      columns j, and after the block for every column past it (the lazy batch update).
// With act_order the groups are runs of group_size columns in visiting order; g_idx maps each
// original column to its group (the GPTQ checkpoint's g_idx). With an identity H (up to scale)
// U is diagonal, no error is propagated, and the result equals RTN.
//
// Invariants: throws eli::Error(kInvalidArgument) for bad specs or shapes, and when H is not
// positive definite after damping (naming `name`); the input matrices are not modified.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/quantize/int_quant.h"

namespace eli {

class ThreadPool;

struct GptqOptions {
  double damp = 0.01;        // fraction of mean(diag H) added to the diagonal
  int64_t block_size = 128;  // columns per lazy update
  bool act_order = false;
};

IntQuantResult quantize_gptq(const float* w, int64_t n, int64_t k, const float* H, const IntQuantSpec& spec,
                             const GptqOptions& opt, const std::string& name = "weight", ThreadPool* pool = nullptr);

}  // namespace eli
