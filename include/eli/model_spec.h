// eli/model_spec.h: one normalised description of a decoder-only transformer, whatever file it
// came from (HF config.json or GGUF metadata).
//
// Invariants (checked by validate_model_spec in runtime/model): every count > 0 and under hard
// caps; n_heads % n_kv_heads == 0; head_dim * n_heads need not equal hidden (Qwen3); rope scaling
// factors finite and > 0. Per-architecture differences are the flags below, not separate models.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace eli {

enum class RopeScaling { kNone, kLinear, kDynamic, kLlama3, kYarn };

struct RopeSpec {
  double theta = 10000.0;
  RopeScaling scaling = RopeScaling::kNone;
  double factor = 1.0;                          // linear / dynamic / llama3 / yarn
  double low_freq_factor = 1.0;                 // llama3
  double high_freq_factor = 4.0;                // llama3
  int64_t original_max_position = 0;            // llama3 / yarn / dynamic (0: use max_position)
  double beta_fast = 32.0;                      // yarn
  double beta_slow = 1.0;                       // yarn
  double attention_factor = 0.0;                // yarn mscale (0: derived from factor)
  double partial_rotary_factor = 1.0;           // fraction of head_dim that rotates
  bool truncate = true;                         // yarn: floor/ceil the correction range
  // Per-pair frequency divisors (rot_dim / 2), as llama.cpp's converter stores Llama-3 RoPE
  // scaling in GGUF (tensor rope_freqs.weight) instead of metadata. Empty: none. Otherwise every
  // value is finite and > 0 and, after the scaling above, inv_freq[i] /= freq_divisors[i] (the
  // order does not matter for none/linear/yarn; llama.cpp applies it the same way).
  std::vector<float> freq_divisors;
};

struct ModelSpec {
  std::string architecture;      // "llama", "mistral", "qwen2", "qwen3"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position = 0;      // max_position_embeddings
  double rms_norm_eps = 1e-6;
  RopeSpec rope;
  bool tie_word_embeddings = false;
  bool attention_bias = false;   // q/k/v projections carry a bias (Qwen2)
  bool attention_out_bias = false;
  bool mlp_bias = false;
  bool qk_norm = false;          // per-head RMSNorm on q and k before RoPE (Qwen3)
  int64_t sliding_window = 0;    // 0: full attention
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
};

}  // namespace eli
