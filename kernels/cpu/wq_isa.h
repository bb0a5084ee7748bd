// kernels/cpu/wq_isa.h: the inner loops of the CPU kernels of eli's quantized weight layouts
// (kernels/wq_matrix.h), one table per instruction set, as cpu_isa.h does for the dense kernels:
// the driver (kernels/cpu/wq_cpu.cc) is built with default flags, only these raw-pointer loops are
// compiled with -mavx2 (wq_avx2.cc). Weights are dequantized in registers inside the dot products.
//
// Invariants: no allocation, no throws, no inline library code in the ISA files (the e4m3 table is
// passed in).
#pragma once

#include <cstdint>

namespace eli {

struct WqIsa {
  const char* name;
  // sum over chunks c < n_chunks, i < 16: x[32c + i] * ((q[16c + i] & 15) - z) + x[32c + 16 + i] * ((q[16c + i] >> 4) - z)
  float (*dot_u4)(const uint8_t* q, const float* x, int64_t n_chunks, float z);
  // sum_{j < n} x[j] * (q[j] - z) (q unsigned 8-bit)
  float (*dot_u8)(const uint8_t* q, const float* x, int64_t n, float z);
  // sum_{j < n} a[j] * b[j], exact in int32 (n * 127 * 127 < 2^31)
  int32_t (*dot_i8)(const int8_t* a, const int8_t* b, int64_t n);
  // sum_{j < n} x[j] * table[q[j]] (q e4m3 codes, table the 256 decoded values)
  float (*dot_fp8)(const uint8_t* q, const float* x, int64_t n, const float* table);
};

const WqIsa& wq_isa_generic();
#ifdef ELI_X86
const WqIsa& wq_isa_avx2();
#endif

}  // namespace eli

// The registered CPU kernels (kernels/cpu/wq_cpu.cc): GemvArgs / GemmArgs whose w is a WqMatrix of
// any of the four layouts, same semantics as wq_gemv_ref / wq_gemm_ref (GEMM: f32 x and out).
#include "kernels/ops.h"

namespace eli {
void wq_gemv_cpu_generic(const void* args, const ExecContext& ctx);
void wq_gemm_cpu_generic(const void* args, const ExecContext& ctx);
#ifdef ELI_X86
void wq_gemv_cpu_avx2(const void* args, const ExecContext& ctx);
void wq_gemm_cpu_avx2(const void* args, const ExecContext& ctx);
#endif
}  // namespace eli
