// kernels/ref/dequant_ref.h: plain reference dequantization of GGUF block-quantized rows to f32.
//
// Invariants: formats follow the GGUF/ggml block layouts (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K,
// Q5_K, Q6_K; sizes in eli/dtype.h). `n` must be a multiple of the dtype's block size (checked,
// kInvalidArgument otherwise). Output is bit-identical to gguf-py's numpy dequantization.
#pragma once

#include <cstdint>

#include "eli/dtype.h"
#include "kernels/registry.h"

namespace eli {

// Dequantizes n elements (a multiple of the dtype's block size) of block-quantized `in` into f32.
// Also accepts F32, F16 and BF16 (plain conversion).
void dequant_row_ref(DType dtype, const void* in, float* out, int64_t n);

// The registry kernel (Op::kDequant, DequantArgs from kernels/ops.h) for a quantized dtype;
// nullptr if none.
KernelFn dequant_ref_kernel(DType dtype);

}  // namespace eli
