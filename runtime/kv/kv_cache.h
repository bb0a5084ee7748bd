// runtime/kv/kv_cache.h: the storage of the paged KV cache of one model on one device.
//
// Layout per layer: k, v: (blocks of the layer's KV group, block_size, n_kv_heads, head_dim) in shape.dtype (f32 on the
// CPU; f32, bf16 or f16 on CUDA), in the memory of the Device it was made with (host RAM for the
// CPU, device memory for CUDA: then k()/v() are device pointers, for kernels only). Device storage
// starts zeroed.
// Block ids index the first dimension and mean the same on every tier (GPU, host). With two KV
// groups (runtime/kv/kv_groups.h: sliding-window layers beside full-attention ones) each group has
// its own block ids, pool and block count: n_blocks for group 0, n_blocks1 for group 1.
//
// Compressed KV (dtype kI8 / kF8E4M3, kv_cache_dtype int8 / fp8): k and v hold one byte per value
// and each layer has two more f32 arrays k_scale, v_scale of shape (n_blocks, block_size,
// n_kv_heads): one scale per (token slot, kv head), value = stored * scale, scale = amax / 127
// (int8, symmetric) or amax / 448 (fp8 e4m3); the rule is kernels/ref/kv_quant.h. They are written
// by the RoPE/KV-write kernel together with the row and read inside the attention kernels.
// Why per token and head rather than per block and head: a row's scale is fixed when the row is
// written, so a block is never rescaled as it fills (a per-block scale would have to grow with a
// later larger value and requantize the rows already there, a read-modify-write racing with
// readers), a full block is immutable bytes (a prefix-cache hit shares it as is; preemption
// recomputes the same bytes), and an outlier token costs precision in its own row only. The price
// is 4 bytes per row: for head_dim 128, 132 bytes instead of 256 for bf16 (1.94x the tokens) or
// 512 for f32 (3.88x); per-block-per-head scales would save those 4 bytes but not the above.
// The scales are a parallel array rather than interleaved in the row so that the data rows keep
// the 16-byte alignment the vectorised device loads need. Queries of a quantized cache are
// query_dtype() (f32 on the CPU, the weights' type on CUDA).
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
  // Bytes of one block of one layer, K and V (and their scales when quantized).
  uint64_t layer_block_bytes() const;
  // Bytes of one block across all layers, K and V (one group's worth when every layer is in it).
  uint64_t bytes_per_block() const;
  // Bytes of the whole cache: every layer's blocks of its group.
  uint64_t nbytes() const;
  // With an int8 / fp8 cache: the dtype of the queries and of the attention inputs (the engine sets
  // f32 on the CPU, the weights' dtype on CUDA). Unused otherwise: queries are in `dtype`.
  DType quantized_query_dtype = DType::kF32;
  bool quantized() const;
  DType query_dtype() const { return quantized() ? quantized_query_dtype : dtype; }
  // Bytes of one block of one layer's k (or v) data, and of its scales (0 when not quantized).
  uint64_t data_bytes_per_block() const;
  uint64_t scale_bytes_per_block() const;
};

// The part of a whole-model shape that one rank of a parallel engine holds: layers
// [first_layer, first_layer + n_layers) (a pipeline stage's) with n_kv_heads heads each (its tensor-
// parallel share); the same blocks.
KvCacheShape slice_kv_shape(const KvCacheShape& whole, int64_t first_layer, int64_t n_layers, int64_t n_kv_heads);

class KvCache {
 public:
  // `device` must outlive the cache.
  KvCache(Device& device, const KvCacheShape& shape);
  const KvCacheShape& shape() const { return shape_; }
  void* k(int64_t layer) const { return k_[static_cast<size_t>(layer)].ptr<void>(); }
  void* v(int64_t layer) const { return v_[static_cast<size_t>(layer)].ptr<void>(); }
  // (blocks, block_size, n_kv_heads) f32 scales of a quantized cache; nullptr otherwise.
  float* k_scale(int64_t layer) const { return shape_.quantized() ? k_scale_[static_cast<size_t>(layer)].ptr<float>() : nullptr; }
  float* v_scale(int64_t layer) const { return shape_.quantized() ? v_scale_[static_cast<size_t>(layer)].ptr<float>() : nullptr; }
  uint64_t nbytes() const { return shape_.nbytes(); }

 private:
  KvCacheShape shape_;
  std::vector<Tensor> k_, v_;  // (n_layers) x (blocks_of_layer, block_size, n_kv_heads, head_dim)
  std::vector<Tensor> k_scale_, v_scale_;  // (n_layers) x (blocks_of_layer, block_size, n_kv_heads); quantized only
};

}  // namespace eli
