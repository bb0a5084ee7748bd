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

struct EngineConfig {
  std::string model;                   // HF directory (config.json + safetensors) or .gguf file
  std::string device = "cpu";          // "cpu", "cuda", "cuda:N"
  std::string dtype = "auto";          // "auto", "float32", "bfloat16", "float16"
  int n_threads = 0;                   // CPU worker threads; 0: all hardware threads
  int64_t block_size = 16;             // tokens per KV block
  int64_t num_kv_blocks = 0;           // 0: derived from kv_cache_bytes
  uint64_t kv_cache_bytes = 0;         // 0: what the memory budget leaves (CUDA), a default share (CPU)
  std::string kv_cache_dtype = "auto"; // "auto" (CUDA: the weights' 16-bit type, else float32;
                                       // CPU: float32), "float32", "bfloat16", "float16" (CUDA only)
  // CUDA memory budget: the fraction of the device's TOTAL memory eli may hold in all (weights,
  // workspaces, KV cache, cached allocator blocks, a fixed headroom), as in vLLM. Must be in
  // (0, 1]. gpu_memory_bytes > 0 is an absolute budget that overrides the fraction. The CPU
  // validates but ignores both.
  double gpu_memory_utilization = 0.9;
  uint64_t gpu_memory_bytes = 0;
  int64_t max_num_seqs = 64;           // sequences in one step
  int64_t max_num_batched_tokens = 2048;  // tokens in one step
  int64_t max_model_len = 0;           // 0: the model's context (capped by the KV pool)
  bool enable_chunked_prefill = true;
  bool enable_prefix_caching = true;   // reuse KV blocks of shared prompt prefixes (verified)
  bool enable_cuda_graphs = true;      // CUDA: replay captured graphs for decode steps
  // Queue the next step before the host has read this step's samples, so the device never waits
  // for the host (rows with penalties fall back to one step at a time): -1 auto (on for device
  // models), 0 off, 1 on (also on the CPU, where it only changes when outputs are reported).
  int async_scheduling = -1;
  uint64_t seed = 0;                   // engine seed for requests without their own
};

enum class FinishReason { kNone = 0, kStop, kLength, kAbort, kError };
const char* finish_reason_name(FinishReason reason);

struct TokenOutput {
  int64_t request_id = -1;
  int32_t token = -1;                  // -1 when the output only reports an end (abort, error)
  float logprob = 0.0f;                // of `token` under the raw model distribution
  std::vector<std::pair<int32_t, float>> top_logprobs;
  FinishReason finish = FinishReason::kNone;
  std::string error;                   // set when finish == kError
};

struct EngineStats {
  int64_t kv_blocks_total = 0, kv_blocks_free = 0;
  int64_t num_running = 0, num_waiting = 0;
  int64_t preemptions = 0;
  int64_t prefix_cache_hits = 0, prefix_cache_queries = 0;
  int64_t prompt_tokens = 0, generated_tokens = 0, steps = 0;
};

// Device memory as planned at start-up (CUDA; on the CPU only kv_bytes is set, budget is 0).
struct EngineMemoryInfo {
  uint64_t budget_bytes = 0;     // what eli may hold in all (gpu_memory_utilization x total, or gpu_memory_bytes)
  uint64_t total_bytes = 0;      // the device's memory
  uint64_t weights_bytes = 0;    // weights on the device
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
  std::string kv_cache_dtype;  // dtype of the KV cache ("f32", "bf16", "f16"), like weight_dtype
  EngineMemoryInfo memory;
  int n_threads = 0;
};

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
