// runtime/core/weight_format.h: how a weight matrix's bytes are laid out, beside its DType. The
// kernel registry is keyed by (op, device, weight format, dtype), so a GGUF Q4_K row and a future
// tiled int4 layout are different keys even where a dtype could be shared.
//
// Invariants: a format names a layout, never a loader; adding a format means adding a LinearMethod
// (runtime/model/linear_method.h) and the kernels registered under it.
#pragma once

#include <cstdint>

namespace eli {

enum class WeightFormat : uint8_t {
  kDense,       // rows of plain f32 / bf16 / f16 values, (rows, cols) row-major
  kGgufBlocks,  // rows of GGUF blocks exactly as stored in the file (dtype names the block type)
};

inline const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::kDense: return "dense";
    case WeightFormat::kGgufBlocks: return "gguf_blocks";
  }
  return "unknown";
}

}  // namespace eli
