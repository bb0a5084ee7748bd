// runtime/model/quant_config.cc: see quant_config.h.
#include "runtime/model/quant_config.h"

#include <algorithm>
#include <cctype>
#include <regex>

#include "eli/error.h"
#include "runtime/core/json.h"

namespace eli {
namespace {

constexpr const char* kSupportedMethods =
    "eli reads quant_method awq (gemm, 4-bit), gptq (4 / 8-bit) and compressed-tensors (W4A16, W8A16, FP8 "
    "W8A8, INT8 W8A8)";

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

template <typename... Args>
[[noreturn]] void malformed(const std::string& source, const Args&... parts) {
  throw Error(ErrorKind::kModelLoad, detail::concat(source, ": quantization_config: ", parts...));
}
template <typename... Args>
[[noreturn]] void unsupported(const std::string& source, const Args&... parts) {
  throw Error(ErrorKind::kUnsupported, detail::concat(source, ": quantization_config: ", parts...));
}

const JsonValue* get(const JsonValue& o, const char* key) {
  const JsonValue* v = o.find(key);
  return v == nullptr || v->is_null() ? nullptr : v;
}
int64_t get_int(const JsonValue& o, const char* key, int64_t dflt, const std::string& src) {
  const JsonValue* v = get(o, key);
  if (v == nullptr) return dflt;
  if (v->is_int64()) return v->as_int64();
  if (v->is_number() && v->as_double() == static_cast<double>(static_cast<int64_t>(v->as_double()))) {
    return static_cast<int64_t>(v->as_double());
  }
  malformed(src, key, " must be an integer (got ", v->type_name(), ")");
}
bool get_bool(const JsonValue& o, const char* key, bool dflt, const std::string& src) {
  const JsonValue* v = get(o, key);
  if (v == nullptr) return dflt;
  if (!v->is_bool()) malformed(src, key, " must be true or false (got ", v->type_name(), ")");
  return v->as_bool();
}
std::string get_str(const JsonValue& o, const char* key, const std::string& dflt, const std::string& src) {
  const JsonValue* v = get(o, key);
  if (v == nullptr) return dflt;
  if (!v->is_string()) malformed(src, key, " must be a string (got ", v->type_name(), ")");
  return v->as_string();
}

int64_t group_of(int64_t g, const std::string& src) {
  if (g == -1 || g == 0) return 0;  // per channel
  if (g < 0 || g % 32 != 0) unsupported(src, "group_size ", g, " (eli takes -1 or a multiple of 32)");
  return g;
}

QuantConfig parse_awq(const JsonValue& q, const std::string& src) {
  QuantConfig c;
  c.method = QuantMethod::kAwq;
  const std::string version = lower(get_str(q, "version", "gemm", src));
  if (version != "gemm") {
    unsupported(src, "AWQ version '", version, "' (eli reads the GEMM layout, version \"gemm\")");
  }
  c.bits = static_cast<int>(get_int(q, "bits", get_int(q, "w_bit", 4, src), src));
  if (c.bits != 4) unsupported(src, "AWQ with ", c.bits, " bits (eli reads 4-bit AWQ)");
  c.scheme = QuantScheme::kW4A16;
  c.group_size = group_of(get_int(q, "group_size", get_int(q, "q_group_size", 128, src), src), src);
  if (!get_bool(q, "zero_point", true, src)) unsupported(src, "AWQ without zero_point (eli reads zero_point AWQ)");
  c.symmetric = false;
  if (const JsonValue* m = get(q, "modules_to_not_convert")) {
    if (!m->is_array()) malformed(src, "modules_to_not_convert must be a list");
    for (const JsonValue& s : m->array()) {
      if (!s.is_string()) malformed(src, "modules_to_not_convert entries must be strings");
      c.ignore.push_back(s.as_string());
    }
  }
  return c;
}

QuantConfig parse_gptq(const JsonValue& q, const std::string& src) {
  QuantConfig c;
  c.method = QuantMethod::kGptq;
  c.bits = static_cast<int>(get_int(q, "bits", 4, src));
  if (c.bits != 4 && c.bits != 8) unsupported(src, "GPTQ with ", c.bits, " bits (eli reads 4- and 8-bit GPTQ)");
  c.scheme = c.bits == 4 ? QuantScheme::kW4A16 : QuantScheme::kW8A16;
  c.group_size = group_of(get_int(q, "group_size", 128, src), src);
  c.act_order = get_bool(q, "desc_act", false, src);
  c.symmetric = get_bool(q, "sym", true, src);
  const std::string fmt = lower(get_str(q, "checkpoint_format", "gptq", src));
  if (fmt == "gptq") {
    c.gptq_v1_zeros = true;
  } else if (fmt == "gptq_v2") {
    c.gptq_v1_zeros = false;
  } else {
    unsupported(src, "GPTQ checkpoint_format '", fmt, "' (eli reads \"gptq\" and \"gptq_v2\")");
  }
  if (get_bool(q, "is_marlin_format", false, src)) unsupported(src, "GPTQ in Marlin format (eli reads \"gptq\")");
  return c;
}

// One side (weights / input_activations) of a compressed-tensors scheme.
struct CtArgs {
  bool present = false;
  int bits = 0;
  std::string type, strategy;
  int64_t group_size = 0;
  bool symmetric = true, dynamic = false;
  std::string actorder;
};

CtArgs ct_args(const JsonValue* v, const std::string& src, const char* what) {
  CtArgs a;
  if (v == nullptr) return a;
  if (!v->is_object()) malformed(src, what, " must be an object");
  a.present = true;
  a.bits = static_cast<int>(get_int(*v, "num_bits", 8, src));
  a.type = lower(get_str(*v, "type", "int", src));
  a.strategy = lower(get_str(*v, "strategy", "tensor", src));
  a.group_size = get_int(*v, "group_size", 0, src);
  a.symmetric = get_bool(*v, "symmetric", true, src);
  if (const JsonValue* d = get(*v, "dynamic")) {
    if (d->is_bool()) a.dynamic = d->as_bool();
    else if (d->is_string()) a.dynamic = lower(d->as_string()) != "false";  // "local" (NVFP4) counts as dynamic
    else malformed(src, what, ".dynamic must be a boolean");
  }
  if (const JsonValue* o = get(*v, "actorder")) {
    if (o->is_bool()) a.actorder = o->as_bool() ? "group" : "";
    else if (o->is_string()) a.actorder = lower(o->as_string());
  }
  return a;
}

QuantConfig parse_compressed(const JsonValue& q, const std::string& src) {
  QuantConfig c;
  c.method = QuantMethod::kCompressedTensors;
  const std::string status = lower(get_str(q, "quantization_status", "compressed", src));
  if (status != "compressed") {
    unsupported(src, "compressed-tensors with quantization_status '", status, "' (eli reads \"compressed\" checkpoints)");
  }
  const JsonValue* groups = get(q, "config_groups");
  if (groups == nullptr || !groups->is_object() || groups->size() == 0) {
    malformed(src, "compressed-tensors config has no config_groups");
  }
  if (groups->size() != 1) {
    unsupported(src, "compressed-tensors with ", groups->size(), " config groups (mixed schemes; eli reads one)");
  }
  const JsonValue& g = groups->items()[0].value;
  if (!g.is_object()) malformed(src, "config group must be an object");
  if (get(g, "output_activations") != nullptr) unsupported(src, "compressed-tensors output activation quantization");
  const CtArgs w = ct_args(get(g, "weights"), src, "weights");
  const CtArgs in = ct_args(get(g, "input_activations"), src, "input_activations");
  c.format = lower(get_str(g, "format", get_str(q, "format", "", src), src));
  if (!w.present) malformed(src, "compressed-tensors group without weights");
  const std::string scheme_desc = std::string("weights ") + w.type + std::to_string(w.bits) + "/" + w.strategy +
                                  (in.present ? std::string(", activations ") + in.type + std::to_string(in.bits) + "/" +
                                                    in.strategy + (in.dynamic ? " dynamic" : " static")
                                              : std::string(", no activation quantization"));
  auto refuse = [&]() {
    unsupported(src, "compressed-tensors scheme (", scheme_desc, ", format '", c.format,
                "') is not one eli runs: it reads W4A16 / W8A16 (pack-quantized int weights, group or channel), "
                "FP8 W8A8 (float-quantized) and INT8 W8A8 (int-quantized, channel weights, dynamic per-token "
                "activations)");
  };
  c.bits = w.bits;
  if (w.type == "int" && !in.present) {
    if (c.format != "pack-quantized" || (w.bits != 4 && w.bits != 8)) refuse();
    if (w.strategy == "group") {
      c.group_size = group_of(w.group_size, src);
    } else if (w.strategy == "channel") {
      c.group_size = 0;
    } else {
      refuse();
    }
    c.scheme = w.bits == 4 ? QuantScheme::kW4A16 : QuantScheme::kW8A16;
    c.symmetric = w.symmetric;
    if (!w.actorder.empty() && w.actorder != "group" && w.actorder != "weight") refuse();
    c.act_order = w.actorder == "group";
  } else if (w.type == "float" && w.bits == 8 && in.present && in.type == "float" && in.bits == 8) {
    if (c.format != "float-quantized" && c.format != "naive-quantized") refuse();
    if (w.strategy != "tensor" && w.strategy != "channel") refuse();
    if (!w.symmetric || !in.symmetric) refuse();
    if (in.dynamic && in.strategy == "token") {
      c.static_input_scale = false;
    } else if (!in.dynamic && in.strategy == "tensor") {
      c.static_input_scale = true;
    } else {
      refuse();
    }
    c.scheme = QuantScheme::kW8A8Fp8;
  } else if (w.type == "int" && w.bits == 8 && in.present && in.type == "int" && in.bits == 8) {
    if (c.format != "int-quantized" && c.format != "naive-quantized") refuse();
    if (w.strategy != "channel" || !w.symmetric || !in.dynamic || in.strategy != "token" || !in.symmetric) refuse();
    c.scheme = QuantScheme::kW8A8Int8;
  } else {
    refuse();
  }
  if (const JsonValue* ig = get(q, "ignore")) {
    if (!ig->is_array()) malformed(src, "ignore must be a list");
    for (const JsonValue& s : ig->array()) {
      if (!s.is_string()) malformed(src, "ignore entries must be strings");
      c.ignore.push_back(s.as_string());
    }
  }
  return c;
}

}  // namespace

const char* quant_method_name(QuantMethod m) {
  switch (m) {
    case QuantMethod::kNone: return "none";
    case QuantMethod::kAwq: return "awq";
    case QuantMethod::kGptq: return "gptq";
    case QuantMethod::kCompressedTensors: return "compressed-tensors";
    case QuantMethod::kFp8Online: return "fp8";
  }
  return "unknown";
}

const char* quant_scheme_name(QuantScheme s) {
  switch (s) {
    case QuantScheme::kNone: return "none";
    case QuantScheme::kW4A16: return "w4a16";
    case QuantScheme::kW8A16: return "w8a16";
    case QuantScheme::kW8A8Int8: return "w8a8-int8";
    case QuantScheme::kW8A8Fp8: return "w8a8-fp8";
  }
  return "unknown";
}

bool QuantConfig::ignored(const std::string& name) const {
  for (const std::string& p : ignore) {
    if (p.rfind("re:", 0) == 0) {
      try {
        if (std::regex_match(name, std::regex(p.substr(3)))) return true;
      } catch (const std::regex_error&) {
        ELI_THROW(kModelLoad, "quantization_config ignore pattern '", p, "' is not a valid regular expression");
      }
    } else if (name == p || (name.size() > p.size() && name.compare(name.size() - p.size(), p.size(), p) == 0 &&
                             name[name.size() - p.size() - 1] == '.')) {
      return true;  // exact, or the last components ("lm_head", "mlp.down_proj")
    }
  }
  return false;
}

std::string QuantConfig::describe() const {
  if (method == QuantMethod::kNone) return "none";
  std::string s = std::string(quant_method_name(method)) + " " + quant_scheme_name(scheme);
  if (scheme == QuantScheme::kW4A16 || scheme == QuantScheme::kW8A16) {
    s += group_size > 0 ? " g" + std::to_string(group_size) : " per-channel";
  }
  if (act_order) s += " act-order";
  if (static_input_scale) s += " static-input-scale";
  return s;
}

QuantConfig parse_quant_config(const JsonValue& config, const std::string& source) {
  const JsonValue* q = config.is_object() ? get(config, "quantization_config") : nullptr;
  if (q == nullptr) return QuantConfig{};
  if (!q->is_object()) malformed(source, "must be an object (got ", q->type_name(), ")");
  const JsonValue* m = get(*q, "quant_method");
  if (m == nullptr || !m->is_string()) malformed(source, "quant_method is missing or not a string");
  const std::string method = lower(m->as_string());
  if (method == "awq") return parse_awq(*q, source);
  if (method == "gptq") return parse_gptq(*q, source);
  if (method == "compressed-tensors" || method == "compressed_tensors") return parse_compressed(*q, source);
  unsupported(source, "quant_method '", m->as_string(), "' is not supported; ", kSupportedMethods,
              " (convert the checkpoint to one of those, or use a GGUF)");
}

QuantConfig resolve_quantization(const std::string& option, const QuantConfig& ckpt, bool checkpoint_dense,
                                 const std::string& model) {
  const std::string o = lower(option.empty() ? std::string("auto") : option);
  if (o == "auto") return ckpt;
  const char* have = quant_method_name(ckpt.method);
  auto mismatch = [&]() {
    ELI_THROW(kInvalidArgument, "quantization='", option, "' but ", model, " is ",
              ckpt.quantized() ? std::string("quantized with ") + have + " (" + ckpt.describe() + ")"
                               : std::string("not quantized"),
              "; pass quantization='auto' (or '", have, "')");
  };
  if (o == "none") {
    if (ckpt.quantized()) mismatch();
    return ckpt;
  }
  if (o == "awq" || o == "gptq" || o == "compressed-tensors") {
    if (std::string(have) != o) mismatch();
    return ckpt;
  }
  if (o == "fp8") {
    if (ckpt.method == QuantMethod::kCompressedTensors && ckpt.scheme == QuantScheme::kW8A8Fp8) return ckpt;
    if (ckpt.quantized()) mismatch();
    ELI_CHECK_KIND(kInvalidArgument, checkpoint_dense, "quantization='fp8' quantizes a 16/32-bit checkpoint at load; ",
                   model, " stores its weights in GGUF blocks");
    QuantConfig c;
    c.method = QuantMethod::kFp8Online;
    c.scheme = QuantScheme::kW8A8Fp8;
    c.bits = 8;
    c.ignore = {"lm_head"};
    return c;
  }
  ELI_THROW(kInvalidArgument, "quantization must be one of auto, awq, gptq, compressed-tensors, fp8, none (got '",
            option, "')");
}

}  // namespace eli
