// kernels/cpu/quant_gemm.h: the prefill (many activation rows) form of the 32-element GGUF block
// products (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) on AVX2.
//
// Two run-time layouts, both private to the CPU GEMM (quant_matmul_cpu.cc):
//   WPanel32: one block of eight weight rows decoded once per column tile and call, weight rows in
//     the lanes: q[e] holds, for row r, the int16 quants of elements 2e and 2e + 1 in 32-bit lane
//     r (unsigned q_u for the offset types, signed for Q8_0 / IQ4_NL), then the eight f32 scales d
//     and offset factors o (the stored min for Q4_1 / Q5_1, d for Q4_0 / Q5_0 whose offset
//     -8 d / -16 d is applied once at the end, 0 otherwise); rows past the matrix are zero;
//   BlockX16: one activation block as int16 quants (the BlockQ8x32 values widened) with its d and s.
// A 32-bit broadcast of an activation pair then meets eight weight rows in one vpmaddwd: the
// exact integer block dot of eight (weight row, activation row) pairs builds up in one register
// with no sign trick and no horizontal sum, and the float work (one scale product, convert and
// fused multiply-add per block) is shared by the eight rows.
//
// The arithmetic per (weight row, activation row) pair is the canonical one of the 32-element
// types (quant_dot.h): acc = fma(d_w * d_x, float(exact integer block dot), acc) over the blocks
// in order from 0, offs = fma(o, s, offs) likewise, out = acc + offs * c (c = 1, -8 or -16); so
// every output is the one-row dot product's bits (decode, chunked and whole prefill agree).
//
// Invariants: raw pointers, nothing allocated or thrown; called only where the CPU has AVX2.
#pragma once

#include <cstddef>
#include <cstdint>

#include "eli/dtype.h"
#include "kernels/cpu/quant_dot.h"

namespace eli {

constexpr int kPanelRows = 8;  // weight rows per WPanel32

struct WPanel32 {
  int16_t q[16][2 * kPanelRows];  // q[e][2 r + h] = quant of element 2 e + h of row r
  float d[kPanelRows];
  float o[kPanelRows];
};
static_assert(sizeof(WPanel32) == 576, "a decoded panel block is 576 bytes");

struct BlockX16 {
  int16_t q[32];
  float d;
  float s;  // d * sum(q): the term a weight block's offset multiplies
};
static_assert(sizeof(BlockX16) == 72, "a widened activation block is 72 bytes");

// Decodes weight rows w + r * w_stride (bytes, nb blocks each), r < rows, into panels
// out[p * nb + b] for p < ceil(rows / 8); rows past `rows` in the last panel are zero.
using QuantDecodePanelsFn = void (*)(int64_t nb, const uint8_t* w, int64_t w_stride, int64_t rows, WPanel32* out);
// out[j * 16 + r] = the dot of weight row r (r < 16: panels w[0 .. nb) and w[nb .. 2 nb)) with
// activation row x[j] (nb BlockX16 each), j < rx (1 to 4).
using QuantGemmPanelsFn = void (*)(int64_t nb, const WPanel32* w, const BlockX16* const* x, int rx, float* out);

#ifdef ELI_X86
// nullptr where wtype is not a 32-element block type.
QuantDecodePanelsFn quant_decode_panels_avx2(DType wtype);
QuantGemmPanelsFn quant_gemm_panels_avx2(DType wtype);
#endif

// A quantized activation row of nb blocks widened to BlockX16 (the same values).
inline void widen_q8x32_row(int64_t nb, const BlockQ8x32* row, BlockX16* out) {
  for (int64_t b = 0; b < nb; ++b) {
    for (int e = 0; e < 32; ++e) out[b].q[e] = row[b].qs[e];
    out[b].d = row[b].d;
    out[b].s = row[b].s;
  }
}

}  // namespace eli
