// runtime/device/cuda/cuda_step_graph.cc: StepGraph as a CUDA graph (see runtime/device/step_graph.h).
// Capture uses cudaStreamCaptureModeThreadLocal, so other threads' CUDA calls are unaffected; a
// failure inside the capture ends the capture before the error propagates, leaving the stream usable.
#include <cuda_runtime.h>

#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/step_graph.h"

namespace eli {

namespace {

class CudaStepGraph final : public StepGraph {
 public:
  CudaStepGraph(cudaGraph_t graph, cudaGraphExec_t exec) : graph_(graph), exec_(exec) {}
  ~CudaStepGraph() override {
    ELI_CUDA_WARN(cudaGraphExecDestroy(exec_));
    ELI_CUDA_WARN(cudaGraphDestroy(graph_));
  }
  void replay(void* stream) override { ELI_CUDA_CHECK(cudaGraphLaunch(exec_, static_cast<cudaStream_t>(stream))); }

 private:
  cudaGraph_t graph_;
  cudaGraphExec_t exec_;
};

}  // namespace

bool graphs_supported() { return true; }

std::unique_ptr<StepGraph> capture_step_graph(void* stream_ptr, const std::function<void()>& enqueue) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  ELI_CHECK(stream != nullptr, "graph capture needs a created stream, not the legacy default stream");
  ELI_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue();
  } catch (...) {
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(stream, &broken);  // ends the capture whatever its state
    if (broken != nullptr) cudaGraphDestroy(broken);
    (void)cudaGetLastError();
    throw;
  }
  cudaGraph_t graph = nullptr;
  ELI_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  if (err != cudaSuccess) {
    cudaGraphDestroy(graph);
    ELI_CUDA_CHECK(err);
  }
  return std::make_unique<CudaStepGraph>(graph, exec);
}

}  // namespace eli
