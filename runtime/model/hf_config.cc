// runtime/model/hf_config.cc: config.json -> ModelSpec (see hf_config.h).
//
// A JSON null counts as "absent" (HF writes `"sliding_window": null`). Integer fields accept an
// integer literal or an integral float (4096.0); anything else is a typed kModelLoad error naming
// the field. Per-class defaults follow the transformers config classes.
#include "runtime/model/hf_config.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "eli/error.h"
#include "runtime/core/json.h"
#include "runtime/core/mapped_file.h"
#include "runtime/model/model_spec_check.h"
#include "runtime/model/quant_config.h"

namespace eli {
namespace {

template <typename... Args>
[[noreturn]] void fail(const std::string& source, const Args&... parts) {
  // Thrown directly: the message names the file and the check; a helper line adds nothing.
  throw Error(ErrorKind::kModelLoad, detail::concat(source, ": ", parts...));
}

struct ArchInfo {
  const char* hf_class;
  const char* model_type;
  const char* name;  // ModelSpec::architecture
  int64_t default_max_position;
};
constexpr ArchInfo kArchs[] = {
    {"LlamaForCausalLM", "llama", "llama", 2048},
    {"MistralForCausalLM", "mistral", "mistral", 4096 * 32},
    {"Qwen2ForCausalLM", "qwen2", "qwen2", 32768},
    {"Qwen3ForCausalLM", "qwen3", "qwen3", 32768},
    {"Phi3ForCausalLM", "phi3", "phi3", 4096},
    {"Gemma3ForCausalLM", "gemma3_text", "gemma3", 131072},
};
constexpr const char* kSupported =
    "eli supports LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, "
    "Gemma3ForCausalLM";

// Typed field access on one JSON object; `where` prefixes field names in errors ("rope_scaling.").
class Fields {
 public:
  Fields(const JsonValue& obj, const std::string& source, std::string where = "")
      : obj_(obj), source_(source), where_(std::move(where)) {}

  const JsonValue* get(const char* key) const {
    const JsonValue* v = obj_.find(key);
    return v == nullptr || v->is_null() ? nullptr : v;
  }
  bool has(const char* key) const { return get(key) != nullptr; }

  int64_t int_or(const char* key, int64_t dflt) const {
    const JsonValue* v = get(key);
    return v == nullptr ? dflt : to_int(key, *v);
  }
  int64_t int_required(const char* key) const {
    const JsonValue* v = get(key);
    if (v == nullptr) fail(source_, "missing required field ", where_, key);
    return to_int(key, *v);
  }
  double double_or(const char* key, double dflt) const {
    const JsonValue* v = get(key);
    if (v == nullptr) return dflt;
    if (!v->is_number()) fail(source_, where_, key, " must be a number (got ", v->type_name(), ")");
    return v->as_double();
  }
  double double_required(const char* key) const {
    if (!has(key)) fail(source_, "missing required field ", where_, key);
    return double_or(key, 0.0);
  }
  bool bool_or(const char* key, bool dflt) const {
    const JsonValue* v = get(key);
    if (v == nullptr) return dflt;
    if (!v->is_bool()) fail(source_, where_, key, " must be true or false (got ", v->type_name(), ")");
    return v->as_bool();
  }
  std::string string_or(const char* key, const std::string& dflt) const {
    const JsonValue* v = get(key);
    if (v == nullptr) return dflt;
    if (!v->is_string()) fail(source_, where_, key, " must be a string (got ", v->type_name(), ")");
    return v->as_string();
  }
  int64_t to_int(const char* key, const JsonValue& v) const {
    if (v.is_int64()) return v.as_int64();
    if (v.is_number()) {
      double d = v.as_double();
      if (d == std::floor(d) && std::fabs(d) <= 9007199254740992.0) return static_cast<int64_t>(d);
    }
    fail(source_, where_, key, " must be an integer (got ", v.is_number() ? "a non-integer number" : v.type_name(),
         ")");
  }

 private:
  const JsonValue& obj_;
  const std::string& source_;
  std::string where_;
};

const ArchInfo& pick_architecture(const JsonValue& config, const std::string& source) {
  Fields f(config, source);
  const bool custom_code = f.has("auto_map");
  std::string named;
  if (const JsonValue* archs = f.get("architectures")) {
    if (!archs->is_array()) fail(source, "architectures must be a list of strings");
    for (const JsonValue& a : archs->array()) {
      if (!a.is_string()) fail(source, "architectures must be a list of strings");
      for (const ArchInfo& info : kArchs) {
        if (a.as_string() == info.hf_class) return info;
      }
      if (named.empty()) named = a.as_string();
    }
  }
  if (named.empty()) {
    std::string model_type = f.string_or("model_type", "");
    for (const ArchInfo& info : kArchs) {
      if (model_type == info.model_type) return info;
    }
    named = model_type.empty() ? "(none given)" : "model_type " + model_type;
  }
  if (custom_code) {
    fail(source, "architecture ", named, " needs custom code (auto_map); eli never executes model code (",
         kSupported, ")");
  }
  fail(source, "unsupported architecture ", named, " (", kSupported, ")");
}

std::vector<float> float_list(const Fields& r, const char* key, const std::string& source, const std::string& where) {
  const JsonValue* v = r.get(key);
  if (v == nullptr) fail(source, "missing required field ", where, key);
  if (!v->is_array()) fail(source, where, key, " must be a list of numbers");
  std::vector<float> out;
  for (const JsonValue& x : v->array()) {
    if (!x.is_number()) fail(source, where, key, " must be a list of numbers");
    out.push_back(static_cast<float>(x.as_double()));
  }
  return out;
}

// One RoPE parameter object (`dict`, found at `where`) into `rope`, whose theta / partial factor
// already hold the top-level values.
void parse_rope_dict(const Fields& top, const JsonValue* dict, const std::string& where, const std::string& source,
                     const ModelSpec& spec, RopeSpec& rope) {
  if (dict == nullptr) return;
  if (!dict->is_object()) fail(source, where.substr(0, where.size() - 1), " must be an object");
  Fields r(*dict, source, where);
  rope.theta = r.double_or("rope_theta", rope.theta);
  rope.partial_rotary_factor = r.double_or("partial_rotary_factor", rope.partial_rotary_factor);
  std::string type = r.string_or("rope_type", r.string_or("type", "default"));
  if (type == "default") return;
  rope.original_max_position = r.int_or("original_max_position_embeddings", 0);
  if (spec.architecture == "phi3" && (type == "su" || type == "yarn")) type = "longrope";  // Phi3Config's renaming
  if (type == "linear") {
    rope.scaling = RopeScaling::kLinear;
    rope.factor = r.double_required("factor");
  } else if (type == "dynamic") {
    rope.scaling = RopeScaling::kDynamic;
    rope.factor = r.double_required("factor");
  } else if (type == "llama3") {
    rope.scaling = RopeScaling::kLlama3;
    rope.factor = r.double_required("factor");
    rope.low_freq_factor = r.double_required("low_freq_factor");
    rope.high_freq_factor = r.double_required("high_freq_factor");
    rope.original_max_position = r.int_required("original_max_position_embeddings");
  } else if (type == "yarn") {
    rope.scaling = RopeScaling::kYarn;
    if (r.has("factor")) {
      rope.factor = r.double_required("factor");
    } else if (rope.original_max_position > 0) {
      rope.factor = static_cast<double>(spec.max_position) / static_cast<double>(rope.original_max_position);
    } else {
      fail(source, "missing required field ", where, "factor");
    }
    rope.beta_fast = r.double_or("beta_fast", 32.0);
    rope.beta_slow = r.double_or("beta_slow", 1.0);
    rope.truncate = r.bool_or("truncate", true);
    rope.attention_factor = r.double_or("attention_factor", 0.0);
    const double mscale = r.double_or("mscale", 0.0);
    const double mscale_all_dim = r.double_or("mscale_all_dim", 0.0);
    if (!r.has("attention_factor") && mscale != 0.0 && mscale_all_dim != 0.0 && rope.factor > 1.0) {
      auto get_mscale = [&](double m) { return 0.1 * m * std::log(rope.factor) + 1.0; };
      rope.attention_factor = get_mscale(mscale) / get_mscale(mscale_all_dim);
    }
  } else if (type == "longrope" && spec.architecture == "phi3") {
    // transformers: the top-level original_max_position_embeddings (Phi-3) wins over the dict's;
    // factor defaults to max_position / original_max_position.
    rope.scaling = RopeScaling::kLongRope;
    rope.original_max_position = top.int_or("original_max_position_embeddings", rope.original_max_position);
    if (rope.original_max_position <= 0) fail(source, "missing required field ", where, "original_max_position_embeddings");
    rope.factor = r.double_or("factor", static_cast<double>(spec.max_position) /
                                            static_cast<double>(rope.original_max_position));
    rope.attention_factor = r.double_or("attention_factor", 0.0);
    rope.short_factors = float_list(r, "short_factor", source, where);
    rope.long_factors = float_list(r, "long_factor", source, where);
  } else {
    fail(source, "unsupported rope type '", type, "' (eli supports default, linear, dynamic, llama3, yarn; longrope for phi3)");
  }
}

void parse_rope(const Fields& top, const std::string& source, ModelSpec* spec) {
  RopeSpec& rope = spec->rope;
  rope.theta = top.double_or("rope_theta", 10000.0);
  rope.partial_rotary_factor = top.double_or("partial_rotary_factor", 1.0);
  // transformers v5 keeps everything in rope_parameters; v4 has rope_theta + rope_scaling.
  const JsonValue* dict = top.get("rope_parameters");
  std::string where = "rope_parameters.";
  const JsonValue* local = nullptr;
  if (dict != nullptr && dict->is_object() && dict->find("rope_type") == nullptr &&
      dict->find("full_attention") != nullptr) {
    local = dict->find("sliding_attention");
    dict = dict->find("full_attention");  // per-layer-type form
    where = "rope_parameters.full_attention.";
  }
  if (dict == nullptr) {
    dict = top.get("rope_scaling");
    where = "rope_scaling.";
  }
  if (spec->architecture == "gemma3") {
    // Gemma 3: global layers rope_theta (default 1e6) + rope_scaling; local layers
    // rope_local_base_freq (default 1e4), unscaled unless rope_parameters.sliding_attention says.
    rope.theta = top.double_or("rope_theta", 1000000.0);
    spec->has_local_rope = true;
    spec->local_rope = RopeSpec();
    spec->local_rope.theta = top.double_or("rope_local_base_freq", 10000.0);
    spec->local_rope.partial_rotary_factor = rope.partial_rotary_factor;
    if (local != nullptr && !local->is_null()) {
      parse_rope_dict(top, local, "rope_parameters.sliding_attention.", source, *spec, spec->local_rope);
    }
  }
  parse_rope_dict(top, dict, where, source, *spec, rope);
}

int64_t pick_sliding_window(const Fields& f, const std::string& source, const ModelSpec& spec) {
  if (spec.architecture == "mistral" || spec.architecture == "phi3") return f.int_or("sliding_window", 0);
  if (spec.architecture != "qwen2" && spec.architecture != "qwen3") return 0;
  if (!f.bool_or("use_sliding_window", false)) return 0;
  const int64_t window = f.int_or("sliding_window", 4096);
  // transformers: layer i slides iff i >= max_window_layers (or as layer_types says).
  int64_t n_sliding = 0;
  if (const JsonValue* types = f.get("layer_types")) {
    if (!types->is_array()) fail(source, "layer_types must be a list");
    for (const JsonValue& t : types->array()) {
      if (t.is_string() && t.as_string() == "sliding_attention") ++n_sliding;
    }
  } else {
    const int64_t mwl = f.int_or("max_window_layers", 28);
    n_sliding = mwl >= spec.n_layers ? 0 : spec.n_layers - std::max<int64_t>(mwl, 0);
  }
  if (n_sliding == 0) return 0;
  if (n_sliding != spec.n_layers) {
    fail(source, "sliding window on only some layers (max_window_layers/layer_types) is not supported");
  }
  return window;
}

// Gemma 3 text: interleaved sliding / global layers (layer_types, else sliding_window_pattern: layer
// i is global iff (i + 1) % pattern == 0), GELU-tanh MLP, q/k norms, norms stored as w of x*(1+w).
void parse_gemma3(const Fields& f, const std::string& source, ModelSpec* spec) {
  for (const char* cap : {"attn_logit_softcapping", "final_logit_softcapping"}) {
    if (f.has(cap)) fail(source, cap, " is set: eli does not implement logit soft-capping");
  }
  if (f.bool_or("use_bidirectional_attention", false)) {
    fail(source, "use_bidirectional_attention is set: eli runs causal decoders only");
  }
  spec->qk_norm = true;
  spec->attention_bias = spec->attention_out_bias = f.bool_or("attention_bias", false);
  spec->hidden_act = f.string_or("hidden_activation", "gelu_pytorch_tanh");
  spec->query_pre_attn_scalar = f.double_or("query_pre_attn_scalar", 256.0);
  spec->norm_weight_offset = 1.0;
  const int64_t window = f.int_or("sliding_window", 4096);
  if (spec->n_layers < 1 || spec->n_layers > kMaxLayers) return;  // validate_model_spec names the field
  spec->layer_sliding_windows.assign(static_cast<size_t>(spec->n_layers), 0);
  if (const JsonValue* types = f.get("layer_types")) {
    if (!types->is_array()) fail(source, "layer_types must be a list");
    if (static_cast<int64_t>(types->array().size()) != spec->n_layers) {
      fail(source, "layer_types has ", types->array().size(), " entries, num_hidden_layers = ", spec->n_layers);
    }
    size_t i = 0;
    for (const JsonValue& t : types->array()) {
      const std::string kind = t.is_string() ? t.as_string() : "";
      if (kind == "sliding_attention") {
        spec->layer_sliding_windows[i] = window;
      } else if (kind != "full_attention") {
        fail(source, "layer_types[", i, "] must be \"sliding_attention\" or \"full_attention\"");
      }
      ++i;
    }
  } else {
    const int64_t pattern = f.int_or("sliding_window_pattern", 6);
    if (pattern < 1) fail(source, "sliding_window_pattern = ", pattern, " must be >= 1");
    for (int64_t i = 0; i < spec->n_layers; ++i) {
      if ((i + 1) % pattern != 0) spec->layer_sliding_windows[static_cast<size_t>(i)] = window;
    }
  }
}

}  // namespace

ModelSpec hf_config_to_spec(const JsonValue& config, const std::string& source) {
  if (!config.is_object()) fail(source, "config must be a JSON object");
  const ArchInfo& arch = pick_architecture(config, source);
  Fields f(config, source);
  ModelSpec spec;
  spec.architecture = arch.name;
  spec.vocab_size = f.int_required("vocab_size");
  spec.hidden_size = f.int_required("hidden_size");
  spec.intermediate_size = f.int_required("intermediate_size");
  spec.n_layers = f.int_required("num_hidden_layers");
  spec.n_heads = f.int_required("num_attention_heads");
  spec.n_kv_heads = f.int_or("num_key_value_heads", spec.n_heads);
  if (f.has("head_dim")) {
    spec.head_dim = f.int_required("head_dim");
  } else {
    if (spec.n_heads <= 0) fail(source, "num_attention_heads = ", spec.n_heads, " must be > 0");
    if (spec.hidden_size % spec.n_heads != 0) {
      fail(source, "num_attention_heads = ", spec.n_heads, " does not divide hidden_size = ", spec.hidden_size,
           " (and no head_dim is given)");
    }
    spec.head_dim = spec.hidden_size / spec.n_heads;
  }
  spec.max_position = f.int_or("max_position_embeddings", arch.default_max_position);
  spec.rms_norm_eps = f.double_or("rms_norm_eps", 1e-6);
  spec.tie_word_embeddings = f.bool_or("tie_word_embeddings", spec.architecture == "gemma3");
  if (spec.architecture == "llama") {
    spec.attention_bias = spec.attention_out_bias = f.bool_or("attention_bias", false);
    spec.mlp_bias = f.bool_or("mlp_bias", false);
  } else if (spec.architecture == "qwen2") {
    spec.attention_bias = true;  // Qwen2 q/k/v always carry a bias, o_proj never
    spec.attention_out_bias = false;
  } else if (spec.architecture == "qwen3") {
    spec.attention_bias = spec.attention_out_bias = f.bool_or("attention_bias", false);
    spec.qk_norm = true;
  }
  if (spec.architecture == "gemma3") {
    parse_gemma3(f, source, &spec);
  } else {
    spec.sliding_window = pick_sliding_window(f, source, spec);
  }
  spec.bos_token_id = f.int_or("bos_token_id", -1);
  if (const JsonValue* eos = f.get("eos_token_id")) {
    if (eos->is_array()) {
      for (const JsonValue& e : eos->array()) spec.eos_token_ids.push_back(f.to_int("eos_token_id", e));
    } else {
      spec.eos_token_ids.push_back(f.to_int("eos_token_id", *eos));
    }
  }
  parse_rope(f, source, &spec);
  validate_model_spec(spec, source);
  return spec;
}

ModelSpec parse_hf_config(const std::string& config_json_path, const std::string& display, QuantConfig* quant) {
  const std::string& name = display.empty() ? config_json_path : display;
  JsonLimits limits;
  limits.max_bytes = size_t{16} << 20;
  JsonValue config = parse_json_as(read_regular_file(config_json_path, limits.max_bytes, name), name,
                                   ErrorKind::kModelLoad, limits);
  ModelSpec spec = hf_config_to_spec(config, name);
  if (quant != nullptr) *quant = parse_quant_config(config, name);
  return spec;
}

}  // namespace eli
