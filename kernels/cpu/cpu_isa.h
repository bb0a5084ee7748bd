// kernels/cpu/cpu_isa.h: the small set of ISA-specific inner loops the optimized CPU kernels are
// built from, as a table of function pointers (one table per instruction set).
//
// Why: the drivers (threading, blocking, scratch buffers, std:: containers) live in files built
// with the default flags; only these raw-pointer loops are compiled with -mavx2/-mavx512f. So no
// inline STL code is ever emitted with ISA flags (which the linker could pick for generic callers),
// and every ISA shares one driver. Tables for an ISA the CPU lacks are never called.
//
// Invariants: functions take raw pointers and element counts/strides; no allocation, no throws.
#pragma once

#include <cstdint>

#include "kernels/ops.h"

namespace eli {

enum class CpuIsaKind { kGeneric, kAvx2, kAvx512 };

// rows x row_bytes bytes at base (row stride stride_bytes) to prefetch; base == nullptr: none.
struct PrefetchRows {
  const void* base = nullptr;
  int64_t rows = 0, row_bytes = 0, stride_bytes = 0;
};

struct CpuIsa {
  const char* name;
  // Matmul tile: c[i * ldc + j] += sum_{p < k} a[i * lda + p] * b[j * ldb + p] for i < mr, j < nr.
  // mr in [1, tile_m], nr in [1, tile_n].
  void (*tile_f32)(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t k, float* c,
                   int64_t ldc, int mr, int nr);
  void (*tile_bf16)(const float* a, int64_t lda, const uint16_t* b, int64_t ldb, int64_t k,
                    float* c, int64_t ldc, int mr, int nr);
  int tile_m, tile_n;
  void (*bf16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  // Attention for one (query, head): out[hd] = softmax(scale * q . k_j) @ v_j over j in [lo, hi]
  // (hi >= lo). k/v row of position j: cache + kv_offset(j) with blocks/ block_size as in ops.h.
  // scratch holds hi - lo + 1 floats.
  void (*attention_row)(const AttentionArgs& a, const int32_t* blocks, int64_t kv_head,
                        const float* q, float* out, int64_t lo, int64_t hi, float* scratch);
  // out[j] = x[j] * inv_rms * (w[j] + offset); returns nothing. sum_sq returns sum x[j]^2.
  double (*sum_sq)(const float* x, int64_t n);
  void (*scale_mul)(float* out, const float* x, const float* w, float offset, float inv_rms, int64_t n);
  void (*add_inplace)(float* y, const float* x, int64_t n);  // y += x
  // out[j] = silu(gate[j]) * up[j]
  void (*swiglu_row)(float* out, const float* gate, const float* up, int64_t n);
  // x[i], x[i + half] rotated by (cos[i], sin[i]) for i < half.
  void (*rope_row)(float* x, const float* cos, const float* sin, int64_t half);
  // Packed GEMM for the prefill regime (panel_n == 0: not provided, the driver uses the tiles).
  // A panel is (kc, panel_n) f32, K-major: panel[p * panel_n + j] = w[j * ldw + p] for j < nr,
  // 0 for nr <= j < panel_n. gemm_panel: c[i * ldc + j] += sum_{p < kc} a[i * lda + p] *
  // panel[p * panel_n + j] for i < m, j < nr (nr in [1, panel_n]).
  int panel_n;
  void (*pack_panel_f32)(const float* w, int64_t ldw, int nr, int64_t kc, float* panel);
  void (*pack_panel_bf16)(const uint16_t* w, int64_t ldw, int nr, int64_t kc, float* panel);
  // pf: memory the caller reads next (the next panel's weights), prefetched while computing.
  void (*gemm_panel)(const float* a, int64_t lda, int64_t m, const float* panel, int64_t kc,
                     float* c, int64_t ldc, int nr, const PrefetchRows& pf);
};

const CpuIsa& cpu_isa_generic();
#ifdef ELI_X86
const CpuIsa& cpu_isa_avx2();
const CpuIsa& cpu_isa_avx512();  // AVX-512 F/BW/VL/DQ; elementwise loops shared with AVX2
#endif

}  // namespace eli
