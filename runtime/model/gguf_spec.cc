// runtime/model/gguf_spec.cc: ModelSpec from GGUF metadata (plus the rope_freqs.weight tensor,
// llama.cpp's form of Llama-3 RoPE scaling); GGUF -> HF tensor names; the inverse of llama.cpp's
// interleaved-RoPE row permutation.
#include "runtime/model/gguf_spec.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "eli/error.h"
#include "runtime/model/rope.h"

namespace eli {

namespace {

int64_t require_positive(const GgufFile& f, const std::string& key) {
  ELI_CHECK_KIND(kModelLoad, f.has(key), f.path(), ": GGUF missing required key '", key, "'");
  const int64_t v = f.get_int(key);
  ELI_CHECK_KIND(kModelLoad, v > 0, f.path(), ": GGUF key '", key, "' is ", v, ", must be > 0");
  return v;
}

int64_t optional_positive(const GgufFile& f, const std::string& key, int64_t fallback) {
  if (!f.has(key)) return fallback;
  return require_positive(f, key);
}

// llama.cpp's converter writes Llama-3 RoPE scaling as rope_freqs.weight: one f32 divisor per
// rotary pair (see RopeSpec::freq_divisors). Checked here so a bad file fails at open.
std::vector<float> read_rope_freqs(const GgufFile& f, const TensorInfo& t, int64_t rot_dim) {
  const std::string where = f.path() + ": GGUF tensor '" + t.name + "'";
  ELI_CHECK_KIND(kModelLoad, t.dtype == DType::kF32, where, " has dtype ", dtype_name(t.dtype),
                 ", must be F32");
  const int64_t want = rot_dim / 2;
  ELI_CHECK_KIND(kModelLoad, t.shape.size() == 1, where, " has ", t.shape.size(), " dims, must be 1-D");
  ELI_CHECK_KIND(kModelLoad, t.shape[0] == want, where, " has ", t.shape[0], " values, must have rot_dim / 2 = ",
                 want, " (one per rotary pair)");
  ELI_CHECK_KIND(kModelLoad, t.nbytes == static_cast<uint64_t>(want) * sizeof(float), where, " has ", t.nbytes,
                 " bytes, expected ", want * 4);
  std::vector<float> d(static_cast<size_t>(want));
  std::memcpy(d.data(), t.data, d.size() * sizeof(float));
  for (size_t i = 0; i < d.size(); ++i) {
    ELI_CHECK_KIND(kModelLoad, std::isfinite(d[i]) && d[i] > 0.0f, where, ": value [", i, "] = ", d[i],
                   " must be finite and > 0");
  }
  return d;
}

// Phi-3 LongRoPE as llama.cpp's converter writes it: rope_factors_short / rope_factors_long
// tensors (rot_dim / 2 f32 each), rope.scaling.original_context_length, rope.scaling.attn_factor.
void read_phi3_rope(const GgufFile& f, const std::string& p, ModelSpec* s) {
  const TensorInfo* lf = f.find("rope_factors_long.weight");
  const TensorInfo* sf = f.find("rope_factors_short.weight");
  if (lf == nullptr && sf == nullptr) return;
  ELI_CHECK_KIND(kModelLoad, lf != nullptr && sf != nullptr, f.path(),
                 ": GGUF has only one of rope_factors_long / rope_factors_short");
  RopeSpec& r = s->rope;
  r.scaling = RopeScaling::kLongRope;
  r.original_max_position = require_positive(f, p + "rope.scaling.original_context_length");
  ELI_CHECK_KIND(kModelLoad, s->max_position > 0, f.path(), ": GGUF LongRoPE needs ", p, "context_length");
  r.factor = static_cast<double>(s->max_position) / static_cast<double>(r.original_max_position);
  r.attention_factor = f.get_float(p + "rope.scaling.attn_factor", 0.0);
  ELI_CHECK_KIND(kModelLoad, std::isfinite(r.attention_factor) && r.attention_factor >= 0, f.path(),
                 ": GGUF rope.scaling.attn_factor ", r.attention_factor, " must be finite and >= 0");
  r.long_factors = read_rope_freqs(f, *lf, rope_rot_dim(*s));
  r.short_factors = read_rope_freqs(f, *sf, rope_rot_dim(*s));
}

// Gemma 3 as llama.cpp's converter writes it: norms stored as 1 + w (offset 0), the local layers'
// base in rope.freq_base_swa (default 10000), the window in attention.sliding_window, every
// `pattern`-th layer global (attention.sliding_window_pattern, default 6, as HF; or its per-layer
// bool-array form).
void read_gemma3(const GgufFile& f, const std::string& p, ModelSpec* s) {
  s->qk_norm = true;
  s->hidden_act = "gelu_pytorch_tanh";
  s->norm_weight_offset = 0.0;
  // GGUF stores no query_pre_attn_scalar: llama.cpp uses head_dim, except for the 27B model (62
  // blocks), whose scalar is hidden / heads (168 = 5376 / 32), as its HF config says.
  s->query_pre_attn_scalar = s->n_layers == 62 ? static_cast<double>(s->hidden_size / s->n_heads)
                                                : static_cast<double>(s->head_dim);
  const int64_t window = s->sliding_window;
  s->sliding_window = 0;
  s->has_local_rope = true;
  s->local_rope = RopeSpec();
  s->local_rope.theta = f.get_float(p + "rope.freq_base_swa", 10000.0);
  s->local_rope.partial_rotary_factor = s->rope.partial_rotary_factor;
  ELI_CHECK_KIND(kModelLoad, s->n_layers <= (int64_t{1} << 16), f.path(), ": GGUF block_count ", s->n_layers,
                 " is absurd");
  s->layer_sliding_windows.assign(static_cast<size_t>(s->n_layers), 0);
  const std::string key = p + "attention.sliding_window_pattern";
  const GgufValue* v = f.find_value(key);
  if (v != nullptr && v->is_array()) {
    // llama.cpp's per-layer form: one bool per layer, true = sliding-window layer.
    const std::vector<int64_t>& per_layer = f.get_int_array(key);
    ELI_CHECK_KIND(kModelLoad, static_cast<int64_t>(per_layer.size()) == s->n_layers, f.path(), ": GGUF key '", key,
                   "' has ", per_layer.size(), " entries for ", s->n_layers, " layers");
    for (size_t i = 0; i < per_layer.size(); ++i) s->layer_sliding_windows[i] = per_layer[i] != 0 ? window : 0;
  } else {
    const int64_t pattern = optional_positive(f, key, 6);
    for (int64_t i = 0; i < s->n_layers; ++i) {
      if ((i + 1) % pattern != 0) s->layer_sliding_windows[static_cast<size_t>(i)] = window;
    }
  }
  ELI_CHECK_KIND(kModelLoad, !f.has(p + "attn_logit_softcapping") && !f.has(p + "final_logit_softcapping"), f.path(),
                 ": GGUF sets logit soft-capping, which eli does not implement");
}

}  // namespace

ModelSpec spec_from_gguf(const GgufFile& f) {
  ModelSpec s;
  const std::string arch = f.get_string("general.architecture");
  ELI_CHECK_KIND(kModelLoad,
                 arch == "llama" || arch == "mistral" || arch == "qwen2" || arch == "qwen3" || arch == "phi3" ||
                     arch == "gemma3",
                 f.path(), ": unsupported GGUF architecture '", arch,
                 "' (supported: llama, mistral, qwen2, qwen3, phi3, gemma3)");
  s.architecture = arch;
  const std::string p = arch + ".";

  s.n_layers = require_positive(f, p + "block_count");
  s.hidden_size = require_positive(f, p + "embedding_length");
  s.intermediate_size = require_positive(f, p + "feed_forward_length");
  s.n_heads = require_positive(f, p + "attention.head_count");
  s.n_kv_heads = optional_positive(f, p + "attention.head_count_kv", s.n_heads);
  s.head_dim = optional_positive(f, p + "attention.key_length", s.hidden_size / s.n_heads);
  ELI_CHECK_KIND(kModelLoad, s.head_dim > 0, f.path(), ": GGUF head_dim is 0 (hidden ", s.hidden_size,
                 " < heads ", s.n_heads, ")");
  s.max_position = optional_positive(f, p + "context_length", 0);
  s.rms_norm_eps = f.get_float(p + "attention.layer_norm_rms_epsilon", 1e-6);
  s.sliding_window = f.has(p + "attention.sliding_window") ? f.get_int(p + "attention.sliding_window") : 0;

  // Vocabulary: explicit key, else the token list, else the embedding rows.
  if (f.has(p + "vocab_size")) {
    s.vocab_size = require_positive(f, p + "vocab_size");
  } else if (f.has("tokenizer.ggml.tokens")) {
    s.vocab_size = static_cast<int64_t>(f.get_string_array("tokenizer.ggml.tokens").size());
  } else if (const TensorInfo* emb = f.find("token_embd.weight")) {
    s.vocab_size = emb->shape[0];
  }
  ELI_CHECK_KIND(kModelLoad, s.vocab_size > 0, f.path(), ": GGUF has no vocab size (", p,
                 "vocab_size, tokenizer.ggml.tokens or token_embd.weight)");

  // RoPE.
  s.rope.theta = f.get_float(p + "rope.freq_base", 10000.0);
  if (f.has(p + "rope.dimension_count")) {
    const int64_t rot = require_positive(f, p + "rope.dimension_count");
    s.rope.partial_rotary_factor = static_cast<double>(rot) / static_cast<double>(s.head_dim);
  }
  const std::string scaling = f.get_string(p + "rope.scaling.type", "none");
  if (scaling == "none" || scaling.empty()) {
    s.rope.scaling = RopeScaling::kNone;
  } else if (scaling == "linear" || scaling == "yarn") {
    s.rope.scaling = scaling == "linear" ? RopeScaling::kLinear : RopeScaling::kYarn;
    s.rope.factor = f.get_float(p + "rope.scaling.factor", 1.0);
    ELI_CHECK_KIND(kModelLoad, std::isfinite(s.rope.factor) && s.rope.factor > 0, f.path(),
                   ": GGUF rope scaling factor ", s.rope.factor, " must be finite and > 0");
    s.rope.original_max_position = optional_positive(f, p + "rope.scaling.original_context_length", 0);
    s.rope.beta_fast = f.get_float(p + "rope.scaling.yarn_beta_fast", s.rope.beta_fast);
    s.rope.beta_slow = f.get_float(p + "rope.scaling.yarn_beta_slow", s.rope.beta_slow);
    s.rope.attention_factor = f.get_float(p + "rope.scaling.attn_factor", 0.0);
  } else {
    ELI_THROW(kModelLoad, f.path(), ": unsupported GGUF rope scaling type '", scaling, "'");
  }
  if (arch == "phi3") read_phi3_rope(f, p, &s);
  if (const TensorInfo* freqs = f.find("rope_freqs.weight")) {
    s.rope.freq_divisors = read_rope_freqs(f, *freqs, rope_rot_dim(s));
  }

  s.tie_word_embeddings = f.find("output.weight") == nullptr;
  s.attention_bias = f.find("blk.0.attn_q.bias") != nullptr;
  s.attention_out_bias = f.find("blk.0.attn_output.bias") != nullptr;
  s.qk_norm = f.find("blk.0.attn_q_norm.weight") != nullptr;
  if (arch == "gemma3") read_gemma3(f, p, &s);
  s.bos_token_id = f.get_int("tokenizer.ggml.bos_token_id", -1);
  if (f.has("tokenizer.ggml.eos_token_id")) s.eos_token_ids.push_back(f.get_int("tokenizer.ggml.eos_token_id"));
  return s;
}

std::string hf_name_for_gguf_tensor(const std::string& g) { return hf_name_for_gguf_tensor(g, ""); }

std::string hf_name_for_gguf_tensor(const std::string& g, const std::string& arch) {
  if (g == "token_embd.weight") return "model.embed_tokens.weight";
  if (g == "output_norm.weight") return "model.norm.weight";
  if (g == "output.weight") return "lm_head.weight";
  static const char kBlk[] = "blk.";
  if (g.compare(0, 4, kBlk) != 0) return "";
  size_t k = 4;
  while (k < g.size() && g[k] >= '0' && g[k] <= '9') ++k;
  if (k == 4 || k - 4 > 9 || k >= g.size() || g[k] != '.') return "";
  if (g[4] == '0' && k > 5) return "";  // no leading zeros
  const std::string layer = g.substr(4, k - 4);
  const std::string rest = g.substr(k + 1);
  const size_t dot = rest.rfind('.');
  if (dot == std::string::npos) return "";
  const std::string part = rest.substr(0, dot), suffix = rest.substr(dot + 1);
  if (suffix != "weight" && suffix != "bias") return "";
  static const struct {
    const char* gguf;
    const char* hf;
  } kMap[] = {
      {"attn_q", "self_attn.q_proj"},      {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},      {"attn_output", "self_attn.o_proj"},
      {"attn_q_norm", "self_attn.q_norm"}, {"attn_k_norm", "self_attn.k_norm"},
      {"attn_norm", "input_layernorm"},    {"ffn_norm", "post_attention_layernorm"},
      {"ffn_gate", "mlp.gate_proj"},       {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},
  };
  // Architectures whose converter gives a name another meaning (Phi-3's ffn_up holds gate and up;
  // Gemma 3's ffn_norm is the pre-feedforward norm) or names llama does not have.
  static const struct {
    const char* arch;
    const char* gguf;
    const char* hf;
  } kArchMap[] = {
      {"phi3", "attn_qkv", "self_attn.qkv_proj"},
      {"phi3", "ffn_up", "mlp.gate_up_proj"},
      {"gemma3", "post_attention_norm", "post_attention_layernorm"},
      {"gemma3", "ffn_norm", "pre_feedforward_layernorm"},
      {"gemma3", "post_ffw_norm", "post_feedforward_layernorm"},
  };
  for (const auto& m : kArchMap)
    if (arch == m.arch && part == m.gguf) return "model.layers." + layer + "." + m.hf + "." + suffix;
  for (const auto& m : kMap)
    if (part == m.gguf) return "model.layers." + layer + "." + m.hf + "." + suffix;
  return "";
}

void unpermute_llama_qk_rows(float* w, int64_t rows, int64_t cols, int64_t n_heads) {
  ELI_CHECK(n_heads > 0 && rows > 0 && cols > 0 && rows % n_heads == 0, "unpermute_llama_qk_rows: rows ", rows,
            " not a multiple of n_heads ", n_heads);
  const int64_t head_dim = rows / n_heads;
  ELI_CHECK(head_dim % 2 == 0, "unpermute_llama_qk_rows: head_dim ", head_dim, " is odd");
  const int64_t half = head_dim / 2;
  std::vector<float> tmp(static_cast<size_t>(head_dim * cols));  // one head: (head_dim, cols)
  for (int64_t h = 0; h < n_heads; ++h) {
    float* head = w + h * head_dim * cols;
    std::memcpy(tmp.data(), head, sizeof(float) * static_cast<size_t>(head_dim * cols));
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < half; ++i)
        std::memcpy(head + (j * half + i) * cols, tmp.data() + (2 * i + j) * cols, sizeof(float) * static_cast<size_t>(cols));
  }
}

}  // namespace eli
