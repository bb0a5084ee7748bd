// runtime/model/rope.h: RoPE inverse frequencies for every scaling a ModelSpec can carry, with
// the semantics of Hugging Face transformers (modeling_rope_utils), which is our oracle.
//
// Invariants: inv_freq has rot_dim / 2 entries, rot_dim = int(head_dim * partial_rotary_factor),
// rounded down to even. Only `dynamic` and `longrope` (short / long factors) depend on the sequence length (seq_len = last position + 1
// of the sequence in this step); the others are fixed, so rope_is_dynamic() tells the model
// whether to build a table per sequence. RopeSpec::freq_divisors (a GGUF's rope_freqs tensor),
// when present, divide the scaled frequencies: inv_freq[i] = scaled[i] / freq_divisors[i]; a
// Llama-3.x GGUF (scaling none + divisors) gives the same inv_freq as its HF checkpoint (scaling
// llama3) to float rounding.
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
// seq_len matters only for dynamic scaling (ignored otherwise). Throws kModelLoad when
// freq_divisors is non-empty but not rot_dim / 2 finite values > 0.
RopeTable compute_rope_table(const ModelSpec& spec, int64_t seq_len = 0);

}  // namespace eli
