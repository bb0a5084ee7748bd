// runtime/kv/kv_cache.h: the storage of the paged KV cache of one model on one device.
//
// Layout per layer: k, v: (n_blocks, block_size, n_kv_heads, head_dim) in shape.dtype (f32 on the
// CPU; f32, bf16 or f16 on CUDA), in the memory of the Device it was made with (host RAM for the
// CPU, device memory for CUDA: then k()/v() are device pointers, for kernels only). Device storage
// starts zeroed.
// Block ids index the first dimension and mean the same on every tier (GPU, host).
// Invariants: storage is allocated once at construction (sized by the memory planner) and never
// grows; the BlockPool that hands out ids lives beside it in the engine.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/core/tensor.h"

namespace eli {

class Device;

struct KvCacheShape {
  int64_t n_layers = 0, n_blocks = 0, block_size = 16, n_kv_heads = 0, head_dim = 0;
  DType dtype = DType::kF32;
  // Bytes of one block across all layers, K and V.
  uint64_t bytes_per_block() const;
};

class KvCache {
 public:
  // `device` must outlive the cache.
  KvCache(Device& device, const KvCacheShape& shape);
  const KvCacheShape& shape() const { return shape_; }
  void* k(int64_t layer) const { return k_[static_cast<size_t>(layer)].ptr<void>(); }
  void* v(int64_t layer) const { return v_[static_cast<size_t>(layer)].ptr<void>(); }
  uint64_t nbytes() const { return shape_.bytes_per_block() * static_cast<uint64_t>(shape_.n_blocks); }

 private:
  KvCacheShape shape_;
  std::vector<Tensor> k_, v_;  // (n_layers) x (n_blocks, block_size, n_kv_heads, head_dim)
};

}  // namespace eli
