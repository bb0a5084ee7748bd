// eli/engine.h: the C++ embedding API of the engine: load a model, submit token-id requests,
// step, read tokens back. No Python, no CUDA types; the same header for every build.
//
// Threading: an Engine is driven by one thread at a time (the Python layer or a C++ service's
// loop). Invariants: every request that was added ends with exactly one output whose `finish`
// is not kNone (stop, length, abort or error), after which its KV blocks are free.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "eli/device.h"
#include "eli/model_spec.h"
#include "eli/sampling_params.h"

namespace eli {

// Kinds of engine options (the KIND column of engine_options.def) as C++ types.
#define ELI_OPTION_CTYPE_BOOL bool
#define ELI_OPTION_CTYPE_I32 int
#define ELI_OPTION_CTYPE_I64 int64_t
#define ELI_OPTION_CTYPE_U64 uint64_t
#define ELI_OPTION_CTYPE_F64 double
#define ELI_OPTION_CTYPE_STR std::string
#define ELI_OPTION_CTYPE_TRI int

// How to load and run a model. Every field but `model` is generated from eli/engine_options.def,
// where each option's type, default, bounds and meaning are listed (the Python keywords of eli.LLM
// and the CLI flags come from the same table). validate_engine_config() checks them all; the
// Engine constructor calls it first.
struct EngineConfig {
  std::string model;  // HF directory (config.json + safetensors) or .gguf file
#define ELI_ENGINE_OPTION(KIND, NAME, DEFAULT, ...) ELI_OPTION_CTYPE_##KIND NAME = DEFAULT;
#include "eli/engine_options.def"
#undef ELI_ENGINE_OPTION
};

// At most this many CPU worker threads per hardware thread (n_threads' CPU_THREADS limit).
constexpr int kMaxThreadsPerCpu = 4;
// The hardware threads of this machine (at least 1).
int hardware_threads();

// One row of engine_options.def, for bindings, help texts and tests.
struct EngineOptionInfo {
  const char* name;
  const char* kind;        // "BOOL", "I32", "I64", "U64", "F64", "STR", "TRI"
  double min, max;         // inclusive bounds (numeric kinds); 0, 0: the type's range only
  const char* limit;       // "NONE", "CPU_THREADS", "OPEN_MIN"
  const char* choices;     // STR: "a|b|c" ("cuda:N": cuda:0, cuda:1, ...); "" otherwise
  const char* doc;
};
const std::vector<EngineOptionInfo>& engine_option_infos();

// Throws eli::Error(kInvalidArgument) naming the first option that is out of its bounds or choices
// (with the value and the bound), e.g. n_threads above kMaxThreadsPerCpu x hardware_threads().
void validate_engine_config(const EngineConfig& config);
// "auto" -> "cuda" when a CUDA device is visible, else "cpu"; any other name unchanged.
std::string resolve_device_name(const std::string& name);

enum class FinishReason { kNone = 0, kStop, kLength, kAbort, kError };
const char* finish_reason_name(FinishReason reason);

struct TokenOutput {
  int64_t request_id = -1;
  int32_t token = -1;                  // -1 when the output only reports an end (abort, error)
  float logprob = 0.0f;                // of `token` under the raw model distribution
  std::vector<std::pair<int32_t, float>> top_logprobs;
  FinishReason finish = FinishReason::kNone;
  std::string error;                   // set when finish == kError
  // SamplingParams::prompt_logprobs >= 0: on the request's first token output, one entry per
  // prompt position 1..n-1: (the prompt token there, its logprob) first, then the top k pairs.
  std::vector<std::vector<std::pair<int32_t, float>>> prompt_logprobs;
  // Embedding requests (SamplingParams::pooling): the pooled final hidden state (hidden_size
  // floats, not normalized) on the request's only output (token -1, finish kStop).
  std::vector<float> embedding;
};

struct EngineStats {
  int64_t kv_blocks_total = 0, kv_blocks_free = 0;
  // The sliding-window layers' own pool, for models that mix them with full-attention layers
  // (Gemma 2/3): their blocks are freed as they fall out of the window. 0 without one.
  int64_t kv_window_blocks_total = 0, kv_window_blocks_free = 0;
  int64_t num_running = 0, num_waiting = 0;
  int64_t preemptions = 0;  // every preemption, swapped or recomputed
  // Swap preemption (swap_space_gb): sequences swapped to the host tier and back. KV bytes copied
  // to and from host memory by swapping and the host prefix cache (kv_offload_gb) together; tokens
  // of prefix-cache hits found in the host tier (counted in prefix_cache_hits too). All 0 when off.
  int64_t swaps_out = 0, swaps_in = 0;
  int64_t kv_bytes_to_host = 0, kv_bytes_from_host = 0;
  int64_t host_prefix_hits = 0;
  // The prefix cache's disk tier (kv_offload_disk_gb): tokens of hits read from it (counted in
  // prefix_cache_hits, not in host_prefix_hits), and the KV bytes written to and read from it.
  int64_t disk_prefix_hits = 0;
  int64_t kv_bytes_to_disk = 0, kv_bytes_from_disk = 0;
  int64_t prefix_cache_hits = 0, prefix_cache_queries = 0;
  int64_t prompt_tokens = 0, generated_tokens = 0, steps = 0;
};

// Device memory as planned at start-up (CUDA; on the CPU only kv_bytes is set, budget is 0).
struct EngineMemoryInfo {
  uint64_t budget_bytes = 0;     // what eli may hold in all (gpu_memory_utilization x total, or gpu_memory_bytes)
  uint64_t total_bytes = 0;      // the device's memory
  uint64_t weights_bytes = 0;    // weights on the device (with offloading: the resident ones and the ring)
  uint64_t weights_host_bytes = 0;  // offloaded weights in pinned host memory
  uint64_t weights_disk_bytes = 0;  // offloaded weights read from the model file at each step
  uint64_t workspace_bytes = 0;  // activation workspaces, sized for the largest step
  uint64_t kv_bytes = 0;         // the KV pool
  uint64_t headroom_bytes = 0;   // kept free of the plan (driver, cuBLAS, CUDA graphs, rounding)
};

struct EngineInfo {
  ModelSpec spec;
  std::string format;        // "safetensors" or "gguf"
  std::string weight_dtype;  // dtype the matrices are held in
  std::string device;
  uint64_t n_params = 0;
  int64_t max_model_len = 0;
  int64_t block_size = 0;
  int64_t num_kv_blocks = 0;
  int64_t num_kv_window_blocks = 0;  // the sliding-window layers' pool (see EngineStats); 0: none
  std::string kv_cache_dtype;  // dtype of the KV cache ("f32", "bf16", "f16"), like weight_dtype
  EngineMemoryInfo memory;
  // Where the weights live: "every layer on cuda:0 (...)", or the offloaded layers' tiers and
  // bytes (runtime/runner/offload_plan.h).
  std::string weight_placement;
  int n_threads = 0;
};

// Where a model's weights would live under `config` (weight offloading: offload, cpu_offload_gb,
// cpu_memory_bytes), computed as the engine computes it at load, without uploading anything
// (`eli info --plan`). The model is opened and loaded on the host; the device is created for its
// budget. Errors are the engine's (kOutOfMemory when even offloading cannot fit, ...).
struct WeightPlacementReport {
  std::string device;
  std::string placement;  // "layers 0-15 on cuda:0, layers 16-31 in pinned host memory; ..."
  uint64_t budget_bytes = 0;    // the device budget (0 on the CPU)
  uint64_t resident_bytes = 0;  // weights on the device (ring excluded)
  uint64_t ring_bytes = 0, host_bytes = 0, disk_bytes = 0;
  int64_t n_layers = 0, offloaded_layers = 0;
  int64_t cpu_layers = 0;  // offloaded layers the CPU computes (offload_compute; host_bytes are theirs)
};
WeightPlacementReport plan_weight_placement(const EngineConfig& config);

class Engine {
 public:
  // Loads the model and plans memory. Throws eli::Error (kModelLoad for bad files).
  explicit Engine(const EngineConfig& config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const EngineInfo& info() const;
  // Validates and admits a request; throws eli::Error(kInvalidArgument) with the numbers when it
  // can never run (empty prompt, ids out of range, prompt + max_tokens past the context, more KV
  // blocks than the pool has). Returns its id.
  int64_t add_request(const std::vector<int32_t>& prompt, const SamplingParams& params);
  // Ends a request at whatever phase it is in; its final output (kAbort) comes from the next step.
  void abort_request(int64_t request_id);
  // One scheduler iteration: returns the new tokens and the requests that ended.
  std::vector<TokenOutput> step();
  bool has_unfinished() const;
  // Full-sequence logits (len, vocab), row-major, for parity checks. Uses its own KV blocks.
  std::vector<float> score(const std::vector<int32_t>& token_ids);
  EngineStats stats() const;
  // The device allocator's counters: a warmed-up decode loop leaves n_driver_allocs unchanged.
  MemoryStats memory_stats() const;

 private:
  std::vector<TokenOutput> step_inner(std::vector<TokenOutput>& outs);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace eli
