// runtime/engine/memory_plan.cc: see memory_plan.h.
#include "runtime/engine/memory_plan.h"

#include <algorithm>

#include "eli/error.h"
#include "runtime/device/device.h"
#include "runtime/model/model_files.h"

namespace eli {

DType choose_weight_dtype(const std::string& requested, const ModelFiles& files, DeviceId device) {
  if (device.kind == DeviceKind::kCUDA) {
    if (requested.empty() || requested == "auto") {
      // CUDA: bf16 weights (f32 activations) unless the checkpoint is f32, which runs in f32.
      auto it = files.weights->tensors().find(files.name_of("model.embed_tokens.weight"));
      if (it != files.weights->tensors().end() && it->second.dtype == DType::kF32) return DType::kF32;
      return DType::kBF16;
    }
    DType d = parse_dtype(requested);
    ELI_CHECK_KIND(kUnsupported, d == DType::kF32 || d == DType::kBF16, "dtype ", requested,
                   " is not supported on the CUDA backend yet; use bfloat16 or float32");
    return d;
  }
  if (requested.empty() || requested == "auto") {
    // CPU: keep bf16 checkpoints in bf16 (half the bytes per token); everything else (f32, f16,
    // dequantized GGUF blocks) runs in f32, which is exact with respect to the stored values.
    auto it = files.weights->tensors().find(files.name_of("model.embed_tokens.weight"));
    if (it != files.weights->tensors().end() && it->second.dtype == DType::kBF16) return DType::kBF16;
    return DType::kF32;
  }
  DType d = parse_dtype(requested);
  if (device.kind == DeviceKind::kCPU && d == DType::kF16) {
    ELI_THROW(kUnsupported, "dtype float16 is not supported on the CPU backend; use bfloat16 or float32");
  }
  return d;
}

int64_t model_context_length(const ModelSpec& spec) {
  // Dynamic NTK scaling exists to run past max_position_embeddings (by `factor`, as vLLM does);
  // the other scalings already state their extended length in max_position_embeddings.
  if (spec.rope.scaling == RopeScaling::kDynamic && spec.rope.factor > 1.0) {
    return static_cast<int64_t>(static_cast<double>(spec.max_position) * spec.rope.factor);
  }
  return spec.max_position;
}

KvPlan plan_kv_cache(const EngineConfig& config, const ModelSpec& spec, const Device& device) {
  KvPlan plan;
  KvCacheShape& s = plan.shape;
  ELI_CHECK(config.block_size >= 1 && config.block_size <= 1024, "block_size ", config.block_size,
            " out of range [1, 1024]");
  ELI_CHECK(config.max_num_seqs >= 1, "max_num_seqs must be >= 1");
  ELI_CHECK(config.max_num_batched_tokens >= 1, "max_num_batched_tokens must be >= 1");
  ELI_CHECK(config.num_kv_blocks >= 0 && config.max_model_len >= 0, "KV sizes must be >= 0");
  s.n_layers = spec.n_layers;
  s.block_size = config.block_size;
  s.n_kv_heads = spec.n_kv_heads;
  s.head_dim = spec.head_dim;
  s.dtype = DType::kF32;
  const uint64_t per_block = s.bytes_per_block();
  if (config.num_kv_blocks > 0) {
    s.n_blocks = config.num_kv_blocks;
  } else {
    uint64_t bytes = config.kv_cache_bytes;
    if (bytes == 0) {
      // Default: enough for max_num_seqs full contexts, capped at a quarter of available memory
      // and 4 GiB, and never less than one full context when that fits.
      const uint64_t ctx = static_cast<uint64_t>(config.max_model_len > 0 ? config.max_model_len : model_context_length(spec));
      const uint64_t per_token = per_block / static_cast<uint64_t>(s.block_size);
      const uint64_t want = per_token * ctx * static_cast<uint64_t>(config.max_num_seqs);
      const uint64_t avail = device.available_bytes();
      if (device.id().kind == DeviceKind::kCPU) {
        const uint64_t cap = std::min<uint64_t>(avail / 4, uint64_t{4} << 30);
        bytes = std::min(want, std::max(cap, per_token * ctx));
        bytes = std::min(bytes, avail / 2);
      } else {
        // A GPU: the weights are already on it, so `avail` is what is left; the KV pool takes at
        // most half of it (the rest is for workspaces and other processes), and no more than
        // max_num_seqs full contexts need.
        bytes = std::min(want, avail / 2);
      }
    }
    s.n_blocks = static_cast<int64_t>(bytes / per_block);
    ELI_CHECK_KIND(kOutOfMemory, s.n_blocks >= 1, "kv_cache_bytes (", bytes, ") is smaller than one KV block (",
                   per_block, " bytes)");
  }
  ELI_CHECK(s.n_blocks < (int64_t{1} << 30), "num_kv_blocks ", s.n_blocks, " is absurd");
  const int64_t context = model_context_length(spec);
  int64_t len = config.max_model_len > 0 ? config.max_model_len : context;
  ELI_CHECK(config.max_model_len <= context, "max_model_len ", config.max_model_len,
            " exceeds the model's context of ", context);
  // Not capped by the pool: a request longer than the pool is rejected at admission with the
  // block counts, which says more than a silently shorter context.
  plan.max_model_len = len;
  return plan;
}

}  // namespace eli
