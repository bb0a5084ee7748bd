// kernels/cpu/quant_dot.h: integer dot products of GGUF weight blocks with activations quantized
// per block to 8 bits (as llama.cpp does on the CPU; written here from the block layouts of
// kernels/ref/dequant_ref.cc).
//
// Activations: a row of k f32 values (k a multiple of the weight's block size) becomes
//   Q8x32 blocks (the 32-element weight types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL): 40 bytes per
//     32 values: d = amax / 127, q = round(x / d) in [-127, 127], s = d * sum(q);
//   Q8xK blocks (the 256-element types Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS): 292 bytes per 256
//     values: one d for the 256, q as above, bsums[j] = sum of q over elements 16j .. 16j + 15.
// Both fit in k / 32 * 40 bytes (kQuantActBytesPer32), the workspace a LinearMethod sizes.
// The weight is then applied as sum over blocks of (d_w * d_x) * (integer dot of the block's
// quants) with the weight's per-sub-block scales and mins folded in exactly; the only error
// against the f32 product is the activation rounding: |x - d q| <= d / 2 per element.
//
// Invariants: the vec_dot functions take raw pointers, allocate nothing and throw nothing; the
// AVX2 table is only called where the CPU has AVX2 (kernels/cpu/cpu_features.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "eli/dtype.h"

namespace eli {

struct BlockQ8x32 {
  float d;        // scale of the 32 quants
  float s;        // d * sum(qs): the term a weight block's offset (Q4_1/Q5_1 m) multiplies
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8x32) == 40, "Q8x32 block is 40 bytes");

struct BlockQ8xK {
  float d;
  int8_t qs[256];
  int16_t bsums[16];  // sum of qs over each 16 elements
};
static_assert(sizeof(BlockQ8xK) == 292, "Q8xK block is 292 bytes");

constexpr size_t kQuantActBytesPer32 = 40;  // workspace bytes per 32 activations (either format)

// Whether the weight type pairs with Q8xK activations (else Q8x32).
bool quant_uses_q8k(DType wtype);
// Bytes of one quantized activation row of k values for weight type `wtype`.
size_t quant_act_row_bytes(DType wtype, int64_t k);

// Quantizes x[0, k) (optionally normalised on the fly: x[j] * inv_rms * (norm_w[j] + offset) when
// norm_w != nullptr) into the activation blocks `wtype` pairs with, at out.
void quantize_act_row(DType wtype, const float* x, const float* norm_w, float inv_rms, float offset, int64_t k,
                      void* out);

// sum_j w[j] * x[j] over k values: w one row of `wtype` blocks, xq its quantized activations.
using QuantVecDotFn = float (*)(int64_t k, const void* w, const void* xq);
QuantVecDotFn quant_vec_dot_generic(DType wtype);  // nullptr for a non-GGUF dtype
// out[c] = the vec_dot of weight row w + c * w_stride (bytes) with xq for c < n, each
// bit-identical to QuantVecDotFn's result (decode: one call per column tile, the rows' work
// overlapping in one loop).
using QuantVecDotRowsFn = void (*)(int64_t k, const void* w, int64_t w_stride, int64_t n, const void* xq, float* out);
// out[r] = the vec_dot of w with xq[r] for r < 4, each bit-identical to QuantVecDotFn's result
// (the same operations per row; the weight block is decoded once for the 4 rows: prefill).
using QuantVecDot4Fn = void (*)(int64_t k, const void* w, const void* const* xq, float* out);
// out[i * 4 + r] = the vec_dot of weight row w + i * w_stride (bytes) with xq[r], for i < 2 and
// r < 4, each bit-identical to QuantVecDotFn's result (a 2 x 4 register tile: each weight block is
// decoded once for 4 rows, each activation block loaded once for 2 weight rows: prefill).
using QuantVecDot2x4Fn = void (*)(int64_t k, const void* w, int64_t w_stride, const void* const* xq, float* out);
#ifdef ELI_X86
// quantize_act_row with AVX2: the same bytes (the generic rounding, NaN and range rules).
void quantize_act_row_avx2(DType wtype, const float* x, const float* norm_w, float inv_rms, float offset, int64_t k,
                           void* out);
QuantVecDotFn quant_vec_dot_avx2(DType wtype);
QuantVecDotRowsFn quant_vec_dot_rows_avx2(DType wtype);  // every GGUF block type
QuantVecDot4Fn quant_vec_dot4_avx2(DType wtype);      // nullptr where only the one-row form exists
QuantVecDot2x4Fn quant_vec_dot2x4_avx2(DType wtype);  // nullptr where no 2 x 4 tile exists
#endif

}  // namespace eli
