// runtime/kv/kv_cache.cc: see kv_cache.h.
#include "runtime/kv/kv_cache.h"

#include <algorithm>

#include "eli/error.h"
#include "runtime/core/checked_math.h"
#include "runtime/device/device.h"

namespace eli {

bool KvCacheShape::quantized() const { return dtype == DType::kI8 || dtype == DType::kF8E4M3; }

uint64_t KvCacheShape::data_bytes_per_block() const {
  int64_t n = 0;
  ELI_CHECK(checked_mul(block_size, n_kv_heads, &n) && checked_mul(n, head_dim, &n) &&
                checked_mul(n, dtype_info(dtype).block_bytes, &n),
            "KV block size overflows");
  return static_cast<uint64_t>(n);
}

uint64_t KvCacheShape::scale_bytes_per_block() const {
  if (!quantized()) return 0;
  int64_t n = 0;
  ELI_CHECK(checked_mul(block_size, n_kv_heads, &n) && checked_mul(n, int64_t{sizeof(float)}, &n),
            "KV block size overflows");
  return static_cast<uint64_t>(n);
}

int64_t KvCacheShape::layers_in_group(int g) const {
  if (layer_group.empty()) return g == 0 ? n_layers : 0;
  return std::count(layer_group.begin(), layer_group.end(), g);
}

uint64_t KvCacheShape::layer_block_bytes() const {
  // K and V, each data + scales.
  int64_t n = 0;
  ELI_CHECK(checked_mul(static_cast<int64_t>(data_bytes_per_block() + scale_bytes_per_block()), int64_t{2}, &n),
            "KV block size overflows");
  return static_cast<uint64_t>(n);
}

uint64_t KvCacheShape::bytes_per_block() const {
  int64_t n = 0;
  ELI_CHECK(checked_mul(static_cast<int64_t>(layer_block_bytes()), n_layers, &n), "KV block size overflows");
  return static_cast<uint64_t>(n);
}

uint64_t KvCacheShape::nbytes() const {
  int64_t a = 0, b = 0, n = 0;
  const int64_t lb = static_cast<int64_t>(layer_block_bytes());
  ELI_CHECK(checked_mul(lb, layers_in_group(0), &a) && checked_mul(a, n_blocks, &a) &&
                checked_mul(lb, layers_in_group(1), &b) && checked_mul(b, n_blocks1, &b) && checked_add(a, b, &n),
            "KV cache size overflows");
  return static_cast<uint64_t>(n);
}

KvCache::KvCache(Device& device, const KvCacheShape& shape) : shape_(shape) {
  ELI_CHECK_KIND(kUnsupported,
                 shape.dtype == DType::kF32 || shape.quantized() ||
                     ((shape.dtype == DType::kBF16 || shape.dtype == DType::kF16) &&
                      device.id().kind == DeviceKind::kCUDA),
                 "KV-cache dtype ", dtype_name(shape.dtype), " is not supported on ", device_name(device.id()));
  ELI_CHECK(shape.n_blocks > 0 && shape.block_size > 0, "empty KV cache");
  ELI_CHECK(shape.layer_group.empty() || static_cast<int64_t>(shape.layer_group.size()) == shape.n_layers,
            "KV layer groups do not match the layers");
  // A pipeline stage may hold no layer of group 1 while the engine's group 1 pool exists.
  ELI_CHECK(shape.layers_in_group(1) == 0 || shape.n_blocks1 > 0, "KV group 1 layers without blocks");
  for (int64_t l = 0; l < shape.n_layers; ++l) {
    const int g = shape.group_of(l);
    ELI_CHECK(g == 0 || g == 1, "KV group ", g, " of layer ", l, " out of range");
    const int64_t nb = shape.blocks_of_group(g);
    k_.push_back(Tensor::empty(device, shape.dtype, {nb, shape.block_size, shape.n_kv_heads, shape.head_dim}));
    v_.push_back(Tensor::empty(device, shape.dtype, {nb, shape.block_size, shape.n_kv_heads, shape.head_dim}));
    if (shape.quantized()) {
      k_scale_.push_back(Tensor::empty(device, DType::kF32, {nb, shape.block_size, shape.n_kv_heads}));
      v_scale_.push_back(Tensor::empty(device, DType::kF32, {nb, shape.block_size, shape.n_kv_heads}));
    }
  }
  if (device.id().kind != DeviceKind::kCPU) {
    // Never-written slots hold zeros rather than stale device memory (attention never reads them,
    // but a bug then shows as wrong numbers, not NaNs from garbage). The CPU path skips this so
    // that its pages are only touched when used.
    for (int64_t l = 0; l < shape.n_layers; ++l) {
      device.memset_zero(k_[static_cast<size_t>(l)].ptr<void>(), k_[static_cast<size_t>(l)].nbytes());
      device.memset_zero(v_[static_cast<size_t>(l)].ptr<void>(), v_[static_cast<size_t>(l)].nbytes());
    }
    for (size_t i = 0; i < k_scale_.size(); ++i) {
      device.memset_zero(k_scale_[i].ptr<void>(), k_scale_[i].nbytes());
      device.memset_zero(v_scale_[i].ptr<void>(), v_scale_[i].nbytes());
    }
  }
}

KvCacheShape slice_kv_shape(const KvCacheShape& whole, int64_t first_layer, int64_t n_layers, int64_t n_kv_heads) {
  ELI_CHECK_KIND(kInternal, first_layer >= 0 && n_layers >= 0 && first_layer + n_layers <= whole.n_layers,
                 "slice_kv_shape: layers [", first_layer, ", ", first_layer + n_layers, ") outside the model's ",
                 whole.n_layers);
  KvCacheShape s = whole;
  s.n_layers = n_layers;
  s.n_kv_heads = n_kv_heads;
  if (!whole.layer_group.empty()) {
    s.layer_group.assign(whole.layer_group.begin() + first_layer, whole.layer_group.begin() + first_layer + n_layers);
  }
  return s;
}

}  // namespace eli
