// kernels/cpu/isa_avx2.cc: the AVX2 + FMA inner loops (compiled with -mavx2 -mfma -mf16c; called
// only when cpu_has_avx2()). Raw pointers only: no STL, no allocation (see cpu_isa.h).
//
// Matmul tiles are dot-product shaped: both x rows and w rows are K-contiguous, so a tile of
// MR x NR outputs keeps MR * NR vector accumulators over k (no packing/transposition needed);
// the K tail (k % 8) is finished in scalar code. 4x3 tiles: 12 accumulators + 3 weight vectors +
// 1 x vector = the 16 ymm registers; 7 loads per 12 FMAs (measured best of 3x4, 4x3, 3x3, 2x4, 2x5).
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <utility>

#include "kernels/cpu/cpu_isa.h"

namespace eli {

namespace {

constexpr int kTileM = 4;
constexpr int kTileN = 3;

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256 load_bf16(const uint16_t* p) {
  __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}
inline __m256 load_w(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load_w(const uint16_t* p) { return load_bf16(p); }
inline float scalar_w(const float* p) { return *p; }
inline float scalar_w(const uint16_t* p) {
  uint32_t u = static_cast<uint32_t>(*p) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

// exp(x) for x in float range; relative error ~1e-7 (Cody-Waite reduction, degree-7 polynomial).
inline __m256 exp256(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

template <int MR, int NR, typename W>
void tile_impl(const float* a, int64_t lda, const W* b, int64_t ldb, int64_t k, float* c,
               int64_t ldc) {
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  const int64_t k8 = k & ~int64_t{7};
  for (int64_t p = 0; p < k8; p += 8) {
    __m256 bv[NR];
    for (int j = 0; j < NR; ++j) bv[j] = load_w(b + j * ldb + p);
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_loadu_ps(a + i * lda + p);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t p = k8; p < k; ++p) s += a[i * lda + p] * scalar_w(b + j * ldb + p);
      c[i * ldc + j] += s;
    }
  }
}

template <typename W>
using TileFn = void (*)(const float*, int64_t, const W*, int64_t, int64_t, float*, int64_t);

// Calls tile_impl<mr, nr> through a table of every (mr, nr) in [1, kTileM] x [1, kTileN].
template <typename W, int... I>
void tile_dispatch_seq(std::integer_sequence<int, I...>, const float* a, int64_t lda, const W* b,
                       int64_t ldb, int64_t k, float* c, int64_t ldc, int mr, int nr) {
  static constexpr TileFn<W> kTable[] = {&tile_impl<I / kTileN + 1, I % kTileN + 1, W>...};
  kTable[(mr - 1) * kTileN + (nr - 1)](a, lda, b, ldb, k, c, ldc);
}

template <typename W>
void tile_dispatch(const float* a, int64_t lda, const W* b, int64_t ldb, int64_t k, float* c,
                   int64_t ldc, int mr, int nr) {
  tile_dispatch_seq<W>(std::make_integer_sequence<int, kTileM * kTileN>{}, a, lda, b, ldb, k, c,
                       ldc, mr, nr);
}

void tile_f32(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t k, float* c,
              int64_t ldc, int mr, int nr) {
  tile_dispatch(a, lda, b, ldb, k, c, ldc, mr, nr);
}
void tile_bf16(const float* a, int64_t lda, const uint16_t* b, int64_t ldb, int64_t k, float* c,
               int64_t ldc, int mr, int nr) {
  tile_dispatch(a, lda, b, ldb, k, c, ldc, mr, nr);
}

void bf16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_bf16(src + i));
  for (; i < n; ++i) dst[i] = scalar_w(src + i);
}

inline float dot(const float* x, const float* y, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

void attention_row(const AttentionArgs& a, const int32_t* blocks, int64_t kv_head, const float* q,
                   float* out, int64_t lo, int64_t hi, float* scratch) {
  const int64_t hd = a.head_dim, bs = a.block_size;
  auto offset = [&](int64_t j) {
    const int64_t slot = static_cast<int64_t>(blocks[j / bs]) * bs + j % bs;
    return (slot * a.n_kv_heads + kv_head) * hd;
  };
  const int64_t n = hi - lo + 1;
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    const float s = dot(q, static_cast<const float*>(a.k_cache) + offset(lo + j), hd) * a.scale;
    scratch[j] = s;
    mx = s > mx ? s : mx;
  }
  __m256 vsum = _mm256_setzero_ps();
  const __m256 vmx = _mm256_set1_ps(mx);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(scratch + j), vmx));
    _mm256_storeu_ps(scratch + j, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float sum = hsum(vsum);
  for (; j < n; ++j) {
    scratch[j] = std::exp(scratch[j] - mx);
    sum += scratch[j];
  }
  for (int64_t d = 0; d < hd; ++d) out[d] = 0.0f;
  for (j = 0; j < n; ++j) {
    const float* v = static_cast<const float*>(a.v_cache) + offset(lo + j);
    const __m256 p = _mm256_set1_ps(scratch[j]);
    int64_t d = 0;
    for (; d + 8 <= hd; d += 8)
      _mm256_storeu_ps(out + d, _mm256_fmadd_ps(p, _mm256_loadu_ps(v + d), _mm256_loadu_ps(out + d)));
    for (; d < hd; ++d) out[d] += scratch[j] * v[d];
  }
  const float inv = 1.0f / sum;
  for (int64_t d = 0; d < hd; ++d) out[d] *= inv;
}

double sum_sq(const float* x, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    s0 = _mm256_fmadd_ps(a, a, s0);
    s1 = _mm256_fmadd_ps(b, b, s1);
  }
  double s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

void scale_mul(float* out, const float* x, const float* w, float offset, float inv_rms, int64_t n) {
  const __m256 vs = _mm256_set1_ps(inv_rms), vo = _mm256_set1_ps(offset);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 wv = _mm256_add_ps(_mm256_loadu_ps(w + i), vo);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), wv));
  }
  for (; i < n; ++i) out[i] = x[i] * inv_rms * (w[i] + offset);
}

void add_inplace(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] += x[i];
}

void swiglu_row(float* out, const float* gate, const float* up, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, e));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void rope_row(float* x, const float* cos, const float* sin, int64_t half) {
  float* x2 = x + half;
  int64_t i = 0;
  for (; i + 8 <= half; i += 8) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x2 + i);
    const __m256 c = _mm256_loadu_ps(cos + i), s = _mm256_loadu_ps(sin + i);
    _mm256_storeu_ps(x + i, _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
    _mm256_storeu_ps(x2 + i, _mm256_fmadd_ps(b, c, _mm256_mul_ps(a, s)));
  }
  for (; i < half; ++i) {
    const float a = x[i], b = x2[i];
    x[i] = a * cos[i] - b * sin[i];
    x2[i] = b * cos[i] + a * sin[i];
  }
}

}  // namespace

const CpuIsa& cpu_isa_avx2() {
  static const CpuIsa kIsa = {"avx2",      tile_f32,  tile_bf16, kTileM,      kTileN,
                              bf16_to_f32, attention_row, sum_sq, scale_mul, add_inplace,
                              swiglu_row,  rope_row,  0,         nullptr,
                              nullptr,     nullptr};
  return kIsa;
}

}  // namespace eli
