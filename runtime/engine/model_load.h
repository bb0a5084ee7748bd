// runtime/engine/model_load.h: the first half of starting an engine, shared by Engine's constructor
// and plan_weight_placement() (eli/engine.h; `eli info --plan`): the device and its threads, the model files,
// the weight and KV dtypes, the device budget, the model loaded on the host (zero-copy views of the
// mapped files where it can; or the parallel ranks), and the weight placement plan with the budget
// checked. Nothing is uploaded yet.
//
// Invariants: exactly one of `model` / `parallel` is set (neither for a placement report with a
// CPU stage); offload streams only without parallelism (with the CPU stage its plan only sized it);
// on a device the resident weights plus the offload ring fit the budget (else kOutOfMemory); GPU
// ranks each get a budget on their device (ranks sharing a GPU split it evenly), taken before any
// rank uploads, and their weights fit it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "eli/engine.h"
#include "runtime/core/phase_timer.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/engine/memory_plan.h"
#include "runtime/model/model.h"
#include "runtime/model/model_files.h"
#include "runtime/parallel/parallel_config.h"
#include "runtime/parallel/parallel_runner.h"
#include "runtime/runner/offload_compute.h"
#include "runtime/runner/offload_plan.h"

namespace eli {

struct LoadedModel {
  DeviceId dev{};
  bool on_device = false;
  ParallelPlan par;
  std::unique_ptr<Device> device;
  std::unique_ptr<ThreadPool> pool;
  ModelFiles files;
  DType weight_dtype = DType::kF32, kv_dtype = DType::kF32;
  MemoryBudget budget;  // device only
  std::vector<MemoryBudget> rank_budgets;  // parallel ranks on GPUs: each rank's share of its device's
  std::unique_ptr<Model> model;
  std::unique_ptr<ParallelRunner> parallel;
  OffloadPlan offload;
  // offload_compute: cpu_layers > 0 when the CPU computes the offloaded layers; `parallel` then
  // holds the two stages (CPU, device) and `model` is unset (runtime/runner/offload_compute.h).
  OffloadComputeChoice compute;
  int64_t max_logits = 0;  // logits rows a step may want (the workspace and offload plans use it)
};

// aux_rows: the engine's extra logits rows per step (prompt logprobs, embeddings). Marks the
// trace's phases. build_ranks = false (the placement report): the CPU stage is decided, not built.
LoadedModel load_model_for(const EngineConfig& config, int64_t aux_rows, PhaseTimer& trace, bool build_ranks = true);


}  // namespace eli
