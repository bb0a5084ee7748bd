// kernels/cpu/matmul_cpu.cc: the threaded CPU matrix products: Op::kGemm (out[M,N] (+)= x[M,K] @
// w[N,K]^T + bias, x and out f32, w f32 or bf16) and Op::kGemv (the same product with the decode
// fusions of GemvArgs: RMSNorm of x first, the gated activation after), one driver for both.
//
// Two regimes (three with an ISA that has a packed GEMM, see matmul_packed):
// - decode / small M (M <= kGemvMaxM): bandwidth-bound. Parallel over blocks of weight rows; each
//   weight tile (tile_n rows) is streamed once from memory and multiplied with every row of x
//   (re-reads hit L1/L2); bf16 weights are widened on the fly.
// - prefill / large M: tasks over (kNb weight rows) x (kMb x rows) blocks, K split in kKc chunks so
//   that a weight tile stays in L1 and the x block in L2; bf16 weights are widened once per
//   (task, K chunk) into a thread-local f32 buffer, then the same dot-product tiles run.
// Every output element is written by exactly one task; the tile functions only add to out, so a
// task first sets its outputs to bias (or 0), or adds bias when accumulate is set.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "eli/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ref/activation.h"
#include "runtime/core/thread_pool.h"

namespace eli {

namespace {

// One product: out[m, n] (+)= x[m, k] @ w[n, k]^T + bias[n], f32 x and out.
struct MatmulArgs {
  float* out;              // (M, N), row stride out_stride
  const float* x;          // (M, K), row stride x_stride
  const void* w;           // (N, K) contiguous, f32 or bf16
  const float* bias;       // (N) or nullptr
  int64_t m, n, k, out_stride, x_stride;
  bool accumulate;         // out += result
};

constexpr int64_t kGemvMaxM = 8;
constexpr int64_t kGemvNb = 32;   // weight rows per decode task
constexpr int64_t kNb = 64;       // weight rows per prefill task
constexpr int64_t kMb = 96;       // x rows per prefill task
constexpr int64_t kKc = 512;      // K chunk
constexpr int64_t kPackKc = 192;  // packed path: max K chunk (a 48-row f32 panel is 36 KiB)
constexpr int64_t kPackMb = 256;  // packed path: x rows per task
constexpr double kInlineFlops = 1 << 17;  // below this, threading costs more than it gives

void init_outputs(const MatmulArgs& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  for (int64_t i = m0; i < m1; ++i) {
    float* out = a.out + i * a.out_stride;
    if (a.accumulate) {
      if (a.bias != nullptr)
        for (int64_t j = n0; j < n1; ++j) out[j] += a.bias[j];
    } else if (a.bias != nullptr) {
      for (int64_t j = n0; j < n1; ++j) out[j] = a.bias[j];
    } else {
      std::fill(out + n0, out + n1, 0.0f);
    }
  }
}

template <typename W>
void run_tiles(const CpuIsa& isa, const MatmulArgs& a, const W* b, int64_t ldb, int64_t m0,
               int64_t m1, int64_t n0, int64_t n1, int64_t p0, int64_t kc) {
  for (int64_t j = n0; j < n1; j += isa.tile_n) {
    const int nr = static_cast<int>(std::min<int64_t>(isa.tile_n, n1 - j));
    const W* bj = b + (j - n0) * ldb;
    for (int64_t i = m0; i < m1; i += isa.tile_m) {
      const int mr = static_cast<int>(std::min<int64_t>(isa.tile_m, m1 - i));
      const float* ai = a.x + i * a.x_stride + p0;
      float* ci = a.out + i * a.out_stride + j;
      if constexpr (sizeof(W) == 4) {
        isa.tile_f32(ai, a.x_stride, bj, ldb, kc, ci, a.out_stride, mr, nr);
      } else {
        isa.tile_bf16(ai, a.x_stride, bj, ldb, kc, ci, a.out_stride, mr, nr);
      }
    }
  }
}

// Prefill with a packed-panel ISA: tasks are (one panel of panel_n weight rows) x (kPackMb x
// rows); per K chunk the task packs its panel (kc, panel_n) into a thread-local buffer (L1
// sized) and runs gemm_panel over its x rows.
void matmul_packed(const MatmulArgs& a, bool bf16, const CpuIsa& isa, ThreadPool* pool) {
  const int64_t pn = isa.panel_n;
  const int64_t n_chunks = (a.k + kPackKc - 1) / kPackKc;
  const int64_t kc_max = (a.k + n_chunks - 1) / n_chunks;  // K chunks of near-equal size
  const int64_t np_count = (a.n + pn - 1) / pn, mb_count = (a.m + kPackMb - 1) / kPackMb;
  const float* wf = static_cast<const float*>(a.w);
  const uint16_t* wh = static_cast<const uint16_t*>(a.w);
  parallel_for(pool, np_count * mb_count, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> panel;  // (kc_max, panel_n)
    if (panel.size() < static_cast<size_t>(kc_max * pn)) panel.resize(static_cast<size_t>(kc_max * pn));
    const int64_t wsize = bf16 ? 2 : 4;
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t n0 = (task / mb_count) * pn, n1 = std::min(a.n, n0 + pn);
      const int64_t m0 = (task % mb_count) * kPackMb, m1 = std::min(a.m, m0 + kPackMb);
      const int nr = static_cast<int>(n1 - n0);
      init_outputs(a, m0, m1, n0, n1);
      for (int64_t p0 = 0; p0 < a.k; p0 += kc_max) {
        const int64_t kc = std::min(kc_max, a.k - p0);
        // What the next pack reads: the next K chunk of this panel, else the next task's panel.
        PrefetchRows pf;
        int64_t pf_n0 = -1, pf_p0 = 0;
        if (p0 + kc < a.k) {
          pf_n0 = n0;
          pf_p0 = p0 + kc;
        } else if (task + 1 < t1) {
          pf_n0 = ((task + 1) / mb_count) * pn;
        }
        if (pf_n0 >= 0) {
          pf.base = static_cast<const char*>(a.w) + (pf_n0 * a.k + pf_p0) * wsize;
          pf.rows = std::min(a.n, pf_n0 + pn) - pf_n0;
          pf.row_bytes = std::min(kc_max, a.k - pf_p0) * wsize;
          pf.stride_bytes = a.k * wsize;
        }
        if (bf16) {
          isa.pack_panel_bf16(wh + n0 * a.k + p0, a.k, nr, kc, panel.data());
        } else {
          isa.pack_panel_f32(wf + n0 * a.k + p0, a.k, nr, kc, panel.data());
        }
        isa.gemm_panel(a.x + m0 * a.x_stride + p0, a.x_stride, m1 - m0, panel.data(), kc,
                       a.out + m0 * a.out_stride + n0, a.out_stride, nr, pf);
      }
    }
  });
}

void matmul_cpu(const MatmulArgs& a, bool bf16, const CpuIsa& isa, ThreadPool* pool) {
  ELI_CHECK(a.m >= 0 && a.n >= 0 && a.k >= 0, "matmul: negative size m=", a.m, " n=", a.n, " k=", a.k);
  ELI_CHECK(a.m <= 1 || (a.x_stride >= a.k && a.out_stride >= a.n), "matmul: row stride smaller than row");
  if (a.m == 0 || a.n == 0) return;
  const double flops = 2.0 * static_cast<double>(a.m) * static_cast<double>(a.n) * static_cast<double>(a.k);
  if (flops < kInlineFlops) pool = nullptr;
  const float* wf = static_cast<const float*>(a.w);
  const uint16_t* wh = static_cast<const uint16_t*>(a.w);

  if (a.m <= kGemvMaxM) {
    const int64_t n_blocks = (a.n + kGemvNb - 1) / kGemvNb;
    parallel_for(pool, n_blocks, [&](int64_t b0, int64_t b1) {
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t n0 = blk * kGemvNb, n1 = std::min(a.n, n0 + kGemvNb);
        init_outputs(a, 0, a.m, n0, n1);
        if (bf16) {
          run_tiles(isa, a, wh + n0 * a.k, a.k, 0, a.m, n0, n1, 0, a.k);
        } else {
          run_tiles(isa, a, wf + n0 * a.k, a.k, 0, a.m, n0, n1, 0, a.k);
        }
      }
    });
    return;
  }

  if (isa.panel_n > 0) {
    matmul_packed(a, bf16, isa, pool);
    return;
  }
  const int64_t nb_count = (a.n + kNb - 1) / kNb, mb_count = (a.m + kMb - 1) / kMb;
  parallel_for(pool, nb_count * mb_count, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> wbuf;  // (kNb, kKc) widened bf16 weights
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t n0 = (task / mb_count) * kNb, n1 = std::min(a.n, n0 + kNb);
      const int64_t m0 = (task % mb_count) * kMb, m1 = std::min(a.m, m0 + kMb);
      init_outputs(a, m0, m1, n0, n1);
      for (int64_t p0 = 0; p0 < a.k; p0 += kKc) {
        const int64_t kc = std::min(kKc, a.k - p0);
        if (bf16) {
          wbuf.resize(static_cast<size_t>(kNb * kKc));
          for (int64_t j = n0; j < n1; ++j) isa.bf16_to_f32(wh + j * a.k + p0, wbuf.data() + (j - n0) * kc, kc);
          run_tiles(isa, a, wbuf.data(), kc, m0, m1, n0, n1, p0, kc);
        } else {
          run_tiles(isa, a, wf + n0 * a.k + p0, a.k, m0, m1, n0, n1, p0, kc);
        }
      }
    }
  });
}

void gemm_cpu(const GemmArgs& g, bool bf16, const CpuIsa& isa, ThreadPool* pool) {
  ELI_CHECK_KIND(kUnsupported, g.x_dtype == DType::kF32 && g.out_dtype == DType::kF32,
                 "CPU gemm takes float32 activations and output, not x ", dtype_name(g.x_dtype), " / out ",
                 dtype_name(g.out_dtype));
  MatmulArgs a{static_cast<float*>(g.out), static_cast<const float*>(g.x), g.w, g.bias, g.m, g.n, g.k,
               g.out_stride, g.x_stride, g.accumulate};
  matmul_cpu(a, bf16, isa, pool);
}

// The decode fusions around one product: x rows normalised into scratch (if norm_weight), the
// product into out (or, gated, into scratch then out (+)= act(gate) * up).
void gemv_cpu(const GemvArgs& g, bool bf16, const CpuIsa& isa, ThreadPool* pool) {
  const bool gated = g.gated != GatedAct::kNone;
  ELI_CHECK(g.m >= 0 && g.n >= 0 && g.k > 0, "gemv: bad sizes m=", g.m, " n=", g.n, " k=", g.k);
  ELI_CHECK(!gated || g.n % 2 == 0, "gemv: a gated activation needs an even n, got ", g.n);
  thread_local std::vector<float> xn, y;  // (m, k) normalised rows; (m, n) pre-activation rows
  const float* x = g.x;
  int64_t x_stride = g.x_stride;
  if (g.norm_weight != nullptr) {
    xn.resize(static_cast<size_t>(g.m * g.k));
    for (int64_t r = 0; r < g.m; ++r) {
      const float* src = g.x + r * g.x_stride;
      const double ms = isa.sum_sq(src, g.k) / static_cast<double>(g.k);
      const float inv = static_cast<float>(1.0 / std::sqrt(ms + static_cast<double>(g.norm_eps)));
      isa.scale_mul(xn.data() + r * g.k, src, g.norm_weight, g.norm_weight_offset, inv, g.k);
    }
    x = xn.data();
    x_stride = g.k;
  }
  if (!gated) {
    MatmulArgs a{g.out, x, g.w, g.bias, g.m, g.n, g.k, g.out_stride, x_stride, g.accumulate};
    matmul_cpu(a, bf16, isa, pool);
    return;
  }
  y.resize(static_cast<size_t>(g.m * g.n));
  MatmulArgs a{y.data(), x, g.w, g.bias, g.m, g.n, g.k, g.n, x_stride, false};
  matmul_cpu(a, bf16, isa, pool);
  const int64_t half = g.n / 2;
  for (int64_t r = 0; r < g.m; ++r) {
    const float* yr = y.data() + r * g.n;
    float* out = g.out + r * g.out_stride;
    if (g.gated == GatedAct::kSilu && !g.accumulate) {
      isa.swiglu_row(out, yr, yr + half, half);
      continue;
    }
    for (int64_t j = 0; j < half; ++j) {
      const float v = gated_act_value(g.gated, yr[j]) * yr[half + j];
      out[j] = g.accumulate ? out[j] + v : v;
    }
  }
}

}  // namespace

template <CpuIsaKind I>
void gemm_cpu_f32(const void* args, const ExecContext& ctx) {
  gemm_cpu(*static_cast<const GemmArgs*>(args), false, isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void gemm_cpu_bf16(const void* args, const ExecContext& ctx) {
  gemm_cpu(*static_cast<const GemmArgs*>(args), true, isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void gemv_cpu_f32(const void* args, const ExecContext& ctx) {
  gemv_cpu(*static_cast<const GemvArgs*>(args), false, isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void gemv_cpu_bf16(const void* args, const ExecContext& ctx) {
  gemv_cpu(*static_cast<const GemvArgs*>(args), true, isa_table<I>(), ctx.pool);
}
ELI_CPU_INSTANTIATE(gemm_cpu_f32)
ELI_CPU_INSTANTIATE(gemm_cpu_bf16)
ELI_CPU_INSTANTIATE(gemv_cpu_f32)
ELI_CPU_INSTANTIATE(gemv_cpu_bf16)

}  // namespace eli
