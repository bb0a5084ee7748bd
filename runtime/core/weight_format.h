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
  // eli's own layouts of Hugging Face quantized checkpoints (AWQ, GPTQ, compressed-tensors),
  // repacked once at load; kernels read them through a WqMatrix (kernels/wq_matrix.h), never the
  // published layout, and never see an act-order g_idx (the permutation is applied at load).
  kInt4Grouped,  // dtype kU8: (n, k/2) bytes of unsigned 4-bit values, per (row, group) f32 scale and zero
  kInt8Grouped,  // dtype kU8: (n, k) unsigned 8-bit values, per (row, group) f32 scale and zero
  kInt8Channel,  // dtype kI8: (n, k) symmetric int8, per-row f32 scale; activations quantized per token
  kFp8Channel,   // dtype kF8E4M3: (n, k) e4m3, per-row f32 scale; activations quantized per token
};

inline const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::kDense: return "dense";
    case WeightFormat::kGgufBlocks: return "gguf_blocks";
    case WeightFormat::kInt4Grouped: return "int4_grouped";
    case WeightFormat::kInt8Grouped: return "int8_grouped";
    case WeightFormat::kInt8Channel: return "int8_channel";
    case WeightFormat::kFp8Channel: return "fp8_channel";
  }
  return "unknown";
}

}  // namespace eli
