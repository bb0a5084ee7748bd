// kernels/cpu/matmul_cpu.cc: the threaded CPU matmul driver, out[M,N] (+)= x[M,K] @ w[N,K]^T + bias.
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
#include <cstdint>
#include <vector>

#include "eli/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "runtime/core/thread_pool.h"

namespace eli {

namespace {

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

}  // namespace

template <CpuIsaKind I>
void matmul_cpu_f32(const void* args, const ExecContext& ctx) {
  matmul_cpu(*static_cast<const MatmulArgs*>(args), false, isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void matmul_cpu_bf16(const void* args, const ExecContext& ctx) {
  matmul_cpu(*static_cast<const MatmulArgs*>(args), true, isa_table<I>(), ctx.pool);
}
ELI_CPU_INSTANTIATE(matmul_cpu_f32)
ELI_CPU_INSTANTIATE(matmul_cpu_bf16)

}  // namespace eli
