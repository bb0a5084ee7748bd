// kernels/cpu/quant_gemm_avx2.cc: the AVX2 prefill GEMM of the 32-element GGUF block types over
// decoded weight blocks and grouped activation rows (layouts: quant_gemm.h).
//
// A column tile's weight blocks are decoded once (nibbles, Q5 high bits, IQ4 table, f16 scales)
// and then meet every group of four activation rows from the cache, so the decoding is paid once
// per call instead of once per four rows. The register tile is RW weight rows x 4 activation rows
// (RW * 4 f32 accumulators of 8 lanes); per block and pair: one maddubs, one madd, one convert
// and one fused multiply-add with the pair's scale product d_w * d_x, which is computed four at a
// time (one multiply per weight row) and broadcast from memory. The float operations per pair,
// and their order over the blocks, are those of quant_dot_avx2.cc's tile32 (the one-row dot
// product), so the outputs are its bits.
#include "kernels/cpu/quant_avx2_blocks.h"
#include "kernels/cpu/quant_gemm.h"

namespace eli {
namespace {

using namespace quant_avx2;  // NOLINT: the shared building blocks

template <int kBytes, bool kSigned, Off kOff, typename Decode, int RW>
struct Gemm32 {
  static void decode(int64_t nb, const uint8_t* w, int64_t w_stride, int64_t rows, WBlock32* out) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* wb = w + r * w_stride + b * kBytes;
        WBlock32& o = out[r * nb + b];
        o.d = h2f(wb);
        o.o = kOff == Off::kStored ? h2f(wb + 2) : o.d;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.q), Decode()(wb));
      }
    }
  }

  // out[i * 4 + j] for R weight rows w + i * nb.
  template <int R>
  static void tile(int64_t nb, const WBlock32* w, const BlockQ8x32x4* xg, float* out) {
    __m256 acc[R][4];
    __m128 offs[R];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      offs[i] = _mm_setzero_ps();
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[i][j] = _mm256_setzero_ps();
    }
    const __m256i ones = ones16();
    // Blocks in chunks: first the chunk's scale products (and the offsets, in block order), then
    // the integer dot products read them back as broadcasts from the L1 cache.
    constexpr int64_t kChunk = 32;
    alignas(16) float sc[kChunk][R][4];
    for (int64_t b0 = 0; b0 < nb; b0 += kChunk) {
      const int64_t b1 = b0 + kChunk < nb ? b0 + kChunk : nb;
      for (int64_t b = b0; b < b1; ++b) {
        const __m128 dx = _mm_loadu_ps(xg[b].d);
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i) {
          const WBlock32& wb = w[i * nb + b];
          _mm_store_ps(sc[b - b0][i], _mm_mul_ps(_mm_set1_ps(wb.d), dx));
          if (kOff != Off::kNone) offs[i] = _mm_fmadd_ps(_mm_set1_ps(wb.o), _mm_loadu_ps(xg[b].s), offs[i]);
        }
      }
      for (int64_t b = b0; b < b1; ++b) {
        const BlockQ8x32x4& x = xg[b];
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i) {
          const __m256i q = load256(w[i * nb + b].q);
          const __m256i qa = kSigned ? _mm256_sign_epi8(q, q) : q;
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) {
            const __m256i xj = load256(x.qs[j]);
            const __m256i p = _mm256_maddubs_epi16(qa, kSigned ? _mm256_sign_epi8(xj, q) : xj);
            const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
            acc[i][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(&sc[b - b0][i][j]), f, acc[i][j]);
          }
        }
      }
    }
    constexpr float kOffScale = kOff == Off::kMinus8 ? -8.0f : kOff == Off::kMinus16 ? -16.0f : 1.0f;
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
      const __m128 sums = hsum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
      _mm_storeu_ps(out + i * 4, kOff != Off::kNone ? _mm_add_ps(sums, _mm_mul_ps(offs[i], _mm_set1_ps(kOffScale))) : sums);
    }
  }

  static void gemm(int64_t nb, const WBlock32* w, int64_t rows, const BlockQ8x32x4* xg, float* out) {
    int64_t r = 0;
    for (; r + RW <= rows; r += RW) tile<RW>(nb, w + r * nb, xg, out + r * 4);
    for (; r < rows; ++r) tile<1>(nb, w + r * nb, xg, out + r * 4);
  }
};

// Unsigned quants keep one weight register per row live, signed ones two (q and |q|).
constexpr int kRwUnsigned = 2, kRwSigned = 2;
using G4_0 = Gemm32<18, false, Off::kMinus8, DecodeQ4_0, kRwUnsigned>;
using G4_1 = Gemm32<20, false, Off::kStored, DecodeQ4_1, kRwUnsigned>;
using G5_0 = Gemm32<22, false, Off::kMinus16, DecodeQ5_0, kRwUnsigned>;
using G5_1 = Gemm32<24, false, Off::kStored, DecodeQ5_1, kRwUnsigned>;
using G8_0 = Gemm32<34, true, Off::kNone, DecodeQ8_0, kRwSigned>;
using GIq4Nl = Gemm32<18, true, Off::kNone, DecodeIq4Nl, kRwSigned>;

}  // namespace

QuantDecode32Fn quant_decode32_avx2(DType wtype) {
  switch (wtype) {
    case DType::kQ4_0: return G4_0::decode;
    case DType::kQ4_1: return G4_1::decode;
    case DType::kQ5_0: return G5_0::decode;
    case DType::kQ5_1: return G5_1::decode;
    case DType::kQ8_0: return G8_0::decode;
    case DType::kIQ4_NL: return GIq4Nl::decode;
    default: return nullptr;
  }
}

QuantGemm32Fn quant_gemm32_avx2(DType wtype) {
  switch (wtype) {
    case DType::kQ4_0: return G4_0::gemm;
    case DType::kQ4_1: return G4_1::gemm;
    case DType::kQ5_0: return G5_0::gemm;
    case DType::kQ5_1: return G5_1::gemm;
    case DType::kQ8_0: return G8_0::gemm;
    case DType::kIQ4_NL: return GIq4Nl::gemm;
    default: return nullptr;
  }
}

}  // namespace eli
