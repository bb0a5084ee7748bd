// kernels/ref/wq_ref.h: the references (oracles) of the GEMV / GEMM kernels of eli's quantized
// weight layouts (kernels/wq_matrix.h), and the numerics every kernel of those layouts shares:
// element dequantization and per-token activation quantization of the W8A8 formats.
//
// The references dequantize each weight to f32 exactly as defined in wq_matrix.h, quantize the
// activation rows of the W8A8 formats with the functions below, and accumulate in double; the
// optimized kernels must match within f32 accumulation error.
#pragma once

#include <cstdint>

#include "kernels/ops.h"
#include "kernels/wq_matrix.h"

namespace eli {

// Row r of the logical (n, k) matrix as f32 (k values).
void wq_dequant_row(const WqMatrix& w, int64_t k, int64_t r, float* out);

// Per-token activation quantization (W8A8). Each returns the row's scale s (static_scale when > 0,
// else max|x| / 127 or / 448, and 1 for an all-zero row) and writes q with x ~= q * s: int8 by
// round-half-to-even of x / s clamped to [-127, 127]; e4m3 by f32_to_fp8_e4m3(x / s) (saturating).
float wq_quantize_row_int8(const float* x, int64_t k, int8_t* q, float static_scale = 0.0f);
float wq_quantize_row_fp8(const float* x, int64_t k, uint8_t* q, float static_scale = 0.0f);

// GemvArgs / GemmArgs with w -> WqMatrix (any of the four formats). GEMM: x and out f32.
void wq_gemv_ref(const void* args, const ExecContext& ctx);
void wq_gemm_ref(const void* args, const ExecContext& ctx);

}  // namespace eli
