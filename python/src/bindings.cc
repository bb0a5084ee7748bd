// python/src/bindings.cc: the _eli extension module. Bindings only translate: typed classes (the
// EngineConfig), dicts and lists <-> the C++ structs of include/eli, eli::Error kinds -> Python
// exception types. Long calls (load, step, score) release the GIL.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstring>

#include "eli/engine.h"
#include "eli/error.h"
#include "python/src/convert.h"
#include "runtime/core/fault_injection.h"
#include "runtime/device/device.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace eli {
void bind_async_engine(nb::module_& m);  // python/src/async_bindings.cc
void bind_quantize(nb::module_& m);      // python/src/quantize_bindings.cc
void bind_gguf_quantize(nb::module_& m);  // python/src/gguf_quantize_bindings.cc
namespace {

nb::ndarray<nb::numpy, float, nb::ndim<2>> score(Engine& e, const std::vector<int32_t>& ids) {
  std::vector<float>* data;
  {
    nb::gil_scoped_release release;
    data = new std::vector<float>(e.score(ids));
  }
  nb::capsule owner(data, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
  const size_t rows = ids.size();
  const size_t cols = rows == 0 ? 0 : data->size() / rows;
  return nb::ndarray<nb::numpy, float, nb::ndim<2>>(data->data(), {rows, cols}, owner);
}

nb::list step(Engine& e) {
  std::vector<TokenOutput> outs;
  {
    nb::gil_scoped_release release;
    outs = e.step();
  }
  nb::list result;
  for (const TokenOutput& o : outs) {
    result.append(nb::make_tuple(o.request_id, o.token, o.logprob, o.top_logprobs,
                                 finish_reason_name(o.finish), o.error,
                                 output_extra(o)));
  }
  return result;
}

}  // namespace
}  // namespace eli

NB_MODULE(_eli, m) {
  using namespace eli;
  m.doc() = "eli native engine (implementation detail; use the eli package)";
  register_error_translator();
  bind_engine_config(m);
  bind_sampling_params(m);

  nb::class_<Engine>(m, "Engine")
      .def("__init__",
           [](Engine* self, const EngineConfig& cfg) {
             EngineConfig c = cfg;
             nb::gil_scoped_release release;
             new (self) Engine(c);
           },
           "config"_a)
      .def("info", [](const Engine& e) { return engine_info_to_dict(e.info()); })
      .def("add_request",
           [](Engine& e, const std::vector<int32_t>& prompt, const SamplingParams& params) {
             return e.add_request(prompt, params);
           },
           "prompt"_a, "params"_a)
      .def("abort_request", &Engine::abort_request, "request_id"_a)
      .def("step", &step)
      .def("has_unfinished", &Engine::has_unfinished)
      .def("score", &score, "token_ids"_a)
      .def("stats", [](const Engine& e) { return engine_stats_to_dict(e.stats()); })
      .def("memory_stats", [](const Engine& e) { return memory_stats_to_dict(e.memory_stats()); });

  bind_async_engine(m);
  bind_quantize(m);
  bind_gguf_quantize(m);

  m.def("inspect_model", &inspect_model, "path"_a,
        "Reads a model's headers and metadata (no weights) and returns a dict.");
  m.def(
      "plan_placement", [](const EngineConfig& cfg) { return placement_report_to_dict(plan_weight_placement(cfg)); },
      "config"_a, "Where the weights would live under an EngineConfig (weight offloading), without uploading them.");
  m.def("cuda_device_count", &cuda_device_count);
  m.def("cuda_compiled", &cuda_compiled);
  m.def("list_kernels", &list_kernels);

  // Fault injection for tests (runtime/core/fault_injection.h, docs/fault_injection.md): compiled
  // into every build, inert until armed; process-global.
  m.def("fault_points", &fault_point_names);
  m.def("arm_fault", nb::overload_cast<const std::string&, const std::string&>(&arm_fault), "name"_a,
        "spec"_a = "", "Arms a fault point, e.g. arm_fault(\"preempt_storm\", \"prob=0.5:seed=1\").");
  m.def("arm_faults", &arm_faults, "faults"_a, "Arms an ELI_FAULTS-style list (all or nothing).");
  m.def("disarm_fault", [](const std::string& name) { disarm_fault(fault_point_from_name(name)); }, "name"_a);
  m.def("disarm_faults", &disarm_all_faults);
  m.def("fault_armed", [](const std::string& name) { return fault_armed(fault_point_from_name(name)); }, "name"_a);
  m.def("fault_counts",
        [](const std::string& name) {
          FaultCounts c = fault_counts(fault_point_from_name(name));
          return std::make_pair(c.checks, c.fires);
        },
        "name"_a, "(checks, fires) since the point was last armed.");
  m.def("fault_env_enabled", &fault_env_enabled, "Whether this build reads ELI_FAULTS (test builds only).");
}
