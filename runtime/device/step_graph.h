// runtime/device/step_graph.h: a captured, replayable sequence of device work (a CUDA graph) behind
// a plain C++ interface, so that model code compiled for every build can use it.
//
// Invariants: capture() runs `enqueue` once with `stream` in capture mode (nothing executes then);
// the work must only launch kernels / async copies on that stream (no allocation, no
// synchronization, no host reads of device results). replay() re-launches exactly the captured
// work with the same pointers and scalars, ordered on the stream given. In a CPU-only build
// capture() throws eli::Error(kNotCompiled) and graphs_supported() is false.
#pragma once

#include <functional>
#include <memory>

namespace eli {

class StepGraph {
 public:
  virtual ~StepGraph() = default;
  virtual void replay(void* stream) = 0;
};

bool graphs_supported();
std::unique_ptr<StepGraph> capture_step_graph(void* stream, const std::function<void()>& enqueue);

}  // namespace eli
