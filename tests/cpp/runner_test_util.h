// tests/cpp/runner_test_util.h: the KV shape of the tests that drive a ModelRunner (or a
// ParallelRunner) below the engine on a tiny fixture model: every layer, f32, blocks of 4.
#pragma once

#include <cstdint>

#include "runtime/kv/kv_cache.h"
#include "eli/model_spec.h"

namespace eli {

inline KvCacheShape tiny_kv_shape(const ModelSpec& s, int64_t n_blocks) {
  KvCacheShape k;
  k.n_layers = s.n_layers;
  k.n_blocks = n_blocks;
  k.block_size = 4;
  k.n_kv_heads = s.n_kv_heads;
  k.head_dim = s.head_dim;
  k.dtype = DType::kF32;
  return k;
}

}  // namespace eli
