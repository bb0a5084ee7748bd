// python/src/convert.cc: see convert.h.
#include "python/src/convert.h"

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "eli/async_engine.h"
#include "eli/error.h"
#include "kernels/registry.h"
#include "runtime/model/gguf.h"
#include "runtime/model/model_files.h"

namespace nb = nanobind;

namespace eli {
namespace {

template <typename T>
void get(const nb::dict& d, const char* key, T* out) {
  if (d.contains(key) && !d[key].is_none()) *out = nb::cast<T>(d[key]);
}

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
      PyErr_SetString(errors.attr(cls).ptr(), e.what());
    }
  });
}

EngineConfig engine_config_from_dict(const nb::dict& d) {
  EngineConfig c;
  get(d, "model", &c.model);
  get(d, "device", &c.device);
  get(d, "dtype", &c.dtype);
  get(d, "n_threads", &c.n_threads);
  get(d, "block_size", &c.block_size);
  get(d, "num_kv_blocks", &c.num_kv_blocks);
  get(d, "kv_cache_bytes", &c.kv_cache_bytes);
  get(d, "kv_cache_dtype", &c.kv_cache_dtype);
  get(d, "gpu_memory_utilization", &c.gpu_memory_utilization);
  get(d, "gpu_memory_bytes", &c.gpu_memory_bytes);
  get(d, "max_num_seqs", &c.max_num_seqs);
  get(d, "max_num_batched_tokens", &c.max_num_batched_tokens);
  get(d, "max_model_len", &c.max_model_len);
  get(d, "enable_chunked_prefill", &c.enable_chunked_prefill);
  get(d, "enable_prefix_caching", &c.enable_prefix_caching);
  get(d, "enable_cuda_graphs", &c.enable_cuda_graphs);
  get(d, "async_scheduling", &c.async_scheduling);
  get(d, "seed", &c.seed);
  return c;
}

SamplingParams sampling_params_from_dict(const nb::dict& d) {
  SamplingParams p;
  get(d, "max_tokens", &p.max_tokens);
  get(d, "temperature", &p.temperature);
  get(d, "top_k", &p.top_k);
  get(d, "top_p", &p.top_p);
  get(d, "min_p", &p.min_p);
  get(d, "repetition_penalty", &p.repetition_penalty);
  get(d, "presence_penalty", &p.presence_penalty);
  get(d, "frequency_penalty", &p.frequency_penalty);
  if (d.contains("seed") && !d["seed"].is_none()) {
    p.seed = nb::cast<uint64_t>(d["seed"]);
    p.has_seed = true;
  }
  get(d, "stop_token_ids", &p.stop_token_ids);
  get(d, "ignore_eos", &p.ignore_eos);
  get(d, "logprobs", &p.logprobs);
  get(d, "cache_salt", &p.cache_salt);
  return p;
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
  const char* scaling[] = {"none", "linear", "dynamic", "llama3", "yarn"};
  d["rope_scaling"] = scaling[static_cast<int>(s.rope.scaling)];
  d["rope_factor"] = s.rope.factor;
  d["tie_word_embeddings"] = s.tie_word_embeddings;
  d["attention_bias"] = s.attention_bias;
  d["qk_norm"] = s.qk_norm;
  d["sliding_window"] = s.sliding_window;
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
  d["kv_cache_dtype"] = info.kv_cache_dtype;
  nb::dict mem;
  mem["budget_bytes"] = info.memory.budget_bytes;
  mem["total_bytes"] = info.memory.total_bytes;
  mem["weights_bytes"] = info.memory.weights_bytes;
  mem["workspace_bytes"] = info.memory.workspace_bytes;
  mem["kv_bytes"] = info.memory.kv_bytes;
  mem["headroom_bytes"] = info.memory.headroom_bytes;
  d["memory"] = mem;
  d["num_threads"] = info.n_threads;
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
  d["num_running"] = s.num_running;
  d["num_waiting"] = s.num_waiting;
  d["preemptions"] = s.preemptions;
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

}  // namespace eli
