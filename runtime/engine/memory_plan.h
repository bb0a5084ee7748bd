// runtime/engine/memory_plan.h: the decisions made once at start-up: which dtype the weight
// matrices and the KV cache are held in, how much device memory eli may hold, and how many KV
// blocks the pool gets.
//
// CUDA (a budget, as vLLM's gpu_memory_utilization):
//   budget   = gpu_memory_bytes if > 0, else gpu_memory_utilization x the device's total memory;
//              it must not exceed what is free at start + what eli's allocator already holds.
//   headroom = 256 MiB + 2% of the budget, never planned: the driver's lazy module loads, cuBLAS /
//              cuBLASLt handles, CUDA graphs, and size-class rounding in the allocator.
//   KV       = budget - held (weights + workspace as the allocator holds them, rounding included)
//              - headroom, capped by what max_num_seqs full contexts need; explicit num_kv_blocks /
//              kv_cache_bytes must fit there too. Every shortfall is kOutOfMemory with the numbers.
//   The allocator's budget is then budget - headroom + kPoolSlackBytes: an allocation past the plan
//   (beyond a small slack for buffers that grow with the batch shape) fails with a typed error
//   instead of reaching the driver's OOM mid-step.
// CPU: min(max_num_seqs full contexts, max(avail / 8, one context), avail / 2) (default_kv_bytes;
//   avail is the host's available memory now) unless num_kv_blocks / kv_cache_bytes are given,
//   which must fit in avail (kOutOfMemory otherwise); gpu_memory_* are validated and ignored.
// Sliding-window layers beside full-attention ones (a second KV group, runtime/kv/kv_groups.h):
//   num_kv_blocks counts group 0's blocks; group 1 gets min(group 0's, window_group_blocks()),
//   enough that no running sequence waits for one, and the bytes this saves go to group 0's
//   blocks when the pool is sized from bytes.
//
// Invariants: max_model_len never exceeds the model's context; a plan never has 0 KV blocks.
// Weight dtype "auto": the CPU holds bf16 checkpoints and block-quantized GGUF ones (dequantized
// at load) in bf16, f32 and f16 checkpoints in f32 (it has no f16 matrices); CUDA uses f32 / f16
// for f32 / f16 checkpoints and bf16 for the rest (bf16, quantized GGUF).
// KV dtype "auto": the weights' 16-bit type on CUDA, else f32; the CPU has no 16-bit KV (its
// attention loops are f32). int8 / fp8 (asked for by name) go on both backends: each block is
// data_bytes + scale_bytes (runtime/kv/kv_cache.h), so the same kv_cache_bytes holds ~2x the
// tokens of a 16-bit cache and ~4x those of an f32 one, less the 4 scale bytes per (token, kv head).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eli/device.h"
#include "eli/dtype.h"
#include "eli/engine.h"
#include "runtime/core/format_bytes.h"  // format_bytes
#include "runtime/kv/kv_cache.h"
#include "runtime/model/model.h"  // KvSpec
#include "runtime/runner/offload_plan.h"

namespace eli {

class Device;
class Model;
struct ModelFiles;

DType choose_weight_dtype(const std::string& requested, const ModelFiles& files, DeviceId device);
// kv_cache_dtype: "auto", "float32"/"f32", "bfloat16"/"bf16", "float16", "int8", "fp8" (e4m3).
// kUnsupported for bf16 / f16 on the CPU and for float16 without f16 weights; kInvalidArgument
// for an unknown name. int8 / fp8 (kI8 / kF8E4M3) go on every backend (runtime/kv/kv_cache.h).
DType choose_kv_cache_dtype(const std::string& requested, DType weight_dtype, DeviceId device);
// The Engine's first check: validate_engine_config() (every option against eli/engine_options.def),
// then gpu_memory_utilization in (0, 1] (kInvalidArgument otherwise), on every device.
void validate_memory_config(const EngineConfig& config);
// GiB (2^30 bytes) options in bytes (swap_space_gb, kv_offload_gb); validate_memory_config checks
// their sum against the host's RAM.
uint64_t gib_bytes(double gib);


constexpr uint64_t kHeadroomFixedBytes = uint64_t{256} << 20;
constexpr double kHeadroomBudgetFraction = 0.02;
// How far the allocator may go past the planned weights + workspace + KV (inside the headroom).
constexpr uint64_t kPoolSlackBytes = uint64_t{64} << 20;

struct MemoryBudget {
  uint64_t budget_bytes = 0;    // what eli may hold in all
  uint64_t total_bytes = 0;     // the device's memory
  uint64_t free_bytes = 0;      // free on the device when the budget was made
  uint64_t held_bytes = 0;      // held by eli's allocator then
  uint64_t headroom_bytes = 0;  // part of the budget kept out of the plan
  double fraction = 0.0;        // gpu_memory_utilization used; 0 when gpu_memory_bytes set it
  int shares = 1;               // ranks sharing the device's budget (this is one share of it)
  // "71.23 GiB (0.90 of 79.11 GiB)" or "8.00 GiB (gpu_memory_bytes)".
  std::string describe() const;
  // The allocator's budget: budget - headroom + kPoolSlackBytes (at least 1).
  uint64_t pool_budget_bytes() const;
};

// The device budget from the config and the device's figures now (total, free, allocator's
// reserved bytes). kOutOfMemory, naming budget, free, total and what other processes use, when the
// budget exceeds free + held.
MemoryBudget plan_memory_budget(const EngineConfig& config, const Device& device);
// One of `ways` equal shares of a device's budget (budget and headroom divided): for the ranks of a
// tensor / pipeline-parallel engine that share one GPU.
MemoryBudget split_budget(const MemoryBudget& budget, int ways);
// kOutOfMemory when `weight_bytes` alone exceed the budget ("weights need X, the budget is Y
// (...)"), or leave no room for anything past the headroom.
void check_weights_fit(const MemoryBudget& budget, uint64_t weight_bytes);
// Sets the budget of the device's caching allocator (if it has one) to budget.pool_budget_bytes().
void apply_pool_budget(Device& device, const MemoryBudget& budget);

struct KvPlan {
  KvCacheShape shape;
  int64_t max_model_len = 0;
  // Device plans only (0 on the CPU):
  uint64_t available_bytes = 0;  // what the budget left for the KV cache
  uint64_t footprint_bytes = 0;  // what the KV tensors take from the allocator (rounding included)
};
// Longest sequence the model supports (max_position, times the factor for dynamic RoPE).
int64_t model_context_length(const ModelSpec& spec);
// The share of the available host memory the default CPU KV pool may take.
constexpr double kCpuKvAvailableFraction = 0.125;
// The default KV pool size in bytes when neither num_kv_blocks nor kv_cache_bytes is set (see the
// header comment); `s` gives the bytes per block.
uint64_t default_kv_bytes(const EngineConfig& config, const ModelSpec& spec, const KvCacheShape& s,
                          uint64_t available_bytes);
// The CPU plan (f32, int8 or fp8 KV; see the header comment). A quantized cache's smaller blocks
// (bytes_per_block counts data and scales) give more blocks for the same kv_cache_bytes.
KvPlan plan_kv_cache(const EngineConfig& config, const ModelSpec& spec, const Device& device,
                     DType kv_dtype = DType::kF32);
// The device plan, after the weights are uploaded and the workspaces reserved: reads what the
// device's allocator holds now (memory_stats().reserved_bytes, at least weight + workspace bytes)
// and rounds each of the 2 x n_layers KV tensors as the allocator will (if it is a PooledDevice).
// rank (optional): the layers and kv heads one rank of a parallel engine holds; its KV tensors
// are sized from them (the plan's shape then describes that rank's cache).
KvPlan plan_device_kv_cache(const EngineConfig& config, const ModelSpec& spec, const MemoryBudget& budget,
                            Device& device, uint64_t weight_bytes, uint64_t workspace_bytes, DType kv_dtype,
                            const KvSpec* rank = nullptr);
// A tensor / pipeline-parallel engine on GPUs: every rank plans its own cache (its layers and kv
// heads, its device's budget share, what its allocator holds), and the one block pool gets the
// fewest blocks any rank can hold. The returned shape is the whole model's (each rank slices it).
struct RankKvInput {
  const MemoryBudget* budget = nullptr;
  Device* device = nullptr;
  uint64_t weight_bytes = 0, workspace_bytes = 0;
  KvSpec kv;
};
KvPlan plan_parallel_device_kv_cache(const EngineConfig& config, const ModelSpec& spec, DType kv_dtype,
                                     const std::vector<RankKvInput>& ranks);

// Weight offloading (options offload, cpu_offload_gb, offload_map, cpu_memory_bytes;
// runtime/runner/offload_plan.h). offload_map excludes the other two (kInvalidArgument).
// offload="auto" on a device gives the weights (resident + ring) what the budget leaves after the
// headroom, the step buffers for max_num_batched_tokens tokens and max_logits rows, and the KV of
// kOffloadKvReserveTokens tokens (capped by the context), so a KV pool always remains; on the CPU
// gpu_memory_bytes stands in for that budget (0: nothing is offloaded), which tests use to drive
// the same paths. The host budget is cpu_memory_bytes, else kOffloadHostFraction of the available
// RAM. The ring depth is 2 (ELI_OFFLOAD_RING_DEPTH overrides it, 1..8).
constexpr int64_t kOffloadKvReserveTokens = 4096;
constexpr double kOffloadHostFraction = 0.75;
// Whether any weight offloading is asked for; checks offload's value, offload_map's syntax and that
// offload_map is not combined with the other two (kInvalidArgument), before anything is loaded.
bool offload_requested(const EngineConfig& config);
OffloadRequest offload_request(const EngineConfig& config, const Model& model, const MemoryBudget& budget,
                               DeviceKind device, DType kv_dtype, int64_t max_logits);

}  // namespace eli
