// runtime/parallel/micro_batch.h: a step's Batch split into micro-batches of whole sequences, so
// that pipeline stages overlap: stage s runs micro-batch m while stage s + 1 runs m - 1 (each
// rank walks the micro-batches in order; sends never wait, so a stage goes on as soon as it has
// sent). A micro-batch's logits rows are a contiguous range of the step's (logits_indices
// ascending, as the engine builds them); otherwise the step stays one micro-batch.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/runner/batch.h"

namespace eli {

struct MicroBatch {
  Batch batch;
  int64_t first_logit = 0;  // index of its first logits row in the step's
};

// At most `parts` micro-batches of consecutive sequences, as even as possible in tokens; one (the
// batch itself) when parts <= 1, the batch has one sequence, or its logits rows are not ascending.
std::vector<MicroBatch> split_micro_batches(const Batch& batch, int parts);

}  // namespace eli
