// runtime/kv/kv_cache.h: the storage of the paged KV cache of one model on one device.
//
// Layout per layer: k, v: (blocks of the layer's KV group, block_size, n_kv_heads, head_dim) in shape.dtype (f32 on the
// CPU; f32, bf16 or f16 on CUDA), in the memory of the Device it was made with (host RAM for the
// CPU, device memory for CUDA: then k()/v() are device pointers, for kernels only). Device storage
// starts zeroed.
// Block ids index the first dimension and mean the same on every tier (GPU, host). With two KV
// groups (runtime/kv/kv_groups.h: sliding-window layers beside full-attention ones) each group has
// its own block ids, pool and block count: n_blocks for group 0, n_blocks1 for group 1.
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
  // KV groups: empty, or n_layers entries (0 or 1); layers of group 1 hold n_blocks1 blocks.
  std::vector<int32_t> layer_group;
  int64_t n_blocks1 = 0;
  // Per group: 0, or the window its blocks are kept for (a layer of the group may attend to at
  // most that many positions; blocks before it are released).
  int64_t group_window[2] = {0, 0};

  int group_of(int64_t layer) const {
    return layer_group.empty() ? 0 : layer_group[static_cast<size_t>(layer)];
  }
  int64_t n_groups() const { return n_blocks1 > 0 ? 2 : 1; }
  int64_t blocks_of_group(int g) const { return g == 0 ? n_blocks : n_blocks1; }
  int64_t blocks_of_layer(int64_t layer) const { return blocks_of_group(group_of(layer)); }
  int64_t layers_in_group(int g) const;
  // Bytes of one block of one layer, K and V.
  uint64_t layer_block_bytes() const;
  // Bytes of one block across all layers, K and V (one group's worth when every layer is in it).
  uint64_t bytes_per_block() const;
  // Bytes of the whole cache: every layer's blocks of its group.
  uint64_t nbytes() const;
};

class KvCache {
 public:
  // `device` must outlive the cache.
  KvCache(Device& device, const KvCacheShape& shape);
  const KvCacheShape& shape() const { return shape_; }
  void* k(int64_t layer) const { return k_[static_cast<size_t>(layer)].ptr<void>(); }
  void* v(int64_t layer) const { return v_[static_cast<size_t>(layer)].ptr<void>(); }
  uint64_t nbytes() const { return shape_.nbytes(); }

 private:
  KvCacheShape shape_;
  std::vector<Tensor> k_, v_;  // (n_layers) x (blocks_of_layer, block_size, n_kv_heads, head_dim)
};

}  // namespace eli
