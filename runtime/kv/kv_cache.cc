// runtime/kv/kv_cache.cc: see kv_cache.h.
#include "runtime/kv/kv_cache.h"

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

uint64_t KvCacheShape::bytes_per_block() const {
  // K and V of every layer, each data + scales.
  int64_t n = 0;
  ELI_CHECK(checked_mul(static_cast<int64_t>(data_bytes_per_block() + scale_bytes_per_block()), 2 * n_layers, &n),
            "KV block size overflows");
  return static_cast<uint64_t>(n);
}

KvCache::KvCache(Device& device, const KvCacheShape& shape) : shape_(shape) {
  ELI_CHECK_KIND(kUnsupported,
                 shape.dtype == DType::kF32 || shape.quantized() ||
                     ((shape.dtype == DType::kBF16 || shape.dtype == DType::kF16) &&
                      device.id().kind == DeviceKind::kCUDA),
                 "KV-cache dtype ", dtype_name(shape.dtype), " is not supported on ", device_name(device.id()));
  ELI_CHECK(shape.n_blocks > 0 && shape.block_size > 0, "empty KV cache");
  for (int64_t l = 0; l < shape.n_layers; ++l) {
    k_.push_back(Tensor::empty(device, shape.dtype, {shape.n_blocks, shape.block_size, shape.n_kv_heads, shape.head_dim}));
    v_.push_back(Tensor::empty(device, shape.dtype, {shape.n_blocks, shape.block_size, shape.n_kv_heads, shape.head_dim}));
    if (shape.quantized()) {
      k_scale_.push_back(Tensor::empty(device, DType::kF32, {shape.n_blocks, shape.block_size, shape.n_kv_heads}));
      v_scale_.push_back(Tensor::empty(device, DType::kF32, {shape.n_blocks, shape.block_size, shape.n_kv_heads}));
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

}  // namespace eli
