// runtime/device/step_graph_stub.cc: StepGraph for builds without CUDA (see step_graph.h); the CUDA
// build compiles runtime/device/cuda/cuda_step_graph.cc instead.
#include "runtime/device/step_graph.h"

#include "eli/error.h"

#ifndef ELI_WITH_CUDA
namespace eli {

bool graphs_supported() { return false; }

std::unique_ptr<StepGraph> capture_step_graph(void*, const std::function<void()>&) {
  ELI_THROW(kNotCompiled, "device graphs need the CUDA backend, which this build does not have");
}

}  // namespace eli
#endif
