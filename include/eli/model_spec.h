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

enum class RopeScaling { kNone, kLinear, kDynamic, kLlama3, kYarn, kLongRope };

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
  // LongRoPE (Phi-3 "longrope" / "su"): per-pair frequency divisors (rot_dim / 2 each), the short
  // ones while the sequence (last position + 1) is <= original_max_position, the long ones beyond;
  // attention_factor scales cos/sin (0: sqrt(1 + ln(factor) / ln(original_max_position))).
  std::vector<float> short_factors, long_factors;
};

struct ModelSpec {
  std::string architecture;      // "llama", "mistral", "qwen2", "qwen3", "phi3", "gemma3"
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
  // Per-layer windows (Gemma 3's interleaved sliding / global layers): empty means every layer
  // uses sliding_window; otherwise n_layers entries, 0 for a global (full attention) layer.
  std::vector<int64_t> layer_sliding_windows;
  // RoPE of the sliding-window layers when it differs from `rope` (Gemma 3's local base).
  bool has_local_rope = false;
  RopeSpec local_rope;
  std::string hidden_act = "silu";   // gated MLP activation: "silu" or "gelu_pytorch_tanh"
  double query_pre_attn_scalar = 0;  // softmax scale = query_pre_attn_scalar^-0.5 (0: head_dim)
  double norm_weight_offset = 0;     // added to every RMSNorm weight at load (Gemma HF stores w of x*(1+w))
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
};

}  // namespace eli
