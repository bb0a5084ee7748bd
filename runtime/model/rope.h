// runtime/model/rope.h: RoPE inverse frequencies for every scaling a ModelSpec can carry, with
// the semantics of Hugging Face transformers (modeling_rope_utils), which is our oracle.
//
// Invariants: inv_freq has rot_dim / 2 entries, rot_dim = int(head_dim * partial_rotary_factor),
// rounded down to even. Only `dynamic` depends on the sequence length (seq_len = last position + 1
// of the sequence in this step); the others are fixed, so rope_is_dynamic() tells the model
// whether to build a table per sequence.
#pragma once

#include <cstdint>
#include <vector>

#include "eli/model_spec.h"

namespace eli {

struct RopeTable {
  std::vector<float> inv_freq;  // (rot_dim / 2)
  float attention_scaling = 1.0f;
};

int64_t rope_rot_dim(const ModelSpec& spec);
bool rope_is_dynamic(const ModelSpec& spec);
// seq_len matters only for dynamic scaling (ignored otherwise).
RopeTable compute_rope_table(const ModelSpec& spec, int64_t seq_len = 0);

}  // namespace eli
