// runtime/model/model_spec_check.cc: validate_model_spec (see model_spec_check.h). Messages name
// the config.json field too, since that is what the user can look at.
#include "runtime/model/model_spec_check.h"

#include <cmath>

#include "eli/error.h"
#include "runtime/core/checked_math.h"
#include "runtime/model/gguf_spec.h"
#include "runtime/model/weight_source.h"

namespace eli {
namespace {

template <typename... Args>
[[noreturn]] void fail(const std::string& source, const Args&... parts) {
  // Thrown directly: the message names the file and the check; a helper line adds nothing.
  throw Error(ErrorKind::kModelLoad, detail::concat(source, ": ", parts...));
}

void check_range(const std::string& source, const char* field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) fail(source, field, " = ", v, " is out of range [", lo, ", ", hi, "]");
}

void check_positive(const std::string& source, const char* field, double v) {
  if (!std::isfinite(v) || v <= 0) fail(source, field, " = ", v, " must be finite and > 0");
}

bool starts_with(const std::string& s, const char* prefix) {
  const size_t n = std::char_traits<char>::length(prefix);
  return s.size() >= n && s.compare(0, n, prefix) == 0;
}

// The layer index of a name that starts with `prefix` (e.g. "blk."): -1 when the name does not
// start with it, -2 when what follows is not "N." with N a plain decimal (no sign, no leading zero,
// at most 9 digits), else N.
int64_t layer_index(const std::string& name, const std::string& prefix) {
  if (name.compare(0, prefix.size(), prefix) != 0) return -1;
  size_t k = prefix.size();
  const size_t begin = k;
  int64_t n = 0;
  while (k < name.size() && name[k] >= '0' && name[k] <= '9' && k - begin < 10) n = n * 10 + (name[k++] - '0');
  const size_t digits = k - begin;
  if (digits == 0 || digits > 9 || k >= name.size() || name[k] != '.') return -2;
  if (digits > 1 && name[begin] == '0') return -2;
  return n;
}

void check_layer(const std::string& source, const std::string& name, int64_t index, int64_t n_layers,
                 const char* count_field) {
  if (index == -2) fail(source, "tensor '", name, "' has no valid layer index");
  if (index >= n_layers) {
    fail(source, "tensor '", name, "' belongs to layer ", index, " but the model has ", n_layers, " layers (",
         count_field, " = ", n_layers, "): the weights do not match the config");
  }
}

// One RoPE configuration (`what` prefixes the names: "" or "local ").
void check_rope(const std::string& source, const char* what, const ModelSpec& s, const RopeSpec& r) {
  check_positive(source, (std::string(what) + "rope_theta").c_str(), r.theta);
  if (!std::isfinite(r.partial_rotary_factor) || r.partial_rotary_factor <= 0 || r.partial_rotary_factor > 1) {
    fail(source, what, "partial_rotary_factor = ", r.partial_rotary_factor, " must be in (0, 1]");
  }
  const double rot = static_cast<double>(s.head_dim) * r.partial_rotary_factor;
  const auto rot_dims = static_cast<int64_t>(rot);
  if (rot_dims < 2 || rot_dims % 2 != 0) {
    fail(source, what, "partial_rotary_factor x head_dim = ", rot, " rotary dims must be even and >= 2");
  }
  if (r.scaling != RopeScaling::kNone) {
    check_positive(source, "rope scaling factor", r.factor);
    if (r.factor > 1e6) fail(source, what, "rope scaling factor = ", r.factor, " is absurd");
    check_range(source, "rope original_max_position_embeddings", r.original_max_position, 0, kMaxPositions);
  }
  if (r.scaling == RopeScaling::kLlama3) {
    check_positive(source, "rope low_freq_factor", r.low_freq_factor);
    check_positive(source, "rope high_freq_factor", r.high_freq_factor);
    if (r.high_freq_factor <= r.low_freq_factor) {
      fail(source, what, "rope high_freq_factor = ", r.high_freq_factor, " must exceed low_freq_factor = ",
           r.low_freq_factor);
    }
    if (r.original_max_position <= 0) fail(source, what, "llama3 rope needs original_max_position_embeddings > 0");
  }
  if (r.scaling == RopeScaling::kYarn) {
    check_positive(source, "rope beta_fast", r.beta_fast);
    check_positive(source, "rope beta_slow", r.beta_slow);
    if (!std::isfinite(r.attention_factor) || r.attention_factor < 0) {
      fail(source, what, "rope attention_factor = ", r.attention_factor, " must be finite and >= 0");
    }
  }
  if (r.scaling == RopeScaling::kLongRope) {
    if (r.original_max_position <= 0) fail(source, "longrope needs original_max_position_embeddings > 0");
    const size_t half = static_cast<size_t>(rot_dims / 2);
    for (const std::vector<float>* f : {&r.short_factors, &r.long_factors}) {
      if (f->size() != half) {
        fail(source, what, "longrope short_factor / long_factor has ", f->size(), " values, rotary dimension ",
             rot_dims, " needs ", half);
      }
      for (float v : *f) check_positive(source, "longrope factor", v);
    }
    if (!std::isfinite(r.attention_factor) || r.attention_factor < 0) {
      fail(source, what, "rope attention_factor = ", r.attention_factor, " must be finite and >= 0");
    }
  }
}

}  // namespace

void validate_model_spec(const ModelSpec& s, const std::string& source) {
  if (s.architecture.empty()) fail(source, "no architecture");
  check_range(source, "num_hidden_layers", s.n_layers, 1, kMaxLayers);
  check_range(source, "hidden_size", s.hidden_size, 1, kMaxHidden);
  check_range(source, "intermediate_size", s.intermediate_size, 1, kMaxIntermediate);
  check_range(source, "vocab_size", s.vocab_size, 1, kMaxVocab);
  check_range(source, "num_attention_heads", s.n_heads, 1, kMaxHeads);
  check_range(source, "num_key_value_heads", s.n_kv_heads, 1, kMaxHeads);
  if (s.n_heads % s.n_kv_heads != 0) {
    fail(source, "num_key_value_heads = ", s.n_kv_heads, " does not divide num_attention_heads = ", s.n_heads);
  }
  check_range(source, "head_dim", s.head_dim, 2, kMaxHeadDim);
  if (s.head_dim % 2 != 0) fail(source, "head_dim = ", s.head_dim, " is odd (RoPE rotates pairs)");
  int64_t q_width = 0;
  if (!checked_mul(s.n_heads, s.head_dim, &q_width) || q_width > kMaxHidden * 4) {
    fail(source, "num_attention_heads x head_dim is too large");
  }
  check_range(source, "max_position_embeddings", s.max_position, 1, kMaxPositions);
  check_positive(source, "rms_norm_eps", s.rms_norm_eps);
  if (s.rms_norm_eps >= 1.0) fail(source, "rms_norm_eps = ", s.rms_norm_eps, " is absurd (>= 1)");
  check_range(source, "sliding_window", s.sliding_window, 0, kMaxPositions);
  check_rope(source, "", s, s.rope);
  if (s.has_local_rope) check_rope(source, "local ", s, s.local_rope);
  if (!s.layer_sliding_windows.empty()) {
    if (static_cast<int64_t>(s.layer_sliding_windows.size()) != s.n_layers) {
      fail(source, "per-layer sliding windows: ", s.layer_sliding_windows.size(), " entries for ", s.n_layers,
           " layers");
    }
    for (int64_t w : s.layer_sliding_windows) check_range(source, "sliding_window", w, 0, kMaxPositions);
  }
  if (s.hidden_act != "silu" && s.hidden_act != "gelu_pytorch_tanh") {
    fail(source, "hidden activation '", s.hidden_act, "' is not supported (silu, gelu_pytorch_tanh)");
  }
  if (s.query_pre_attn_scalar != 0) check_positive(source, "query_pre_attn_scalar", s.query_pre_attn_scalar);
  if (!std::isfinite(s.norm_weight_offset) || std::fabs(s.norm_weight_offset) > 1.0) {
    fail(source, "norm weight offset = ", s.norm_weight_offset, " must be finite and in [-1, 1]");
  }
  if (s.bos_token_id < -1 || s.bos_token_id >= s.vocab_size) {
    fail(source, "bos_token_id = ", s.bos_token_id, " is outside the vocabulary (", s.vocab_size, ")");
  }
  if (s.eos_token_ids.size() > 64) fail(source, "more than 64 eos_token_id values");
  for (int64_t id : s.eos_token_ids) {
    if (id < 0 || id >= s.vocab_size) {
      fail(source, "eos_token_id = ", id, " is outside the vocabulary (", s.vocab_size, ")");
    }
  }
}

void check_tensor_names(const ModelSpec& spec, const WeightSource& weights, TensorNaming naming,
                        const std::string& source) {
  static const char* const kHfLayerPrefixes[] = {"model.layers.", "language_model.model.layers.",
                                                 "model.language_model.layers."};
  for (const auto& entry : weights.tensors()) {
    const std::string& name = entry.first;
    if (naming == TensorNaming::kGguf) {
      const int64_t index = layer_index(name, "blk.");
      if (index != -1) check_layer(source, name, index, spec.n_layers, "block_count");
      if (name == "rope_freqs.weight" || !hf_name_for_gguf_tensor(name, spec.architecture).empty()) continue;
      if (spec.rope.scaling == RopeScaling::kLongRope &&
          (name == "rope_factors_long.weight" || name == "rope_factors_short.weight")) {
        continue;
      }
      if (index >= 0 && name.compare(name.find('.', 4) + 1, 13, "attn_rot_embd") == 0) continue;
      fail(source, "tensor '", name, "' is not one eli reads for architecture '", spec.architecture,
           "' (an unsupported feature such as mixture-of-experts or fused projections, or a file for another "
           "architecture)");
    } else {
      for (const char* prefix : kHfLayerPrefixes) {
        const int64_t index = layer_index(name, prefix);
        if (index != -1) {
          check_layer(source, name, index, spec.n_layers, "num_hidden_layers");
          break;
        }
      }
    }
  }
}

}  // namespace eli
