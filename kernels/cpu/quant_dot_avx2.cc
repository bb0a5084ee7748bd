// kernels/cpu/quant_dot_avx2.cc: AVX2 dot products of the GGUF block types with 8-bit quantized
// activations (built with -mavx2 -mfma -mf16c; called only where the CPU has them).
//
// Building blocks: 32 weight quants are brought into one register as bytes in element order
// (nibbles: low nibbles are elements 0..15, high nibbles 16..31), then
//   unsigned quants (Q4_0, Q4_1, Q5_0, Q5_1 as q + 8 / q + 16 / q, K types): maddubs(q_u8, x_s8)
//     -> 16 pair sums (int16, no overflow: |q| <= 63, |x| <= 127), madd with ones or the
//     sub-block scales -> 8 int32 lanes;
//   signed quants (Q8_0, IQ4): maddubs(|q|, sign(x, q)) (|x| <= 127, so sign() never overflows),
//     then madd.
// Offsets (Q4_0's -8 d, Q5_0's -16 d, the Q4_1 / Q5_1 min, Q6_K's -32, Q3_K's -4, K mins) are
// taken out with the activation block sums (s or bsums). Integer sums are exact; one float
// multiply-add per block (the 32-element types: per block and pair, after the exact block dot is
// reduced to one lane; quant_gemm.h has the canonical arithmetic they share with the GEMM).
//
// Register tiles: every weight row type used by the default model's Q4_K_M / Q8_0 files (Q4_0,
// Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q4_K, Q6_K) has one template computing RW weight rows x RX
// activation rows; the one-row dot, the rows form (32-element types: 8 x 1), the 1 x 4 and
// (32-element types) the 2 x 4 forms are instances of it, so each gives the same bits per
// (weight row, activation row) pair (quant_dot.h).
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/cpu/quant_avx2_blocks.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/ref/dequant_ref.h"

namespace eli {
namespace {

using namespace quant_avx2;  // NOLINT: the shared building blocks

// Decode (one activation row) streams the weights from memory once: a software prefetch this far
// ahead of the block being read (the rows of a matrix are contiguous; a prefetch past its end is
// harmless) measured 5-25% faster GEMVs over matrices larger than the caches on the 2-core EPYC.
constexpr int kPrefetchBytes = 4096;
inline void prefetch_ahead(const uint8_t* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBytes), _MM_HINT_T0);
}

// ---- 32-element types: one tile template for every row count ------------------------------

// Lane p of a pair vector (p = i * RX + j < RW * RX, 0 beyond): the weight row's value a[i] or the
// activation row's value a[j].
template <int RW, int RX>
inline float lane_w(const float* a, int p) {
  return p < RW * RX ? a[p / RX] : 0.0f;
}
template <int RW, int RX>
inline float lane_x(const float* a, int p) {
  return p < RW * RX ? a[p % RX] : 0.0f;
}
template <int RW, int RX>
inline __m256 lanes_w(const float* a) {
  return _mm256_setr_ps(lane_w<RW, RX>(a, 0), lane_w<RW, RX>(a, 1), lane_w<RW, RX>(a, 2), lane_w<RW, RX>(a, 3),
                        lane_w<RW, RX>(a, 4), lane_w<RW, RX>(a, 5), lane_w<RW, RX>(a, 6), lane_w<RW, RX>(a, 7));
}
template <int RW, int RX>
inline __m256 lanes_x(const float* a) {
  return _mm256_setr_ps(lane_x<RW, RX>(a, 0), lane_x<RW, RX>(a, 1), lane_x<RW, RX>(a, 2), lane_x<RW, RX>(a, 3),
                        lane_x<RW, RX>(a, 4), lane_x<RW, RX>(a, 5), lane_x<RW, RX>(a, 6), lane_x<RW, RX>(a, 7));
}

// out[i * RX + j] = sum_j w_i . x_j for RW weight rows (w + i * w_stride) and RX activation rows,
// RW * RX <= 8 pairs, one pair per lane. Per pair the canonical arithmetic of the 32-element types
// (quant_gemm.h, the same in every tile shape and in the grouped GEMM): per block the exact
// integer dot (maddubs + madd into 8 int32 lanes, then reduce8_epi32), then
// acc = fma(d_w * d_x, float(dot), acc) and offs = fma(o, s, offs), out = acc + offs * c. So every
// tile shape gives the one-row dot product's bits (decode, chunked and whole prefill agree).
template <int RW, int RX, int kBytes, bool kSigned, Off kOff, typename Decode>
inline void tile32(int64_t k, const uint8_t* w, int64_t w_stride, const BlockQ8x32* const* xb, float* out,
                   Decode decode) {
  static_assert(RW * RX <= 8, "one pair per lane of one register");
  __m256 acc = _mm256_setzero_ps(), offs = _mm256_setzero_ps();
  const int64_t nb = k / 32;
  // Decode (RX == 1) streams the weights: one row alone prefetches ahead of itself; eight rows
  // (a rows panel, contiguous when w_stride is the row size) prefetch the next panel's bytes,
  // spread evenly over this panel's blocks.
  const int64_t span = RW * w_stride, per_block = RW > 1 ? (span + nb - 1) / nb : 0;
  for (int64_t b = 0; b < nb; ++b) {
    if (RX == 1 && RW > 1) {
      for (int64_t o = b * per_block; o < (b + 1) * per_block; o += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(w + span + o), _MM_HINT_T0);
      }
    }
    __m256i v[8];
    float dw[RW], ow[RW], dx[RX], xs[RX];
    for (int j = 0; j < RX; ++j) {
      dx[j] = xb[j][b].d;
      xs[j] = xb[j][b].s;
    }
    for (int i = 0; i < RW; ++i) {
      const uint8_t* wb = w + i * w_stride + b * kBytes;
      if (RX == 1 && RW == 1) prefetch_ahead(wb);
      const __m256i q = decode(wb);
      const __m256i qa = kSigned ? _mm256_sign_epi8(q, q) : q;
      dw[i] = h2f(wb);
      // The constant offsets -8 d / -16 d: d here, the power of two applied once at the end.
      ow[i] = kOff == Off::kStored ? h2f(wb + 2) : dw[i];
      for (int j = 0; j < RX; ++j) {
        const __m256i x = load256(xb[j][b].qs);
        v[i * RX + j] = _mm256_madd_epi16(_mm256_maddubs_epi16(qa, kSigned ? _mm256_sign_epi8(x, q) : x), ones16());
      }
    }
    for (int p = RW * RX; p < 8; ++p) v[p] = _mm256_setzero_si256();
    const __m256 f = _mm256_cvtepi32_ps(reduce8_epi32(v));
    acc = _mm256_fmadd_ps(_mm256_mul_ps(lanes_w<RW, RX>(dw), lanes_x<RW, RX>(dx)), f, acc);
    if (kOff != Off::kNone) offs = _mm256_fmadd_ps(lanes_w<RW, RX>(ow), lanes_x<RW, RX>(xs), offs);
  }
  alignas(32) float o[8];
  // c is 1, -8 or -16: the product is exact (no rounding to fuse).
  _mm256_store_ps(o, kOff != Off::kNone ? _mm256_add_ps(acc, _mm256_mul_ps(offs, _mm256_set1_ps(off_scale(kOff)))) : acc);
  for (int p = 0; p < RW * RX; ++p) out[p] = o[p];
}

// A 32-element block type: its tile at every shape the matmul uses.
template <int kBytes, bool kSigned, Off kOff, typename Decode>
struct Type32 {
  static float dot(int64_t k, const void* w, const void* xq) {
    const BlockQ8x32* xb[1] = {static_cast<const BlockQ8x32*>(xq)};
    float out;
    tile32<1, 1, kBytes, kSigned, kOff>(k, static_cast<const uint8_t*>(w), 0, xb, &out, Decode());
    return out;
  }
  // Decode: eight weight rows per tile (one pair per lane), the last rows one at a time.
  static void rows(int64_t k, const void* w, int64_t w_stride, int64_t n, const void* xq, float* out) {
    const BlockQ8x32* xb[1] = {static_cast<const BlockQ8x32*>(xq)};
    const auto* wp = static_cast<const uint8_t*>(w);
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) tile32<8, 1, kBytes, kSigned, kOff>(k, wp + c * w_stride, w_stride, xb, out + c, Decode());
    for (; c < n; ++c) tile32<1, 1, kBytes, kSigned, kOff>(k, wp + c * w_stride, 0, xb, out + c, Decode());
  }
  static void dot4(int64_t k, const void* w, const void* const* xq, float* out) {
    const BlockQ8x32* xb[4];
    for (int j = 0; j < 4; ++j) xb[j] = static_cast<const BlockQ8x32*>(xq[j]);
    tile32<1, 4, kBytes, kSigned, kOff>(k, static_cast<const uint8_t*>(w), 0, xb, out, Decode());
  }
  static void dot2x4(int64_t k, const void* w, int64_t w_stride, const void* const* xq, float* out) {
    const BlockQ8x32* xb[4];
    for (int j = 0; j < 4; ++j) xb[j] = static_cast<const BlockQ8x32*>(xq[j]);
    tile32<2, 4, kBytes, kSigned, kOff>(k, static_cast<const uint8_t*>(w), w_stride, xb, out, Decode());
  }
};

using Q4_0 = Type32<18, false, Off::kMinus8, DecodeQ4_0>;
using Q4_1 = Type32<20, false, Off::kStored, DecodeQ4_1>;
using Q5_0 = Type32<22, false, Off::kMinus16, DecodeQ5_0>;
using Q5_1 = Type32<24, false, Off::kStored, DecodeQ5_1>;
using Q8_0 = Type32<34, true, Off::kNone, DecodeQ8_0>;
using Iq4Nl = Type32<18, true, Off::kNone, DecodeIq4Nl>;

// ---- K types (256-element super-blocks, Q8xK activations) -----------------------------------

float dot_q2_k(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.0f;
  for (int64_t b = 0; b < k / 256; ++b, wb += 84) {
    const uint8_t* sc = wb;
    __m256i isum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i v = load256(wb + 16 + 32 * h);
      for (int s = 0; s < 4; ++s) {
        const int g = 8 * h + 2 * s;
        const __m256i p = _mm256_maddubs_epi16(shr_mask(v, 2 * s, 3), load256(xb[b].qs + 128 * h + 32 * s));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair(sc[g] & 0x0f, sc[g + 1] & 0x0f)));
      }
    }
    int msum = 0;
    for (int g = 0; g < 16; ++g) msum += (sc[g] >> 4) * xb[b].bsums[g];
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(wb + 80) * xb[b].d), _mm256_cvtepi32_ps(isum), acc);
    mins += h2f(wb + 82) * xb[b].d * static_cast<float>(msum);
  }
  return hsum(acc) - mins;
}

float dot_q3_k(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / 256; ++b, wb += 110) {
    int sc[16];
    int bias = 0;
    for (int g = 0; g < 16; ++g) {
      sc[g] = quant::q3_k_scale(wb + 96, g);
      bias += sc[g] * xb[b].bsums[g];
    }
    const __m256i hm = load256(wb);
    __m256i isum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i v = load256(wb + 32 + 32 * h);
      for (int s = 0; s < 4; ++s) {
        const int g = 8 * h + 2 * s;
        // Unsigned 3-bit quant: low 2 bits | hmask bit << 2; the stored value is this minus 4.
        const __m256i qu = _mm256_or_si256(shr_mask(v, 2 * s, 3), _mm256_slli_epi16(shr_mask(hm, 4 * h + s, 1), 2));
        const __m256i p = _mm256_maddubs_epi16(qu, load256(xb[b].qs + 128 * h + 32 * s));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair(sc[g], sc[g + 1])));
      }
    }
    const float dd = h2f(wb + 108) * xb[b].d;
    acc = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(isum), acc);
    acc = _mm256_sub_ps(acc, _mm256_setr_ps(dd * static_cast<float>(4 * bias), 0, 0, 0, 0, 0, 0, 0));
  }
  return hsum(acc);
}

template <int kBits>
float dot_q45_k(int64_t k, const void* w, const void* xq) {
  constexpr int kBytes = kBits == 4 ? 144 : 176;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.0f;
  for (int64_t b = 0; b < k / 256; ++b, wb += kBytes) {
    int sc[8], mn[8];
    int msum = 0;
    for (int s = 0; s < 8; ++s) {
      quant::k_scale_min(wb + 4, s, &sc[s], &mn[s]);
      msum += mn[s] * (xb[b].bsums[2 * s] + xb[b].bsums[2 * s + 1]);
    }
    const uint8_t* qs = wb + (kBits == 4 ? 16 : 48);
    const __m256i qh = kBits == 5 ? load256(wb + 16) : _mm256_setzero_si256();
    __m256i isum = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i v = load256(qs + 32 * c);
      __m256i lo = _mm256_and_si256(v, low4());
      __m256i hi = shr_mask(v, 4, 0x0f);
      if (kBits == 5) {
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(shr_mask(qh, 2 * c, 1), 4));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(shr_mask(qh, 2 * c + 1, 1), 4));
      }
      const __m256i plo = _mm256_maddubs_epi16(lo, load256(xb[b].qs + 64 * c));
      const __m256i phi = _mm256_maddubs_epi16(hi, load256(xb[b].qs + 64 * c + 32));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(plo, _mm256_set1_epi16(static_cast<short>(sc[2 * c]))));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(phi, _mm256_set1_epi16(static_cast<short>(sc[2 * c + 1]))));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(wb) * xb[b].d), _mm256_cvtepi32_ps(isum), acc);
    mins += h2f(wb + 2) * xb[b].d * static_cast<float>(msum);
  }
  return hsum(acc) - mins;
}

float dot_iq4_xs(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < k / 256; ++b, wb += 136) {
    __m256i isum = _mm256_setzero_si256();
    for (int s = 0; s < 8; ++s) {
      const __m256i q = iq4_lookup(wb + 8 + 16 * s);
      const __m256i x = load256(xb[b].qs + 32 * s);
      const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
      isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, _mm256_set1_epi16(static_cast<short>(quant::iq4_xs_scale(wb, s)))));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(wb) * xb[b].d), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
}

// ---- K-type tiles (Q4_K, Q6_K): one template for the one-row and 1 x 4 forms -----------------

// K-type tiles: RW weight rows (w + i * w_stride) x RX activation rows, out[i * RX + j]. The
// integer sums per super-block are exact whatever their order, and the float operations per (i, j)
// pair are the same for every tile shape (explicit fused multiply-adds, nothing left to the
// compiler's contraction), so each shape gives the one-row dot product's bits.
template <int RW, int RX>
inline void tile_q4k(int64_t k, const uint8_t* w, int64_t w_stride, const BlockQ8xK* const* xb, float* out) {
  __m256 acc[RW][RX];
  float mins[RW][RX];
  for (int i = 0; i < RW; ++i) {
    for (int j = 0; j < RX; ++j) {
      acc[i][j] = _mm256_setzero_ps();
      mins[i][j] = 0.0f;
    }
  }
  for (int64_t b = 0; b < k / 256; ++b) {
    const uint8_t* wb[RW];
    int16_t sc[RW][8];  // Q4_K's 6-bit sub-block scales, decoded once per super-block and row
    int mn[RW][8];
    if (RX == 1) {
      for (int o = 0; o < 144; o += 64) prefetch_ahead(w + b * 144 + o);
    }
    for (int i = 0; i < RW; ++i) {
      wb[i] = w + i * w_stride + b * 144;
      for (int s = 0; s < 8; ++s) {
        int scale;
        quant::k_scale_min(wb[i] + 4, s, &scale, &mn[i][s]);
        sc[i][s] = static_cast<int16_t>(scale);
      }
    }
    __m256i isum[RW][RX];
    for (int i = 0; i < RW; ++i) {
      for (int j = 0; j < RX; ++j) isum[i][j] = _mm256_setzero_si256();
    }
    for (int c = 0; c < 4; ++c) {
      __m256i lo[RW], hi[RW], slo[RW], shi[RW];
      for (int i = 0; i < RW; ++i) {
        const __m256i v = load256(wb[i] + 16 + 32 * c);
        lo[i] = _mm256_and_si256(v, low4());
        hi[i] = shr_mask(v, 4, 0x0f);
        slo[i] = _mm256_set1_epi16(sc[i][2 * c]);
        shi[i] = _mm256_set1_epi16(sc[i][2 * c + 1]);
      }
      for (int j = 0; j < RX; ++j) {
        const __m256i xlo = load256(xb[j][b].qs + 64 * c), xhi = load256(xb[j][b].qs + 64 * c + 32);
        for (int i = 0; i < RW; ++i) {
          const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo[i], xlo), slo[i]);
          const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi[i], xhi), shi[i]);
          isum[i][j] = _mm256_add_epi32(isum[i][j], _mm256_add_epi32(plo, phi));
        }
      }
    }
    for (int i = 0; i < RW; ++i) {
      const float d = h2f(wb[i]), dmin = h2f(wb[i] + 2);
      for (int j = 0; j < RX; ++j) {
        int msum = 0;
        for (int s = 0; s < 8; ++s) msum += mn[i][s] * (xb[j][b].bsums[2 * s] + xb[j][b].bsums[2 * s + 1]);
        const float xd = xb[j][b].d;
        acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(d * xd), _mm256_cvtepi32_ps(isum[i][j]), acc[i][j]);
        mins[i][j] = std::fma(dmin * xd, static_cast<float>(msum), mins[i][j]);
      }
    }
  }
  for (int i = 0; i < RW; ++i) {
    for (int j = 0; j < RX; ++j) out[i * RX + j] = hsum(acc[i][j]) - mins[i][j];
  }
}

// Q6_K: 6-bit quants q (stored + 32) with 16 signed 8-bit scales; the -32 comes out with the
// activation block sums.
template <int RW, int RX>
inline void tile_q6k(int64_t k, const uint8_t* w, int64_t w_stride, const BlockQ8xK* const* xb, float* out) {
  __m256 acc[RW][RX];
  float offs[RW][RX];
  for (int i = 0; i < RW; ++i) {
    for (int j = 0; j < RX; ++j) {
      acc[i][j] = _mm256_setzero_ps();
      offs[i][j] = 0.0f;
    }
  }
  for (int64_t b = 0; b < k / 256; ++b) {
    const uint8_t* wb[RW];
    if (RX == 1) {
      for (int o = 0; o < 210; o += 64) prefetch_ahead(w + b * 210 + o);
    }
    for (int i = 0; i < RW; ++i) wb[i] = w + i * w_stride + b * 210;
    __m256i isum[RW][RX];
    for (int i = 0; i < RW; ++i) {
      for (int j = 0; j < RX; ++j) isum[i][j] = _mm256_setzero_si256();
    }
    for (int h = 0; h < 2; ++h) {
      // Elements 128 h + 32 g ..: low 4 bits from ql (bytes 64 h + 32 (g % 2), nibble g / 2),
      // high 2 bits from qh (bytes 128 + 32 h, bits 2 g).
      __m256i q[RW][4];
      for (int i = 0; i < RW; ++i) {
        const __m256i ql0 = load256(wb[i] + 64 * h), ql1 = load256(wb[i] + 64 * h + 32);
        const __m256i qh = load256(wb[i] + 128 + 32 * h);
        q[i][0] = _mm256_or_si256(_mm256_and_si256(ql0, low4()), _mm256_slli_epi16(shr_mask(qh, 0, 3), 4));
        q[i][1] = _mm256_or_si256(_mm256_and_si256(ql1, low4()), _mm256_slli_epi16(shr_mask(qh, 2, 3), 4));
        q[i][2] = _mm256_or_si256(shr_mask(ql0, 4, 0x0f), _mm256_slli_epi16(shr_mask(qh, 4, 3), 4));
        q[i][3] = _mm256_or_si256(shr_mask(ql1, 4, 0x0f), _mm256_slli_epi16(shr_mask(qh, 6, 3), 4));
      }
      for (int g = 0; g < 4; ++g) {
        __m256i scale[RW];
        for (int i = 0; i < RW; ++i) {
          const auto* sc = reinterpret_cast<const int8_t*>(wb[i] + 192);
          scale[i] = scale_pair(sc[8 * h + 2 * g], sc[8 * h + 2 * g + 1]);
        }
        for (int j = 0; j < RX; ++j) {
          const __m256i x = load256(xb[j][b].qs + 128 * h + 32 * g);
          for (int i = 0; i < RW; ++i) {
            isum[i][j] = _mm256_add_epi32(isum[i][j], _mm256_madd_epi16(_mm256_maddubs_epi16(q[i][g], x), scale[i]));
          }
        }
      }
    }
    for (int i = 0; i < RW; ++i) {
      const auto* sc = reinterpret_cast<const int8_t*>(wb[i] + 192);
      const float dw = h2f(wb[i] + 208);
      for (int j = 0; j < RX; ++j) {
        int bias = 0;
        for (int g = 0; g < 16; ++g) bias += sc[g] * xb[j][b].bsums[g];
        const float dd = dw * xb[j][b].d;
        acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(isum[i][j]), acc[i][j]);
        offs[i][j] = std::fma(dd, static_cast<float>(32 * bias), offs[i][j]);
      }
    }
  }
  for (int i = 0; i < RW; ++i) {
    for (int j = 0; j < RX; ++j) out[i * RX + j] = hsum(acc[i][j]) - offs[i][j];
  }
}

// The one-row and four-row forms of a K-type tile.
template <void (*Tile1)(int64_t, const uint8_t*, int64_t, const BlockQ8xK* const*, float*),
          void (*Tile4)(int64_t, const uint8_t*, int64_t, const BlockQ8xK* const*, float*)>
struct TypeK {
  static float dot(int64_t k, const void* w, const void* xq) {
    const BlockQ8xK* xb[1] = {static_cast<const BlockQ8xK*>(xq)};
    float out;
    Tile1(k, static_cast<const uint8_t*>(w), 0, xb, &out);
    return out;
  }
  static void rows(int64_t k, const void* w, int64_t w_stride, int64_t n, const void* xq, float* out) {
    const BlockQ8xK* xb[1] = {static_cast<const BlockQ8xK*>(xq)};
    for (int64_t c = 0; c < n; ++c) Tile1(k, static_cast<const uint8_t*>(w) + c * w_stride, 0, xb, out + c);
  }
  static void dot4(int64_t k, const void* w, const void* const* xq, float* out) {
    const BlockQ8xK* xb[4];
    for (int j = 0; j < 4; ++j) xb[j] = static_cast<const BlockQ8xK*>(xq[j]);
    Tile4(k, static_cast<const uint8_t*>(w), 0, xb, out);
  }
};

// No 2 x 4 form: the K types' inner loop is two integer multiplies per 32 values and pair, which
// a wider tile does not reduce, while its registers spill (measured slower than 1 x 4).
using Q4_K = TypeK<tile_q4k<1, 1>, tile_q4k<1, 4>>;
using Q6_K = TypeK<tile_q6k<1, 1>, tile_q6k<1, 4>>;

// ---- activation quantization: the generic quantizer's values, eight at a time -----------------

// v = x or the normalised x[j] * inv * (norm_w[j] + off), in the generic act_value's order.
inline __m256 act8(const float* x, const float* norm_w, float inv, float off, int64_t j) {
  const __m256 v = _mm256_loadu_ps(x + j);
  if (norm_w == nullptr) return v;
  return _mm256_mul_ps(_mm256_mul_ps(v, _mm256_set1_ps(inv)), _mm256_add_ps(_mm256_loadu_ps(norm_w + j), _mm256_set1_ps(off)));
}

// max over |v| of n values, NaN ignored (max_ps(a, m) = a > m ? a : m, the generic abs_max).
inline float amax_of(const float* x, const float* norm_w, float inv, float off, int64_t j0, int n) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 m = _mm256_setzero_ps();
  for (int j = 0; j < n; j += 8) m = _mm256_max_ps(_mm256_and_ps(act8(x, norm_w, inv, off, j0 + j), abs_mask), m);
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

// round(v * id) half away from zero as 32-bit ints, 0 where v * id is outside (-128, 128) or NaN:
// truncation, then the exact fraction decides (the generic q8()).
inline __m256i q8x8(__m256 v, __m256 id) {
  const __m256 y = _mm256_mul_ps(v, id);
  const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(y, _mm256_set1_ps(-128.0f), _CMP_GT_OQ),
                                  _mm256_cmp_ps(y, _mm256_set1_ps(128.0f), _CMP_LT_OQ));
  __m256i t = _mm256_cvttps_epi32(y);
  const __m256 frac = _mm256_sub_ps(y, _mm256_cvtepi32_ps(t));
  t = _mm256_sub_epi32(t, _mm256_castps_si256(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ)));
  t = _mm256_add_epi32(t, _mm256_castps_si256(_mm256_cmp_ps(frac, _mm256_set1_ps(-0.5f), _CMP_LE_OQ)));
  return _mm256_and_si256(t, _mm256_castps_si256(ok));
}

// 32 values at x + j0 quantized with id into qs (bytes in element order); returns their sum.
inline int quantize32(const float* x, const float* norm_w, float inv, float off, int64_t j0, __m256 id,
                      int8_t* qs) {
  const __m256i a = q8x8(act8(x, norm_w, inv, off, j0), id), b = q8x8(act8(x, norm_w, inv, off, j0 + 8), id);
  const __m256i c = q8x8(act8(x, norm_w, inv, off, j0 + 16), id), d = q8x8(act8(x, norm_w, inv, off, j0 + 24), id);
  // packs interleave the 128-bit lanes: ab = a0 b0 a1 b1, cd = c0 d0 c1 d1 (int16), abcd = a0 b0 c0
  // d0 a1 b1 c1 d1 (int8, 4 values each); the dword permutation restores element order. Values are
  // in [-127, 127] (|v * id| <= 127 up to rounding), so the saturation never acts.
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  const __m256i q = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), q);
  const __m256i s32 = _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d));
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
  return _mm_cvtsi128_si32(h);
}

void quantize_q8x32_avx2(const float* x, const float* norm_w, float inv, float off, int64_t k, BlockQ8x32* out) {
  for (int64_t b = 0; b < k / 32; ++b) {
    const float amax = amax_of(x, norm_w, inv, off, 32 * b, 32);
    const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    const int sum = quantize32(x, norm_w, inv, off, 32 * b, _mm256_set1_ps(id), out[b].qs);
    out[b].d = d;
    out[b].s = d * static_cast<float>(sum);
  }
}

void quantize_q8xk_avx2(const float* x, const float* norm_w, float inv, float off, int64_t k, BlockQ8xK* out) {
  for (int64_t b = 0; b < k / 256; ++b) {
    const float amax = amax_of(x, norm_w, inv, off, 256 * b, 256);
    const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    for (int c = 0; c < 8; ++c) quantize32(x, norm_w, inv, off, 256 * b + 32 * c, _mm256_set1_ps(id), out[b].qs + 32 * c);
    for (int g = 0; g < 16; ++g) {  // 16 int8 -> one int16 sum: madd with ones after widening
      const __m256i w16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(out[b].qs + 16 * g)));
      const __m256i s32 = _mm256_madd_epi16(w16, ones16());
      __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
      h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
      h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
      out[b].bsums[g] = static_cast<int16_t>(_mm_cvtsi128_si32(h));
    }
    out[b].d = d;
  }
}

// The rows form of a type with only a one-row dot product.
template <float (*Dot)(int64_t, const void*, const void*)>
void rows_of(int64_t k, const void* w, int64_t w_stride, int64_t n, const void* xq, float* out) {
  for (int64_t c = 0; c < n; ++c) out[c] = Dot(k, static_cast<const uint8_t*>(w) + c * w_stride, xq);
}

}  // namespace

QuantVecDotRowsFn quant_vec_dot_rows_avx2(DType wtype) {
  switch (wtype) {
    case DType::kQ4_0: return Q4_0::rows;
    case DType::kQ4_1: return Q4_1::rows;
    case DType::kQ5_0: return Q5_0::rows;
    case DType::kQ5_1: return Q5_1::rows;
    case DType::kQ8_0: return Q8_0::rows;
    case DType::kIQ4_NL: return Iq4Nl::rows;
    case DType::kQ2_K: return rows_of<dot_q2_k>;
    case DType::kQ3_K: return rows_of<dot_q3_k>;
    case DType::kQ4_K: return Q4_K::rows;
    case DType::kQ5_K: return rows_of<dot_q45_k<5>>;
    case DType::kQ6_K: return Q6_K::rows;
    case DType::kIQ4_XS: return rows_of<dot_iq4_xs>;
    default: return nullptr;
  }
}

QuantVecDot4Fn quant_vec_dot4_avx2(DType wtype) {
  switch (wtype) {
    case DType::kQ4_0: return Q4_0::dot4;
    case DType::kQ4_1: return Q4_1::dot4;
    case DType::kQ5_0: return Q5_0::dot4;
    case DType::kQ5_1: return Q5_1::dot4;
    case DType::kQ8_0: return Q8_0::dot4;
    case DType::kIQ4_NL: return Iq4Nl::dot4;
    case DType::kQ4_K: return Q4_K::dot4;
    case DType::kQ6_K: return Q6_K::dot4;
    default: return nullptr;
  }
}

QuantVecDot2x4Fn quant_vec_dot2x4_avx2(DType wtype) {
  switch (wtype) {
    case DType::kQ4_0: return Q4_0::dot2x4;
    case DType::kQ4_1: return Q4_1::dot2x4;
    case DType::kQ5_0: return Q5_0::dot2x4;
    case DType::kQ5_1: return Q5_1::dot2x4;
    case DType::kQ8_0: return Q8_0::dot2x4;
    case DType::kIQ4_NL: return Iq4Nl::dot2x4;
    default: return nullptr;
  }
}

void quantize_act_row_avx2(DType wtype, const float* x, const float* norm_w, float inv_rms, float offset, int64_t k,
                           void* out) {
  if (quant_uses_q8k(wtype)) {
    quantize_q8xk_avx2(x, norm_w, inv_rms, offset, k, static_cast<BlockQ8xK*>(out));
  } else {
    quantize_q8x32_avx2(x, norm_w, inv_rms, offset, k, static_cast<BlockQ8x32*>(out));
  }
}

QuantVecDotFn quant_vec_dot_avx2(DType wtype) {
  switch (wtype) {
    case DType::kQ4_0: return Q4_0::dot;
    case DType::kQ4_1: return Q4_1::dot;
    case DType::kQ5_0: return Q5_0::dot;
    case DType::kQ5_1: return Q5_1::dot;
    case DType::kQ8_0: return Q8_0::dot;
    case DType::kIQ4_NL: return Iq4Nl::dot;
    case DType::kQ2_K: return dot_q2_k;
    case DType::kQ3_K: return dot_q3_k;
    case DType::kQ4_K: return Q4_K::dot;
    case DType::kQ5_K: return dot_q45_k<5>;
    case DType::kQ6_K: return Q6_K::dot;
    case DType::kIQ4_XS: return dot_iq4_xs;
    default: return nullptr;
  }
}

}  // namespace eli
