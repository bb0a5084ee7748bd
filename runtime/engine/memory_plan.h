// runtime/engine/memory_plan.h: the decisions made once at start-up: which dtype the weight
// matrices are held in, and how many KV blocks the pool gets.
//
// Invariants: the KV pool is sized from an explicit count, an explicit byte budget, or a default
// share of the device's available memory, in that order of precedence; max_model_len never exceeds
// the model's context.
// Defaults: CPU: min(max_num_seqs full contexts, max(min(avail/4, 4 GiB), one context), avail/2).
// CUDA (planned after the weights are uploaded): min(max_num_seqs full contexts, free/2).
// Weight dtype "auto": CPU keeps bf16 checkpoints in bf16, else f32; CUDA uses f32 for f32
// checkpoints and bf16 for the rest (bf16, f16, GGUF); float16 is refused on both for now.
#pragma once

#include <cstdint>
#include <string>

#include "eli/device.h"
#include "eli/dtype.h"
#include "eli/engine.h"
#include "runtime/kv/kv_cache.h"

namespace eli {

class Device;
struct ModelFiles;

DType choose_weight_dtype(const std::string& requested, const ModelFiles& files, DeviceId device);

struct KvPlan {
  KvCacheShape shape;
  int64_t max_model_len = 0;
};
// Longest sequence the model supports (max_position, times the factor for dynamic RoPE).
int64_t model_context_length(const ModelSpec& spec);
KvPlan plan_kv_cache(const EngineConfig& config, const ModelSpec& spec, const Device& device);

}  // namespace eli
