// kernels/cpu/quant_matmul_cpu.cc: the CPU kGemv / kGemm kernels of GGUF block weights
// (WeightFormat::kGgufBlocks), one instantiation per (block type, instruction set).
//
// Each x row is quantized once into the caller's workspace (quant_dot.h: Q8x32 or Q8xK blocks),
// then every output is one vec_dot of a weight row (read as stored) with a quantized row, plus
// bias, then the epilogue (store, accumulate, or act(gate) * up for a gated product whose n is
// gate rows then up rows). Threads split the output columns; for many rows (prefill) rows are
// walked in chunks so a column tile's weights are reused from cache across the chunk. Within a
// chunk, groups of four rows go through the register tiles (2 weight rows x 4 rows, 1 x 4 for an
// odd column; not for gated products) and the other rows (decode: the one row) through the rows
// form, one call per column tile; every form gives the one-row dot product's bits (quant_dot.h).
// Grouped route (32-element types on AVX2, not gated, m >= kGroupMinRows: prefill): rows are
// quantized as rows and widened to int16 blocks (quant_gemm.h) in a buffer of the calling thread;
// each column tile's weight blocks are decoded once per call into panels of eight rows and then
// meet every activation row in 16 x 4 register tiles, again with the one-row bits.
//
// Route invariance: the GEMV's RMSNorm prologue and SiLU epilogue use the ISA table's sum_sq /
// scale_mul / swiglu_row, exactly as the NormCast and GatedAct kernels do, and every output is
// computed the same way whatever m is; so a row gives the same bits through kGemv (decode, fused)
// as through NormCast + kGemm + GatedAct (prefill), and chunked prefill equals whole prefill.
//
// Invariants: k is a multiple of the block size (kInvalidArgument otherwise); the workspace holds
// at least m * quant_act_row_bytes(type, k) bytes, 4-byte aligned (kInvalidArgument otherwise);
// nothing is allocated per call (per-thread scratch rows and decoded tiles grow once).
#include <cmath>
#include <cstring>
#include <vector>

#include "eli/error.h"

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/cpu/quant_gemm.h"
#include "kernels/cpu/quant_matmul.h"
#include "kernels/ref/activation.h"
#include "runtime/core/thread_pool.h"

namespace eli {
namespace {

using QuantizeActFn = void (*)(DType, const float*, const float*, float, float, int64_t, void*);

constexpr int64_t kColTile = 16;  // output columns per task
constexpr int64_t kRowChunk = 32; // activation rows walked per pass over a column tile
// The grouped GEMM (quant_gemm.h: 32-element types on AVX2, not gated) from this many rows on
// (below, decoding the weights once per call saves little), over column tiles of this width (the
// 16 weight rows of a register tile: two panels).
constexpr int64_t kGroupMinRows = 8;
constexpr int64_t kGroupColTile = 2 * kPanelRows;

struct QuantProduct {
  DType wtype;
  QuantVecDotRowsFn dot_rows;  // dot over consecutive weight rows (the ISA's, or a loop of dot)
  QuantVecDot4Fn dot4;  // nullptr: rows one at a time
  QuantVecDot2x4Fn dot2x4;  // nullptr: weight rows one at a time
  QuantDecodePanelsFn decode_panels;  // with gemm_panels: the grouped GEMM (nullptr: none)
  QuantGemmPanelsFn gemm_panels;
  QuantizeActFn quantize;   // quantize_act_row or its AVX2 form (the same bytes)
  const float* x;
  int64_t x_stride;
  const float* norm_weight;
  float norm_eps, norm_offset;
  const uint8_t* w;
  const float* bias;
  int64_t m, n, k;
  float* out;
  int64_t out_stride;
  GatedAct gated;
  bool accumulate;
  void* workspace;
  size_t workspace_bytes;
};

// out[i, c] = bias + dot (stored or accumulated) for one output.
inline void put(const QuantProduct& p, int64_t i, int64_t c, float y) {
  float* o = p.out + i * p.out_stride + c;
  const float v = y + (p.bias != nullptr ? p.bias[c] : 0.0f);
  *o = p.accumulate ? *o + v : v;
}

// The grouped GEMM (not gated): per column tile, its weight rows decoded once into panels, then
// every activation row (xw: m rows of nb widened blocks) in groups of up to four.
void run_grouped(const QuantProduct& p, int64_t nb, int64_t w_row, const BlockX16* xw, const ExecContext& ctx) {
  const int64_t tiles = (p.n + kGroupColTile - 1) / kGroupColTile;
  parallel_for(ctx.pool, tiles, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<WPanel32> dec;  // one column tile decoded (grows once per thread)
    dec.resize(static_cast<size_t>(kGroupColTile / kPanelRows * nb));
    float y[4 * kGroupColTile];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t c0 = t * kGroupColTile, c1 = c0 + kGroupColTile < p.n ? c0 + kGroupColTile : p.n;
      p.decode_panels(nb, p.w + c0 * w_row, w_row, c1 - c0, dec.data());
      if (c1 - c0 <= kPanelRows) {  // a last tile of one panel: the second one zero
        std::memset(static_cast<void*>(dec.data() + nb), 0, static_cast<size_t>(nb) * sizeof(WPanel32));
      }
      for (int64_t i = 0; i < p.m; i += 4) {
        const int rx = p.m - i < 4 ? static_cast<int>(p.m - i) : 4;
        const BlockX16* xr[4];
        for (int j = 0; j < 4; ++j) xr[j] = xw + (i + (j < rx ? j : 0)) * nb;
        p.gemm_panels(nb, dec.data(), xr, rx, y);
        for (int j = 0; j < rx; ++j) {
          for (int64_t c = c0; c < c1; ++c) put(p, i + j, c, y[j * kGroupColTile + (c - c0)]);
        }
      }
    }
  });
}

void run(const QuantProduct& p, const CpuIsa& isa, const ExecContext& ctx) {
  const DTypeInfo& info = dtype_info(p.wtype);
  ELI_CHECK_ARG(p.m >= 0 && p.n >= 0 && p.k > 0 && p.k % info.block_elems == 0, info.name, " matmul: k ", p.k,
                " must be a positive multiple of the block size ", info.block_elems);
  const bool gated = p.gated != GatedAct::kNone;
  ELI_CHECK_ARG(!gated || p.n % 2 == 0, info.name, " matmul: a gated activation needs an even n, got ", p.n);
  if (p.m == 0 || p.n == 0) return;
  const size_t row_bytes = quant_act_row_bytes(p.wtype, p.k);
  ELI_CHECK_ARG(p.workspace != nullptr && p.workspace_bytes >= static_cast<size_t>(p.m) * row_bytes &&
                    reinterpret_cast<uintptr_t>(p.workspace) % 4 == 0,
                info.name, " matmul: the workspace must hold ", static_cast<size_t>(p.m) * row_bytes,
                " bytes (4-byte aligned) for ", p.m, " quantized rows, got ", p.workspace_bytes);
  auto* xq = static_cast<uint8_t*>(p.workspace);
  // Grouped: every row quantized, then widened into the calling thread's buffer (grows once).
  const bool grouped = p.gemm_panels != nullptr && !gated && p.m >= kGroupMinRows;
  const int64_t nb = p.k / info.block_elems;
  thread_local std::vector<BlockX16> xw;
  if (grouped) xw.resize(static_cast<size_t>(p.m * nb));
  BlockX16* xwp = xw.data();
  parallel_for(ctx.pool, p.m, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> xn;  // one normalised row (grows once per thread)
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = p.x + r * p.x_stride;
      if (p.norm_weight != nullptr) {
        xn.resize(static_cast<size_t>(p.k));
        const double ms = isa.sum_sq(x, p.k) / static_cast<double>(p.k);
        const float inv = static_cast<float>(1.0 / std::sqrt(ms + static_cast<double>(p.norm_eps)));
        isa.scale_mul(xn.data(), x, p.norm_weight, p.norm_offset, inv, p.k);
        x = xn.data();
      }
      p.quantize(p.wtype, x, nullptr, 1.0f, 0.0f, p.k, xq + r * row_bytes);
      if (grouped) widen_q8x32_row(nb, reinterpret_cast<const BlockQ8x32*>(xq + r * row_bytes), xwp + r * nb);
    }
  });
  const int64_t w_row = p.k / info.block_elems * info.block_bytes;
  if (grouped) {
    run_grouped(p, nb, w_row, xwp, ctx);
    return;
  }
  const int64_t n_out = gated ? p.n / 2 : p.n;
  const int64_t tiles = (n_out + kColTile - 1) / kColTile;
  parallel_for(ctx.pool, tiles, [&](int64_t t0, int64_t t1) {
    float gate[kRowChunk][kColTile], up[kRowChunk][kColTile];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t c0 = t * kColTile, c1 = c0 + kColTile < n_out ? c0 + kColTile : n_out;
      for (int64_t i0 = 0; i0 < p.m; i0 += kRowChunk) {
        const int64_t i1 = i0 + kRowChunk < p.m ? i0 + kRowChunk : p.m;
        // Rows i0 .. i4 in groups of four (not gated): 2 x 4 tiles over column pairs, 1 x 4 for
        // a last odd column.
        const int64_t i4 = p.dot4 != nullptr && !gated ? i0 + (i1 - i0) / 4 * 4 : i0;
        for (int64_t i = i0; i < i4; i += 4) {
          const void* xr[4] = {xq + i * row_bytes, xq + (i + 1) * row_bytes, xq + (i + 2) * row_bytes,
                               xq + (i + 3) * row_bytes};
          int64_t c = c0;
          if (p.dot2x4 != nullptr) {
            for (; c + 2 <= c1; c += 2) {
              float y[8];
              p.dot2x4(p.k, p.w + c * w_row, w_row, xr, y);
              for (int r = 0; r < 4; ++r) {
                float* o = p.out + (i + r) * p.out_stride + c;
                for (int h = 0; h < 2; ++h) {
                  const float v = y[4 * h + r] + (p.bias != nullptr ? p.bias[c + h] : 0.0f);
                  o[h] = p.accumulate ? o[h] + v : v;
                }
              }
            }
          }
          for (; c < c1; ++c) {
            float y[4];
            p.dot4(p.k, p.w + c * w_row, xr, y);
            for (int r = 0; r < 4; ++r) {
              float* o = p.out + (i + r) * p.out_stride + c;
              const float v = y[r] + (p.bias != nullptr ? p.bias[c] : 0.0f);
              *o = p.accumulate ? *o + v : v;
            }
          }
        }
        // The other rows (decode: all of them) one at a time, all the tile's columns per call.
        for (int64_t i = i4; i < i1; ++i) {
          const void* xr = xq + i * row_bytes;
          float y[kColTile];
          p.dot_rows(p.k, p.w + c0 * w_row, w_row, c1 - c0, xr, y);
          if (gated) {
            float* g = gate[i - i0];
            float* u = up[i - i0];
            p.dot_rows(p.k, p.w + (c0 + n_out) * w_row, w_row, c1 - c0, xr, u);
            for (int64_t c = c0; c < c1; ++c) {
              g[c - c0] = y[c - c0] + (p.bias != nullptr ? p.bias[c] : 0.0f);
              u[c - c0] += p.bias != nullptr ? p.bias[c + n_out] : 0.0f;
            }
            continue;
          }
          float* o = p.out + i * p.out_stride;
          for (int64_t c = c0; c < c1; ++c) {
            const float v = y[c - c0] + (p.bias != nullptr ? p.bias[c] : 0.0f);
            o[c] = p.accumulate ? o[c] + v : v;
          }
        }
        if (!gated) continue;
        for (int64_t i = i0; i < i1; ++i) {  // the GatedAct kernel's formula, column tile by tile
          float* o = p.out + i * p.out_stride + c0;
          if (p.gated == GatedAct::kSilu && !p.accumulate) {
            isa.swiglu_row(o, gate[i - i0], up[i - i0], c1 - c0);
            continue;
          }
          for (int64_t c = 0; c < c1 - c0; ++c) {
            const float v = gated_act_value(p.gated, gate[i - i0][c]) * up[i - i0][c];
            o[c] = p.accumulate ? o[c] + v : v;
          }
        }
      }
    }
  });
}

// The dot over consecutive weight rows of the instruction set (a loop over the generic dot where
// there is none).
template <DType D>
void generic_rows(int64_t k, const void* w, int64_t w_stride, int64_t n, const void* xq, float* out) {
  const QuantVecDotFn dot = quant_vec_dot_generic(D);
  for (int64_t c = 0; c < n; ++c) out[c] = dot(k, static_cast<const uint8_t*>(w) + c * w_stride, xq);
}

template <DType D>
QuantVecDotRowsFn dot_rows_for(CpuIsaKind isa) {
#ifdef ELI_X86
  if (isa != CpuIsaKind::kGeneric) return quant_vec_dot_rows_avx2(D);
#endif
  return generic_rows<D>;
}

QuantVecDot4Fn dot4_for(DType wtype, CpuIsaKind isa) {
#ifdef ELI_X86
  if (isa != CpuIsaKind::kGeneric) return quant_vec_dot4_avx2(wtype);
#endif
  return nullptr;
}

QuantVecDot2x4Fn dot2x4_for(DType wtype, CpuIsaKind isa) {
#ifdef ELI_X86
  if (isa != CpuIsaKind::kGeneric) return quant_vec_dot2x4_avx2(wtype);
#endif
  return nullptr;
}

QuantDecodePanelsFn decode_panels_for(DType wtype, CpuIsaKind isa) {
#ifdef ELI_X86
  if (isa != CpuIsaKind::kGeneric) return quant_decode_panels_avx2(wtype);
#endif
  return nullptr;
}

QuantGemmPanelsFn gemm_panels_for(DType wtype, CpuIsaKind isa) {
#ifdef ELI_X86
  if (isa != CpuIsaKind::kGeneric) return quant_gemm_panels_avx2(wtype);
#endif
  return nullptr;
}

QuantizeActFn quantize_for(CpuIsaKind isa) {
#ifdef ELI_X86
  if (isa != CpuIsaKind::kGeneric) return quantize_act_row_avx2;
#endif
  return quantize_act_row;
}

// The elementwise loops (norm, SiLU) of the instruction set the dot products use.
const CpuIsa& isa_for(CpuIsaKind isa) {
#ifdef ELI_X86
  if (isa != CpuIsaKind::kGeneric) return cpu_isa_avx2();
#endif
  return cpu_isa_generic();
}

template <DType D, CpuIsaKind I>
void gemv_gguf(const void* args, const ExecContext& ctx) {
  const auto& a = *static_cast<const GemvArgs*>(args);
  run(QuantProduct{D, dot_rows_for<D>(I), dot4_for(D, I), dot2x4_for(D, I), decode_panels_for(D, I), gemm_panels_for(D, I), quantize_for(I), a.x, a.x_stride, a.norm_weight, a.norm_eps, a.norm_weight_offset,
                   static_cast<const uint8_t*>(a.w), a.bias, a.m, a.n, a.k, a.out, a.out_stride, a.gated,
                   a.accumulate, a.workspace, a.workspace_bytes},
      isa_for(I), ctx);
}

template <DType D, CpuIsaKind I>
void gemm_gguf(const void* args, const ExecContext& ctx) {
  const auto& a = *static_cast<const GemmArgs*>(args);
  ELI_CHECK_KIND(kUnsupported, a.x_dtype == DType::kF32 && a.out_dtype == DType::kF32, dtype_name(D),
                 " gemm on the CPU takes float32 x and out, got x ", dtype_name(a.x_dtype), ", out ",
                 dtype_name(a.out_dtype));
  run(QuantProduct{D, dot_rows_for<D>(I), dot4_for(D, I), dot2x4_for(D, I), decode_panels_for(D, I), gemm_panels_for(D, I), quantize_for(I), static_cast<const float*>(a.x), a.x_stride, nullptr, 0.0f, 0.0f,
                   static_cast<const uint8_t*>(a.w), a.bias, a.m, a.n, a.k, static_cast<float*>(a.out), a.out_stride,
                   GatedAct::kNone, a.accumulate, a.workspace, a.workspace_bytes},
      isa_for(I), ctx);
}

template <CpuIsaKind I>
KernelFn pick(Op op, DType wtype) {
#define ELI_QUANT_CASE(D)                                                        \
  case D:                                                                        \
    return op == Op::kGemv ? static_cast<KernelFn>(gemv_gguf<D, I>) : gemm_gguf<D, I>;
  switch (wtype) {
    ELI_QUANT_CASE(DType::kQ4_0)
    ELI_QUANT_CASE(DType::kQ4_1)
    ELI_QUANT_CASE(DType::kQ5_0)
    ELI_QUANT_CASE(DType::kQ5_1)
    ELI_QUANT_CASE(DType::kQ8_0)
    ELI_QUANT_CASE(DType::kQ2_K)
    ELI_QUANT_CASE(DType::kQ3_K)
    ELI_QUANT_CASE(DType::kQ4_K)
    ELI_QUANT_CASE(DType::kQ5_K)
    ELI_QUANT_CASE(DType::kQ6_K)
    ELI_QUANT_CASE(DType::kIQ4_NL)
    ELI_QUANT_CASE(DType::kIQ4_XS)
    default: return nullptr;
  }
#undef ELI_QUANT_CASE
}

}  // namespace

KernelFn quant_matmul_cpu_kernel(Op op, DType wtype, CpuIsaKind isa) {
  if (op != Op::kGemv && op != Op::kGemm) return nullptr;
#ifdef ELI_X86
  if (isa != CpuIsaKind::kGeneric) return pick<CpuIsaKind::kAvx2>(op, wtype);
#endif
  return pick<CpuIsaKind::kGeneric>(op, wtype);
}

}  // namespace eli
