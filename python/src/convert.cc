// python/src/convert.cc: see convert.h.
#include "python/src/convert.h"

#include <cstdlib>
#include <string>
#include <system_error>

#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "eli/async_engine.h"
#include "eli/error.h"
#include "kernels/registry.h"
#include "runtime/model/gguf.h"
#include "runtime/model/model_files.h"
#include "python/src/token_constraint_py.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace eli {
namespace {

nb::object gguf_value_to_py(const GgufValue& v) {
  switch (v.type) {
    case GgufType::kString: return nb::str(v.s.c_str(), v.s.size());
    case GgufType::kBool: return nb::bool_(v.i != 0);
    case GgufType::kF32:
    case GgufType::kF64: return nb::float_(v.f);
    case GgufType::kArray: {
      nb::list l;
      if (v.elem_type == GgufType::kString) {
        for (const std::string& s : v.strings) l.append(nb::str(s.c_str(), s.size()));
      } else if (v.elem_type == GgufType::kF32 || v.elem_type == GgufType::kF64) {
        for (double f : v.floats) l.append(nb::float_(f));
      } else if (v.elem_type == GgufType::kBool) {
        for (int64_t i : v.ints) l.append(nb::bool_(i != 0));
      } else {
        for (int64_t i : v.ints) l.append(nb::int_(i));
      }
      return std::move(l);
    }
    default:
      if (v.u_big) return nb::int_(v.u);
      return nb::int_(v.i);
  }
}

// eli::Error texts end in " [file.cc:123: check failed: cond]" (runtime/core/error.cc): for bug
// reports, not for users (nor for HTTP clients). Dropped unless ELI_DEBUG is set (non-empty, not "0").
std::string user_message(const std::string& text) {
  const char* debug = std::getenv("ELI_DEBUG");
  if (debug != nullptr && debug[0] != '\0' && std::string(debug) != "0") return text;
  if (text.empty() || text.back() != ']') return text;
  const size_t open = text.rfind(" [");
  if (open == std::string::npos) return text;
  // The location is "name.ext:digits" up to a ':' or the closing bracket.
  const size_t colon = text.find(':', open);
  if (colon == std::string::npos || colon == open + 2) return text;
  size_t i = colon + 1;
  const size_t digits = i;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == digits || (text[i] != ']' && text[i] != ':')) return text;
  const std::string file = text.substr(open + 2, colon - open - 2);
  if (file.find('.') == std::string::npos || file.find(' ') != std::string::npos) return text;
  return text.substr(0, open);
}

}  // namespace

void register_error_translator() {
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      nb::object errors = nb::module_::import_("eli.errors");
      const char* cls = "EliError";
      switch (e.kind()) {
        case ErrorKind::kModelLoad: cls = "ModelLoadError"; break;
        case ErrorKind::kInvalidArgument: cls = "InvalidRequestError"; break;
        case ErrorKind::kOutOfMemory: cls = "OutOfMemoryError"; break;
        case ErrorKind::kUnsupported:
        case ErrorKind::kNotCompiled: cls = "UnsupportedError"; break;
        case ErrorKind::kDevice:
          // A dead AsyncEngine refusing new work (include/eli/async_engine.h).
          cls = std::string(e.what()).rfind(kEngineDeadPrefix, 0) == 0 ? "EngineDeadError" : "EliError";
          break;
        default: cls = "EliError"; break;
      }
      PyErr_SetString(errors.attr(cls).ptr(), user_message(e.what()).c_str());
    } catch (const std::system_error& e) {
      // E.g. a worker thread that could not be created (EAGAIN at the process's thread limit): an
      // eli error saying what to do, not a bare RuntimeError("Resource temporarily unavailable").
      nb::object errors = nb::module_::import_("eli.errors");
      std::string text = std::string("system error: ") + e.what();
      if (e.code() == std::errc::resource_unavailable_try_again) {
        text += " (a thread or another system resource could not be created: the process or user limit is "
                "reached; lower n_threads or raise the limit, e.g. ulimit -u)";
      }
      PyErr_SetString(errors.attr("EliError").ptr(), text.c_str());
    }
  });
}

void bind_engine_config(nb::module_& m) {
  // EngineConfig as a typed class: one read-write attribute per row of eli/engine_options.def.
  auto cls = nb::class_<EngineConfig>(m, "EngineConfig",
                                      "Engine options (include/eli/engine_options.def); eli.LLM fills one.")
                 .def(nb::init<>())
                 .def_rw("model", &EngineConfig::model, "HF directory or .gguf file");
#define ELI_ENGINE_OPTION(KIND, NAME, DEFAULT, MIN, MAX, LIMIT, PY_DEFAULT, CHOICES, FLAG, GROUP, DOC) \
  cls.def_rw(#NAME, &EngineConfig::NAME, DOC);
#include "eli/engine_options.def"
#undef ELI_ENGINE_OPTION

  // The table itself: [{name, kind, default, min, max, limit, choices, doc}] in table order.
  m.def("engine_options", [] {
    const EngineConfig defaults;
    nb::dict by_name;
#define ELI_ENGINE_OPTION(KIND, NAME, DEFAULT, MIN, MAX, LIMIT, PY_DEFAULT, CHOICES, FLAG, GROUP, DOC) \
  by_name[#NAME] = nb::cast(defaults.NAME);
#include "eli/engine_options.def"
#undef ELI_ENGINE_OPTION
    nb::list rows;
    for (const EngineOptionInfo& o : engine_option_infos()) {
      nb::dict row;
      row["name"] = o.name;
      row["kind"] = o.kind;
      row["default"] = by_name[o.name];
      row["min"] = o.min;
      row["max"] = o.max;
      row["limit"] = o.limit;
      row["choices"] = o.choices;
      row["doc"] = o.doc;
      rows.append(row);
    }
    return rows;
  }, "The engine option table (include/eli/engine_options.def) as a list of dicts.");
  m.def("hardware_threads", &hardware_threads);
  m.def("max_threads_per_cpu", [] { return kMaxThreadsPerCpu; });
  m.def("validate_engine_config", &validate_engine_config, "config"_a,
        "Checks every option against its bounds (eli.InvalidRequestError naming the first bad one).");
}

void bind_sampling_params(nb::module_& m) {
  // The engine's SamplingParams, typed (eli.SamplingParams.engine_params() fills one after checking
  // the Python types, so a setter never sees a wrong type).
  nb::class_<SamplingParams>(m, "SamplingParams", "include/eli/sampling_params.h (eli.SamplingParams builds one)")
      .def(nb::init<>())
      .def_rw("max_tokens", &SamplingParams::max_tokens)
      .def_rw("temperature", &SamplingParams::temperature)
      .def_rw("top_k", &SamplingParams::top_k)
      .def_rw("top_p", &SamplingParams::top_p)
      .def_rw("min_p", &SamplingParams::min_p)
      .def_rw("repetition_penalty", &SamplingParams::repetition_penalty)
      .def_rw("presence_penalty", &SamplingParams::presence_penalty)
      .def_rw("frequency_penalty", &SamplingParams::frequency_penalty)
      .def_rw("seed", &SamplingParams::seed)
      .def_rw("has_seed", &SamplingParams::has_seed)
      .def_rw("stop_token_ids", &SamplingParams::stop_token_ids)
      .def_rw("ignore_eos", &SamplingParams::ignore_eos)
      .def_rw("logprobs", &SamplingParams::logprobs)
      .def_rw("cache_salt", &SamplingParams::cache_salt)
      .def_rw("prompt_logprobs", &SamplingParams::prompt_logprobs)
      .def_rw("pooling", &SamplingParams::pooling)
      .def_rw("logit_bias", &SamplingParams::logit_bias)
      .def_rw("allowed_token_ids", &SamplingParams::allowed_token_ids)
      .def_rw("min_tokens", &SamplingParams::min_tokens)
      // A Python object with fill_mask/accept/is_finished (python/src/token_constraint_py.h) or None.
      .def_prop_rw(
          "constraint", [](const SamplingParams& p) { return constraint_to_py(p.constraint); },
          [](SamplingParams& p, nb::handle obj) { p.constraint = constraint_from_py(obj); }, nb::arg("value").none());
  m.def("validate_sampling_params", &validate_sampling_params, "params"_a, "vocab_size"_a,
        "The engine's checks of a request's sampling parameters (eli.InvalidRequestError naming the field).");
  m.def("max_logprobs", [] { return kMaxLogprobs; });
}

nb::dict spec_to_dict(const ModelSpec& s) {
  nb::dict d;
  d["architecture"] = s.architecture;
  d["vocab_size"] = s.vocab_size;
  d["hidden_size"] = s.hidden_size;
  d["intermediate_size"] = s.intermediate_size;
  d["num_layers"] = s.n_layers;
  d["num_heads"] = s.n_heads;
  d["num_kv_heads"] = s.n_kv_heads;
  d["head_dim"] = s.head_dim;
  d["max_position_embeddings"] = s.max_position;
  d["rms_norm_eps"] = s.rms_norm_eps;
  d["rope_theta"] = s.rope.theta;
  const char* scaling[] = {"none", "linear", "dynamic", "llama3", "yarn", "longrope"};
  static_assert(sizeof(scaling) / sizeof(scaling[0]) == static_cast<size_t>(RopeScaling::kLongRope) + 1);
  d["rope_scaling"] = scaling[static_cast<int>(s.rope.scaling)];
  d["rope_factor"] = s.rope.factor;
  d["tie_word_embeddings"] = s.tie_word_embeddings;
  d["attention_bias"] = s.attention_bias;
  d["qk_norm"] = s.qk_norm;
  d["sliding_window"] = s.sliding_window;
  d["layer_sliding_windows"] = s.layer_sliding_windows;  // empty: every layer uses sliding_window
  d["local_rope_theta"] = s.has_local_rope ? nb::object(nb::float_(s.local_rope.theta)) : nb::none();
  d["hidden_act"] = s.hidden_act;
  d["query_pre_attn_scalar"] = s.query_pre_attn_scalar;
  d["bos_token_id"] = s.bos_token_id;
  d["eos_token_ids"] = s.eos_token_ids;
  return d;
}

nb::dict engine_info_to_dict(const EngineInfo& info) {
  nb::dict d;
  d["spec"] = spec_to_dict(info.spec);
  d["format"] = info.format;
  d["weight_dtype"] = info.weight_dtype;
  d["device"] = info.device;
  d["num_params"] = info.n_params;
  d["max_model_len"] = info.max_model_len;
  d["block_size"] = info.block_size;
  d["num_kv_blocks"] = info.num_kv_blocks;
  d["num_kv_window_blocks"] = info.num_kv_window_blocks;
  d["kv_cache_dtype"] = info.kv_cache_dtype;
  nb::dict mem;
  mem["budget_bytes"] = info.memory.budget_bytes;
  mem["total_bytes"] = info.memory.total_bytes;
  mem["weights_bytes"] = info.memory.weights_bytes;
  mem["weights_host_bytes"] = info.memory.weights_host_bytes;
  mem["weights_disk_bytes"] = info.memory.weights_disk_bytes;
  mem["workspace_bytes"] = info.memory.workspace_bytes;
  mem["kv_bytes"] = info.memory.kv_bytes;
  mem["headroom_bytes"] = info.memory.headroom_bytes;
  d["memory"] = mem;
  d["num_threads"] = info.n_threads;
  d["weight_placement"] = info.weight_placement;
  return d;
}

nb::dict placement_report_to_dict(const WeightPlacementReport& r) {
  nb::dict d;
  d["device"] = r.device;
  d["placement"] = r.placement;
  d["budget_bytes"] = r.budget_bytes;
  d["resident_bytes"] = r.resident_bytes;
  d["ring_bytes"] = r.ring_bytes;
  d["host_bytes"] = r.host_bytes;
  d["disk_bytes"] = r.disk_bytes;
  d["n_layers"] = r.n_layers;
  d["offloaded_layers"] = r.offloaded_layers;
  d["cpu_layers"] = r.cpu_layers;
  return d;
}

nb::dict memory_stats_to_dict(const MemoryStats& s) {
  nb::dict d;
  d["reserved_bytes"] = s.reserved_bytes;
  d["in_use_bytes"] = s.in_use_bytes;
  d["peak_in_use_bytes"] = s.peak_in_use_bytes;
  d["n_driver_allocs"] = s.n_driver_allocs;
  d["n_allocs"] = s.n_allocs;
  return d;
}

nb::dict engine_stats_to_dict(const EngineStats& s) {
  nb::dict d;
  d["kv_blocks_total"] = s.kv_blocks_total;
  d["kv_blocks_free"] = s.kv_blocks_free;
  d["kv_window_blocks_total"] = s.kv_window_blocks_total;
  d["kv_window_blocks_free"] = s.kv_window_blocks_free;
  d["num_running"] = s.num_running;
  d["num_waiting"] = s.num_waiting;
  d["preemptions"] = s.preemptions;
  d["swaps_out"] = s.swaps_out;
  d["swaps_in"] = s.swaps_in;
  d["kv_bytes_to_host"] = s.kv_bytes_to_host;
  d["kv_bytes_from_host"] = s.kv_bytes_from_host;
  d["host_prefix_hits"] = s.host_prefix_hits;
  d["disk_prefix_hits"] = s.disk_prefix_hits;
  d["kv_bytes_to_disk"] = s.kv_bytes_to_disk;
  d["kv_bytes_from_disk"] = s.kv_bytes_from_disk;
  d["prefix_cache_hits"] = s.prefix_cache_hits;
  d["prefix_cache_queries"] = s.prefix_cache_queries;
  d["prompt_tokens"] = s.prompt_tokens;
  d["generated_tokens"] = s.generated_tokens;
  d["steps"] = s.steps;
  return d;
}

nb::dict inspect_model(const std::string& path) {
  ModelFiles files;
  {
    nb::gil_scoped_release release;
    files = open_model_files(path);
  }
  nb::dict d;
  d["path"] = files.path;
  d["format"] = files.format;
  d["spec"] = spec_to_dict(files.spec);
  nb::list tensors;
  uint64_t n_params = 0;
  for (const auto& [name, t] : files.weights->tensors()) {
    uint64_t n = 1;
    for (int64_t x : t.shape) n *= static_cast<uint64_t>(x);
    n_params += n;
    tensors.append(nb::make_tuple(name, dtype_name(t.dtype), t.shape));
  }
  d["tensors"] = tensors;
  d["num_params"] = n_params;
  if (files.gguf) {
    nb::dict meta;
    for (const auto& [key, value] : files.gguf->kvs()) meta[nb::str(key.c_str(), key.size())] = gguf_value_to_py(value);
    d["gguf_metadata"] = meta;
  }
  return d;
}

nb::list list_kernels() {
  nb::list l;
  for (const KernelEntry& e : all_kernels()) {
    l.append(nb::make_tuple(op_name(e.op), e.device == DeviceKind::kCUDA ? "cuda" : "cpu", dtype_name(e.dtype),
                            e.variant, e.priority, e.usable == nullptr || e.usable()));
  }
  return l;
}

nb::object output_extra(const TokenOutput& o) {
  if (o.prompt_logprobs.empty() && o.embedding.empty()) return nb::none();
  nb::dict d;
  if (!o.prompt_logprobs.empty()) d["prompt_logprobs"] = nb::cast(o.prompt_logprobs);
  if (!o.embedding.empty()) d["embedding"] = nb::cast(o.embedding);
  return std::move(d);
}

}  // namespace eli
