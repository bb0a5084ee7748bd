// runtime/runner/step_masks.h: StepMasks, the token masks of a step's sampled rows as the samplers
// read them (the host Sampler and the DeviceSampler; kernels/sample_ops.h applies them). Built by
// the engine (runtime/engine/token_mask.h: constraints, allowed_token_ids, min_tokens).
// Invariants: bit (t % 32) of word t / 32 is token t; bits at t >= vocab are 0; row[r] indexes a
// mask in `bits` or is -1 (unmasked); row is empty when no row is masked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace eli {

struct StepMasks {
  int64_t words = 0;            // (vocab + 31) / 32
  std::vector<int32_t> row;     // (n_rows) index of the row's mask in `bits`, -1: unmasked
  std::vector<uint32_t> bits;   // (n_masks, words)
  bool any() const { return !bits.empty(); }
  const uint32_t* of(size_t r) const {
    return row.empty() || row[r] < 0 ? nullptr : bits.data() + static_cast<size_t>(row[r]) * static_cast<size_t>(words);
  }
};

}  // namespace eli
