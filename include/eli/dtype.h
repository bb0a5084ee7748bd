// eli/dtype.h: element types of tensors, including GGUF block-quantized storage types.
//
// Invariants: for a block type, a row of n elements (n a multiple of block_elems) takes
// n / block_elems * block_bytes bytes; for a plain type block_elems == 1. The numeric values of
// DType are eli's own and never written to files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace eli {

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kI32,
  kI64,
  kU8,
  // GGUF block-quantized storage types (block sizes as in the GGUF specification).
  kQ8_0,
  kQ4_0,
  kQ4_1,
  kQ5_0,
  kQ5_1,
  kQ4_K,
  kQ5_K,
  kQ6_K,
  kQ2_K,
  kQ3_K,
  kIQ4_NL,
  kIQ4_XS,
  // Plain 8-bit types of quantized weights and KV caches (scales are kept beside them).
  kI8,
  kF8E4M3,  // OCP fp8 e4m3 (finite, max 448), as CUDA's __nv_fp8_e4m3
};

struct DTypeInfo {
  const char* name;      // "f32", "bf16", "q4_k", ...
  int64_t block_elems;   // elements per block (1 for plain types)
  int64_t block_bytes;   // bytes per block
  bool is_float;         // plain floating point
  bool is_quantized;     // block-quantized storage
};

const DTypeInfo& dtype_info(DType dtype);
inline const char* dtype_name(DType dtype) { return dtype_info(dtype).name; }
// Parses "float32"/"f32"/"F32", "bfloat16"/"bf16", "float16"/"f16"/"half"; throws on others.
DType parse_dtype(const std::string& name);

}  // namespace eli
