// kernels/cpu/quant_gemm.h: the prefill (many activation rows) form of the 32-element GGUF block
// products (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) on AVX2.
//
// Two run-time layouts, both private to the CPU GEMM (quant_matmul_cpu.cc):
//   WBlock32: a weight block decoded once per column tile and call (not per group of activation
//     rows): its f32 scale d, its f32 offset factor o (the stored min for Q4_1 / Q5_1, d for Q4_0 /
//     Q5_0 whose offset -8 d / -16 d is applied once at the end, unused otherwise) and its 32
//     quants as bytes in element order (unsigned q_u for the offset types, signed for Q8_0 /
//     IQ4_NL);
//   BlockQ8x32x4: block b of four activation rows quantized as BlockQ8x32 (quant_dot.h), their d
//     and s side by side so a tile loads them as one vector (160 bytes = 4 x 40: the workspace size
//     is unchanged).
// Every output is the one-row dot product's bits (quant_dot.h: the same integer block sums and
// the same float operations in the same order per (weight row, activation row) pair), so decode,
// chunked and whole prefill still agree bit for bit.
//
// Invariants: raw pointers, nothing allocated or thrown; called only where the CPU has AVX2.
#pragma once

#include <cstddef>
#include <cstdint>

#include "eli/dtype.h"
#include "kernels/cpu/quant_dot.h"

namespace eli {

struct WBlock32 {
  float d;
  float o;
  uint8_t q[32];
};
static_assert(sizeof(WBlock32) == 40, "decoded weight block is 40 bytes");

struct BlockQ8x32x4 {
  float d[4];
  float s[4];
  int8_t qs[4][32];
};
static_assert(sizeof(BlockQ8x32x4) == 4 * sizeof(BlockQ8x32), "four activation blocks side by side");

// Decodes `rows` weight rows (w + r * w_stride bytes, nb blocks each) into out[r * nb + b].
using QuantDecode32Fn = void (*)(int64_t nb, const uint8_t* w, int64_t w_stride, int64_t rows, WBlock32* out);
// out[r * 4 + j] = the dot of decoded weight row r (w + r * nb) with activation row j of the group
// xg[0 .. nb), for r < rows.
using QuantGemm32Fn = void (*)(int64_t nb, const WBlock32* w, int64_t rows, const BlockQ8x32x4* xg, float* out);

#ifdef ELI_X86
// nullptr where wtype is not a 32-element block type.
QuantDecode32Fn quant_decode32_avx2(DType wtype);
QuantGemm32Fn quant_gemm32_avx2(DType wtype);
#endif

// Row `slot` (< 4) of the groups group[0 .. nb) from a row of nb BlockQ8x32 (the same values).
inline void scatter_q8x32_row(int64_t nb, const BlockQ8x32* row, int slot, BlockQ8x32x4* group) {
  for (int64_t b = 0; b < nb; ++b) {
    group[b].d[slot] = row[b].d;
    group[b].s[slot] = row[b].s;
    for (int e = 0; e < 32; ++e) group[b].qs[slot][e] = row[b].qs[e];
  }
}

}  // namespace eli
