// kernels/ref/sampling_ref.h: the reference of Op::kSample, row by row, with its intermediate sets
// exposed for tests (which tokens survive the filters). The contract is in kernels/sample_ops.h.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/sample_ops.h"

namespace eli {

// What one row's reference run decided, beyond the outputs it writes into the args.
struct SampleRefTrace {
  bool greedy = false;
  std::vector<int32_t> survivors;  // non-greedy: the ids that may be drawn, ascending
};

// Runs row `row` of `a` exactly as sample_ref does (writes its outputs, penalises its logits).
void sample_ref_row(const SampleArgs& a, int64_t row, SampleRefTrace* trace = nullptr);

}  // namespace eli
