// kernels/ref/dequant_ref.h: plain reference dequantization of GGUF block-quantized rows to f32.
//
// Invariants: formats follow the GGUF/ggml block layouts (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K,
// Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS; sizes in eli/dtype.h). `n` must be a multiple of the dtype's block size (checked,
// kInvalidArgument otherwise). Output is bit-identical to gguf-py's numpy dequantization.
#pragma once

#include <cstdint>

#include "eli/dtype.h"
#include "kernels/registry.h"

namespace eli {

// IQ4_NL / IQ4_XS: the 16 non-linear levels a 4-bit index selects (ggml's kvalues_iq4nl).
inline constexpr int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

// The GGUF block types (the dtypes with WeightFormat::kGgufBlocks weights), in ggml code order.
inline constexpr DType kGgufBlockTypes[12] = {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,  DType::kQ5_1,
                                              DType::kQ8_0, DType::kQ2_K, DType::kQ3_K,  DType::kQ4_K,
                                              DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS};

// Dequantizes n elements (a multiple of the dtype's block size) of block-quantized `in` into f32.
// Also accepts F32, F16 and BF16 (plain conversion).
void dequant_row_ref(DType dtype, const void* in, float* out, int64_t n);

// The registry kernel (Op::kDequant, DequantArgs from kernels/ops.h) for a quantized dtype;
// nullptr if none.
KernelFn dequant_ref_kernel(DType dtype);

// The reference kGemv / kGemm of GGUF block weights (GemvArgs / GemmArgs with w as stored): the
// weight dequantized to f32, then the f32 reference product (double accumulation). Allocates;
// the registry's "ref" entry of (op, cpu, kGgufBlocks, dtype). nullptr for other ops / dtypes.
KernelFn quant_matmul_ref_kernel(Op op, DType dtype);

// kEmbedding of a table of GGUF block rows (EmbeddingArgs; ids clamped as the dense kernels do):
// each token's row dequantized, times scale. nullptr for a non-block dtype.
KernelFn gguf_embedding_ref_kernel(DType dtype);

}  // namespace eli
