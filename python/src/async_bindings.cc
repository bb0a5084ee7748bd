// python/src/async_bindings.cc: _eli.AsyncEngine, the engine on its own C++ loop thread (see
// include/eli/async_engine.h). Every call that can wait (load, admission, score, output waits,
// shutdown) releases the GIL; outputs cross as tuples (request_id, token, logprob, top_logprobs,
// finish, error, extra), the same shape as _eli.Engine.step() (extra: convert.h output_extra).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <chrono>

#include "eli/async_engine.h"
#include "python/src/convert.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace eli {
namespace {

// None when nothing more will come; otherwise a (possibly empty) list of output tuples.
nb::object outputs_to_py(bool more, const std::vector<TokenOutput>& outs) {
  if (!more && outs.empty()) return nb::none();
  nb::list result;
  for (const TokenOutput& o : outs) {
    result.append(nb::make_tuple(o.request_id, o.token, o.logprob, o.top_logprobs, finish_reason_name(o.finish),
                                 o.error, output_extra(o)));
  }
  return std::move(result);
}

nb::object wait_outputs(AsyncEngine& e, int timeout_ms) {
  std::vector<TokenOutput> outs;
  bool more;
  {
    nb::gil_scoped_release release;
    more = e.wait_outputs(&outs, timeout_ms);
  }
  return outputs_to_py(more, outs);
}

nb::object wait_request_outputs(AsyncEngine& e, const std::vector<int64_t>& ids, int timeout_ms) {
  std::vector<TokenOutput> outs;
  bool more;
  {
    nb::gil_scoped_release release;
    more = e.wait_request_outputs(ids, &outs, timeout_ms);
  }
  return outputs_to_py(more, outs);
}

nb::ndarray<nb::numpy, float, nb::ndim<2>> score(AsyncEngine& e, const std::vector<int32_t>& ids) {
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

std::vector<int64_t> add_requests(AsyncEngine& e, const std::vector<std::vector<int32_t>>& prompts,
                                  const std::vector<SamplingParams>& ps) {
  nb::gil_scoped_release release;
  return e.add_requests(prompts, ps);
}

nb::dict health(const AsyncEngine& e) {
  nb::dict d;
  d["healthy"] = e.healthy();
  d["error"] = e.error();
  d["steps"] = e.steps();
  d["busy"] = e.busy();
  d["queued_outputs"] = e.queued_outputs();
  d["seconds_since_last_step"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - e.last_step_time()).count();
  return d;
}

}  // namespace

void bind_async_engine(nb::module_& m) {
  nb::class_<AsyncEngine>(m, "AsyncEngine")
      .def("__init__",
           [](AsyncEngine* self, const EngineConfig& cfg) {
             EngineConfig c = cfg;
             nb::gil_scoped_release release;
             new (self) AsyncEngine(c);
           },
           "config"_a)
      .def("info", [](const AsyncEngine& e) { return engine_info_to_dict(e.info()); })
      .def("add_request",
           [](AsyncEngine& e, const std::vector<int32_t>& prompt, const SamplingParams& params) {
             SamplingParams p = params;
             nb::gil_scoped_release release;
             return e.add_request(prompt, p);
           },
           "prompt"_a, "params"_a)
      .def("add_requests", &add_requests, "prompts"_a, "params"_a)
      .def("abort_request", &AsyncEngine::abort_request, "request_id"_a, nb::call_guard<nb::gil_scoped_release>())
      .def("wait_outputs", &wait_outputs, "timeout_ms"_a)
      .def("wait_request_outputs", &wait_request_outputs, "request_ids"_a, "timeout_ms"_a)
      .def("score", &score, "token_ids"_a)
      .def("stats", [](const AsyncEngine& e) { return engine_stats_to_dict(e.stats()); })
      .def("queued_outputs", &AsyncEngine::queued_outputs)
      .def("healthy", &AsyncEngine::healthy)
      .def("error", &AsyncEngine::error)
      .def("health", &health)
      .def("shutdown", &AsyncEngine::shutdown, "drain"_a = false, nb::call_guard<nb::gil_scoped_release>())
      .def("pause_after_steps", &AsyncEngine::pause_after_steps, "n"_a)
      .def("inject_step_fault", &AsyncEngine::inject_step_fault, "after_steps"_a, "message"_a);
}

}  // namespace eli
