// kernels/cpu/isa_avx512.cc: the AVX-512 (F/BW/VL/DQ) inner loops (compiled with -mavx512f
// -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c; called only when cpu_has_avx512()). Raw pointers
// only: no STL, no allocation (see cpu_isa.h). No AMX / AVX512-FP16 / AVX512-BF16 instructions.
//
// - Decode / small-M tiles: dot-product shaped like the AVX2 ones (x rows and w rows both
//   K-contiguous), 4x4 zmm accumulators; the K tail uses masked (zero-filling) loads, so no scalar
//   loop. These are bandwidth bound: bf16 rows are widened by zero-extend + shift.
// - Prefill: a packed GEMM. Weight panels of kPanelN = 48 rows x kc are transposed to K-major
//   (bf16 widened on the way), then an 8 x 48 register tile (24 zmm accumulators) is computed by
//   outer products: per k, 3 panel loads + 8 broadcasts of x feed 24 FMAs, no horizontal sums.
// - Elementwise loops and the small-op helpers are the AVX2 ones (an AVX-512 CPU has AVX2).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include "kernels/cpu/cpu_isa.h"

// GCC 12 reports false "may be used uninitialized" inside its own AVX-512 intrinsic headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace eli {

namespace {

constexpr int kTileM = 4;
constexpr int kTileN = 4;
constexpr int kPanelN = 48;  // 3 zmm
constexpr int kGemmMr = 8;

inline __mmask16 tail_mask(int64_t n) {  // lanes [0, n) for n in [0, 16]
  return static_cast<__mmask16>(n >= 16 ? 0xffff : ((1u << n) - 1u));
}

inline __m512 widen_bf16(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline __m512 load_w(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load_w(const uint16_t* p) {
  return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 load_w_masked(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load_w_masked(const uint16_t* p, __mmask16 m) {
  return widen_bf16(_mm256_maskz_loadu_epi16(m, p));
}

// ---- small-M dot-product tiles ---------------------------------------------------------------

template <int MR, int NR, typename W>
void tile_impl(const float* a, int64_t lda, const W* b, int64_t ldb, int64_t k, float* c,
               int64_t ldc) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t k16 = k & ~int64_t{15};
  // Prefetch the next tile's weight rows (in the GEMV regime they follow these rows): measured
  // +25% streaming bandwidth over the hardware prefetcher alone. Prefetches never fault.
  // The rows 8 tiles ahead go to L2 first (+5-10% more).
  const W* next = b + NR * ldb;
  const W* far = b + 8 * NR * ldb;
  for (int64_t p = 0; p < k16; p += 16) {
    __m512 bv[NR];
    for (int j = 0; j < NR; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(next + j * ldb + p), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(far + j * ldb + p), _MM_HINT_T1);
      bv[j] = load_w(b + j * ldb + p);
    }
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_loadu_ps(a + i * lda + p);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  if (k16 < k) {
    const __mmask16 m = tail_mask(k - k16);
    __m512 bv[NR];
    for (int j = 0; j < NR; ++j) bv[j] = load_w_masked(b + j * ldb + k16, m);
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_maskz_loadu_ps(m, a + i * lda + k16);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) c[i * ldc + j] += _mm512_reduce_add_ps(acc[i][j]);
}

template <typename W>
using TileFn = void (*)(const float*, int64_t, const W*, int64_t, int64_t, float*, int64_t);

template <typename W, int... I>
void tile_dispatch_seq(std::integer_sequence<int, I...>, const float* a, int64_t lda, const W* b,
                       int64_t ldb, int64_t k, float* c, int64_t ldc, int mr, int nr) {
  static constexpr TileFn<W> kTable[] = {&tile_impl<I / kTileN + 1, I % kTileN + 1, W>...};
  kTable[(mr - 1) * kTileN + (nr - 1)](a, lda, b, ldb, k, c, ldc);
}

void tile_f32(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t k, float* c,
              int64_t ldc, int mr, int nr) {
  tile_dispatch_seq<float>(std::make_integer_sequence<int, kTileM * kTileN>{}, a, lda, b, ldb, k, c,
                           ldc, mr, nr);
}
void tile_bf16(const float* a, int64_t lda, const uint16_t* b, int64_t ldb, int64_t k, float* c,
               int64_t ldc, int mr, int nr) {
  tile_dispatch_seq<uint16_t>(std::make_integer_sequence<int, kTileM * kTileN>{}, a, lda, b, ldb, k,
                              c, ldc, mr, nr);
}

void bf16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load_w(src + i));
  if (i < n) _mm512_mask_storeu_ps(dst + i, tail_mask(n - i), load_w_masked(src + i, tail_mask(n - i)));
}

// ---- packed GEMM ----------------------------------------------------------------------------

// In-register transpose of 16 rows of 16 floats: r[i] lane j -> r[j] lane i.
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // Per 128-bit lane L, u[c + 4g] holds rows 4g..4g+3 of column 4L + c.
  for (int g = 0; g < 4; ++g) {
    const __m512d t0 = _mm512_castps_pd(t[4 * g]), t1 = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d t2 = _mm512_castps_pd(t[4 * g + 2]), t3 = _mm512_castps_pd(t[4 * g + 3]);
    u[0 + 4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
    u[1 + 4 * g] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
    u[2 + 4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
    u[3 + 4 * g] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
  }
  // 4x4 transpose of 128-bit lanes for each c.
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = u[c], v1 = u[c + 4], v2 = u[c + 8], v3 = u[c + 12];
    const __m512 a0 = _mm512_shuffle_f32x4(v0, v1, _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 a1 = _mm512_shuffle_f32x4(v0, v1, _MM_SHUFFLE(3, 2, 3, 2));
    const __m512 a2 = _mm512_shuffle_f32x4(v2, v3, _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 a3 = _mm512_shuffle_f32x4(v2, v3, _MM_SHUFFLE(3, 2, 3, 2));
    r[c] = _mm512_shuffle_f32x4(a0, a2, _MM_SHUFFLE(2, 0, 2, 0));
    r[c + 4] = _mm512_shuffle_f32x4(a0, a2, _MM_SHUFFLE(3, 1, 3, 1));
    r[c + 8] = _mm512_shuffle_f32x4(a1, a3, _MM_SHUFFLE(2, 0, 2, 0));
    r[c + 12] = _mm512_shuffle_f32x4(a1, a3, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

// panel (kc, kPanelN) <- w rows [0, nr) x [0, kc), transposed; rows >= nr are zero.
template <typename W>
void pack_panel(const W* w, int64_t ldw, int nr, int64_t kc, float* panel) {
  for (int j0 = 0; j0 < kPanelN; j0 += 16) {
    for (int64_t p0 = 0; p0 < kc; p0 += 16) {
      const int64_t kn = kc - p0 < 16 ? kc - p0 : 16;
      const __mmask16 km = tail_mask(kn);
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        const int j = j0 + i;
        r[i] = j < nr ? (kn == 16 ? load_w(w + j * ldw + p0) : load_w_masked(w + j * ldw + p0, km))
                      : _mm512_setzero_ps();
      }
      transpose16(r);
      for (int64_t p = 0; p < kn; ++p) _mm512_storeu_ps(panel + (p0 + p) * kPanelN + j0, r[p]);
    }
  }
}

void pack_panel_f32(const float* w, int64_t ldw, int nr, int64_t kc, float* panel) {
  pack_panel(w, ldw, nr, kc, panel);
}
void pack_panel_bf16(const uint16_t* w, int64_t ldw, int nr, int64_t kc, float* panel) {
  pack_panel(w, ldw, nr, kc, panel);
}

// Walks the cache lines of a PrefetchRows region, a few at a time.
struct PrefetchCursor {
  const char* base = nullptr;
  int64_t stride = 0, lines_per_row = 1, rows = 0;
  int64_t row = 0, line = 0;
  bool done() const { return row >= rows; }
  void step() {
    _mm_prefetch(base + row * stride + line * 64, _MM_HINT_T1);
    if (++line == lines_per_row) {
      line = 0;
      ++row;
    }
  }
};

// c[i, 0..48) += a[i, 0..kc) @ panel for i < MR (store masks sm drop columns >= nr); also issues
// up to pf_budget prefetches from pf, evenly spread over the k loop.
template <int MR>
void gemm_micro(const float* a, int64_t lda, const float* panel, int64_t kc, float* c, int64_t ldc,
                const __mmask16 (&sm)[3], PrefetchCursor& pf, int64_t pf_budget) {
  __m512 acc[MR][3];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < 3; ++j) acc[i][j] = _mm512_setzero_ps();
  const float* ar[MR];
  for (int i = 0; i < MR; ++i) ar[i] = a + i * lda;
  // One prefetch every pf_every iterations, pf_budget in all, so they never queue up.
  const int64_t pf_every = pf_budget > 0 ? std::max<int64_t>(1, kc / pf_budget) : kc + 1;
  int64_t pf_left = pf_budget, pf_count = 0;
  for (int64_t p = 0; p < kc; ++p) {
    if (--pf_count <= 0 && pf_left > 0 && !pf.done()) {
      pf.step();
      --pf_left;
      pf_count = pf_every;
    }
    const float* bp = panel + p * kPanelN;
    const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16), b2 = _mm512_loadu_ps(bp + 32);
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(ar[i][p]);
      acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
      acc[i][2] = _mm512_fmadd_ps(av, b2, acc[i][2]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    for (int j = 0; j < 3; ++j) {
      if (sm[j] == 0) continue;
      const __m512 old = _mm512_maskz_loadu_ps(sm[j], ci + 16 * j);
      _mm512_mask_storeu_ps(ci + 16 * j, sm[j], _mm512_add_ps(old, acc[i][j]));
    }
  }
}

template <int... I>
void gemm_micro_tail(std::integer_sequence<int, I...>, int mr, const float* a, int64_t lda,
                     const float* panel, int64_t kc, float* c, int64_t ldc, const __mmask16 (&sm)[3],
                     PrefetchCursor& pf, int64_t pf_budget) {
  using Fn = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t, const __mmask16(&)[3],
                      PrefetchCursor&, int64_t);
  static constexpr Fn kTable[] = {&gemm_micro<I + 1>...};
  kTable[mr - 1](a, lda, panel, kc, c, ldc, sm, pf, pf_budget);
}

void gemm_panel(const float* a, int64_t lda, int64_t m, const float* panel, int64_t kc, float* c,
                int64_t ldc, int nr, const PrefetchRows& pf) {
  const __mmask16 sm[3] = {tail_mask(nr), tail_mask(nr > 16 ? nr - 16 : 0), tail_mask(nr > 32 ? nr - 32 : 0)};
  // The next panel's source is prefetched (to L2) a line at a time from inside the micro-kernel,
  // spread over all its calls, so its memory latency hides behind this panel's FMAs.
  PrefetchCursor cur;
  if (pf.base != nullptr) {
    cur.base = static_cast<const char*>(pf.base);
    cur.stride = pf.stride_bytes;
    cur.lines_per_row = std::max<int64_t>(1, (pf.row_bytes + 63) / 64);
    cur.rows = pf.rows;
  }
  const int64_t calls = (m + kGemmMr - 1) / kGemmMr;
  const int64_t budget = (cur.rows * cur.lines_per_row + calls - 1) / calls;
  int64_t i = 0;
  for (; i + kGemmMr <= m; i += kGemmMr)
    gemm_micro<kGemmMr>(a + i * lda, lda, panel, kc, c + i * ldc, ldc, sm, cur, budget);
  if (i < m) {
    gemm_micro_tail(std::make_integer_sequence<int, kGemmMr - 1>{}, static_cast<int>(m - i), a + i * lda,
                    lda, panel, kc, c + i * ldc, ldc, sm, cur, budget);
  }
}

// ---- attention ------------------------------------------------------------------------------

// exp(x) for x in float range; relative error ~1e-7 (Cody-Waite reduction, degree-7 polynomial).
inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

inline float dot(const float* x, const float* y, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

// Calls fn(j, row) for kv positions j in [lo, hi] of one kv head, walking the block table a block
// at a time (no division per position); row points at the (hd) k or v vector of position j.
template <typename Fn>
inline void for_each_kv(const AttentionArgs& a, const int32_t* blocks, int64_t kv_head, const float* cache,
                        int64_t lo, int64_t hi, Fn fn) {
  const int64_t bs = a.block_size, hd = a.head_dim, pos_stride = a.n_kv_heads * hd;
  for (int64_t j = lo; j <= hi;) {
    const int64_t off = j % bs;
    const int64_t cnt = std::min(bs - off, hi - j + 1);
    const float* row = cache + ((static_cast<int64_t>(blocks[j / bs]) * bs + off) * a.n_kv_heads + kv_head) * hd;
    for (int64_t c = 0; c < cnt; ++c) fn(j + c, row + c * pos_stride);
    j += cnt;
  }
}

void attention_row(const AttentionArgs& a, const int32_t* blocks, int64_t kv_head, const float* q,
                   float* out, int64_t lo, int64_t hi, float* scratch) {
  const int64_t hd = a.head_dim;
  const int64_t n = hi - lo + 1;
  const bool in_regs = hd <= 128;  // q and the output row stay in registers
  const int nv = static_cast<int>((hd + 15) / 16);
  __m512 qv[8];
  if (in_regs)
    for (int v = 0; v < nv; ++v) qv[v] = _mm512_maskz_loadu_ps(tail_mask(hd - 16 * v), q + 16 * v);
  float mx = -INFINITY;
  for_each_kv(a, blocks, kv_head, static_cast<const float*>(a.k_cache), lo, hi, [&](int64_t j, const float* kr) {
    float s;
    if (in_regs) {
      __m512 acc = _mm512_mul_ps(qv[0], _mm512_maskz_loadu_ps(tail_mask(hd), kr));
      for (int v = 1; v < nv; ++v)
        acc = _mm512_fmadd_ps(qv[v], _mm512_maskz_loadu_ps(tail_mask(hd - 16 * v), kr + 16 * v), acc);
      s = _mm512_reduce_add_ps(acc) * a.scale;
    } else {
      s = dot(q, kr, hd) * a.scale;
    }
    scratch[j - lo] = s;
    mx = s > mx ? s : mx;
  });
  __m512 vsum = _mm512_setzero_ps();
  const __m512 vmx = _mm512_set1_ps(mx);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, scratch + j), vmx));
    _mm512_mask_storeu_ps(scratch + j, m, e);
    vsum = _mm512_add_ps(vsum, _mm512_maskz_mov_ps(m, e));
  }
  const float inv = 1.0f / _mm512_reduce_add_ps(vsum);
  if (in_regs) {
    __m512 acc[8];
    for (int v = 0; v < 8; ++v) acc[v] = _mm512_setzero_ps();
    for_each_kv(a, blocks, kv_head, static_cast<const float*>(a.v_cache), lo, hi, [&](int64_t j, const float* vr) {
      const __m512 p = _mm512_set1_ps(scratch[j - lo]);
      for (int v = 0; v < nv; ++v)
        acc[v] = _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(tail_mask(hd - 16 * v), vr + 16 * v), acc[v]);
    });
    const __m512 vinv = _mm512_set1_ps(inv);
    for (int v = 0; v < nv; ++v)
      _mm512_mask_storeu_ps(out + 16 * v, tail_mask(hd - 16 * v), _mm512_mul_ps(acc[v], vinv));
    return;
  }
  for (int64_t d = 0; d < hd; ++d) out[d] = 0.0f;
  for_each_kv(a, blocks, kv_head, static_cast<const float*>(a.v_cache), lo, hi, [&](int64_t j, const float* vr) {
    const __m512 p = _mm512_set1_ps(scratch[j - lo]);
    for (int64_t d = 0; d < hd; d += 16) {
      const __mmask16 m = tail_mask(hd - d);
      _mm512_mask_storeu_ps(out + d, m, _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(m, vr + d),
                                                         _mm512_maskz_loadu_ps(m, out + d)));
    }
  });
  for (int64_t d = 0; d < hd; ++d) out[d] *= inv;
}

CpuIsa make_isa() {
  CpuIsa isa = cpu_isa_avx2();  // elementwise loops
  isa.name = "avx512";
  isa.tile_f32 = tile_f32;
  isa.tile_bf16 = tile_bf16;
  isa.tile_m = kTileM;
  isa.tile_n = kTileN;
  isa.bf16_to_f32 = bf16_to_f32;
  isa.attention_row = attention_row;
  isa.panel_n = kPanelN;
  isa.pack_panel_f32 = pack_panel_f32;
  isa.pack_panel_bf16 = pack_panel_bf16;
  isa.gemm_panel = gemm_panel;
  return isa;
}

}  // namespace

const CpuIsa& cpu_isa_avx512() {
  static const CpuIsa kIsa = make_isa();
  return kIsa;
}

}  // namespace eli
