// runtime/runner/offload_compute.h: whether the host CPU computes the offloaded layers (llama.cpp's
// -ngl way) instead of streaming them to the GPU each step, and the start-up measurements the
// choice rests on (option offload_compute; docs/offloading.md, "Computing offloaded layers on the
// CPU").
//
// Modes: "stream" (every offloaded layer is copied to the device each step: runtime/runner/
// weight_streamer.h), "cpu" (the CPU computes them), "auto" (the rule below; on a CPU device, whose
// offloading only stands in for a GPU's, auto streams).
//
// The CPU stage: the offloaded layers' count comes from the streaming plan (plan_offload: the bytes
// that do not fit the device budget); the CPU computes the FIRST that many layers (and embeds) as
// pipeline stage 0 on the host, the GPU the rest and the logits as stage 1 (a mixed-kind
// ParallelRunner: runtime/parallel/parallel_runner.h). First, not last: the GPU then keeps the
// lm_head and the sampler, and the embedding table leaves the device.
//
// The rule ("auto" on a GPU): per step, streaming the n offloaded layers costs S = bytes / h2d
// (the copies, which the ring overlaps with the resident layers' compute); computing them on the
// CPU costs C(b) = max(bytes / cpu_read, 2 b params / cpu_flops) for a step of b tokens. The CPU is
// chosen when it is faster both for one token and for a step of min(max_num_seqs, 32) tokens (so
// that batched decoding does not pay for the batch-1 win); otherwise streaming, whose cost does not
// grow with the batch. The rates are measured at start-up (measure_offload_rates: a pinned copy to
// the device, and eli's own CPU GEMV / GEMM kernels on a bf16 matrix with the CPU stage's threads);
// the log line says both estimates and the choice.
//
// Invariants: cpu_layers is 0 unless mode resolves to the CPU; 0 < cpu_layers < n_layers when set
// (the GPU stage keeps at least one layer).
#pragma once

#include <cstdint>
#include <string>

#include "eli/device.h"
#include "eli/model_spec.h"
#include "runtime/runner/offload_plan.h"

namespace eli {

class Device;
class ThreadPool;

enum class OffloadComputeMode { kStream, kCpu, kAuto };
// "stream" | "cpu" | "auto"; kInvalidArgument naming the value otherwise.
OffloadComputeMode parse_offload_compute(const std::string& mode);

struct OffloadRates {
  double h2d_bytes_per_s = 0;        // pinned host -> device copies
  double cpu_read_bytes_per_s = 0;   // the CPU's bf16 GEMV, weight bytes read per second (1 row)
  double cpu_flops = 0;              // the CPU's bf16 GEMM, flops per second (32 rows)
};
// Times a 64 MiB pinned copy to `device` (after a warm-up) and eli's CPU bf16 kGemv / kGemm on a
// 4096 x 4096 matrix on `pool`'s threads. Tens of milliseconds on a server CPU.
OffloadRates measure_offload_rates(Device& device, ThreadPool& pool);

struct OffloadComputeChoice {
  int64_t cpu_layers = 0;          // the first cpu_layers layers run on the CPU (0: stream them)
  uint64_t cpu_bytes = 0;          // their weights' bytes (the streaming plan's images)
  double stream_ms = 0, cpu_ms_1 = 0, cpu_ms_batch = 0;  // "auto"'s estimates per step
  int64_t batch = 0;               // the batched step "auto" weighed
  std::string reason;              // one line for the load log and weight_placement
};

// Parameters of one decoder layer of `spec` (attention and gated MLP matrices).
uint64_t layer_params(const ModelSpec& spec);
// The decision for a streaming plan `plan` (active) of a model with `spec`: see the rule above.
// `rates` is read only for kAuto on a GPU. explicit_map: the plan is an offload_map's, whose layers
// the CPU computes only when they are the first ones (0 .. k-1): otherwise "auto" streams and
// "cpu" is kInvalidArgument naming the layers.
OffloadComputeChoice choose_offload_compute(OffloadComputeMode mode, const OffloadPlan& plan, const ModelSpec& spec,
                                            DeviceKind device, const OffloadRates& rates, int64_t max_num_seqs,
                                            bool explicit_map = false);

// "layers 0-11 computed on the CPU (5.61 GiB of host memory), layers 12-31 on cuda:0;
// offload_compute=cpu" (the choice made: cpu_layers > 0).
std::string describe_cpu_stage(const OffloadComputeChoice& choice, int64_t n_layers, const std::string& device_name);

}  // namespace eli
