// kernels/cpu/quant_gemm_avx2.cc: the AVX2 prefill GEMM of the 32-element GGUF block types over
// decoded weight panels and widened activation rows (layouts: quant_gemm.h).
//
// A column tile's weight blocks are decoded once per call (nibbles, Q5 high bits, IQ4 table, f16
// scales) into panels of eight rows with the rows in the 32-bit lanes and the quants as int16
// pairs. The register tile is 16 weight rows (two panels) x RX activation rows: per block, 16
// steps of one 32-bit activation-pair broadcast (a 128-bit load of four pairs, then an in-lane
// vpshufd per pair) and, per panel, one vpmaddwd + one vpaddd into an
// int32 accumulator whose lane r is then the exact integer block dot of row r; after the block,
// one scale product (8 rows' d_w times the broadcast d_x), one convert and one fused multiply-add
// per panel and activation row. Against the one-register-per-pair form (sign trick, maddubs,
// madd, convert and FMA per pair and block) this takes two multiplies and two adds per pair and
// block, and no horizontal sums. The float operations per pair and their order over the blocks are
// the canonical ones (quant_gemm.h), so every output is the one-row dot product's bits.
#include <cstring>

#include "kernels/cpu/quant_avx2_blocks.h"
#include "kernels/cpu/quant_gemm.h"

namespace eli {
namespace {

using namespace quant_avx2;  // NOLINT: the shared building blocks

template <int kBytes, bool kSigned, Off kOff, typename Decode>
struct Panels32 {
  static void decode(int64_t nb, const uint8_t* w, int64_t w_stride, int64_t rows, WPanel32* out) {
    const int64_t panels = (rows + kPanelRows - 1) / kPanelRows;
    if (rows % kPanelRows != 0) {  // rows past the matrix: zero quants and scales
      std::memset(static_cast<void*>(out + (panels - 1) * nb), 0, static_cast<size_t>(nb) * sizeof(WPanel32));
    }
    alignas(32) int16_t q16[32];
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t p = r / kPanelRows;
      const int lane = static_cast<int>(r % kPanelRows);
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* wb = w + r * w_stride + b * kBytes;
        WPanel32& o = out[p * nb + b];
        const __m256i q = Decode()(wb);
        const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
        _mm256_store_si256(reinterpret_cast<__m256i*>(q16), kSigned ? _mm256_cvtepi8_epi16(lo) : _mm256_cvtepu8_epi16(lo));
        _mm256_store_si256(reinterpret_cast<__m256i*>(q16 + 16), kSigned ? _mm256_cvtepi8_epi16(hi) : _mm256_cvtepu8_epi16(hi));
        for (int e = 0; e < 16; ++e) std::memcpy(&o.q[e][2 * lane], &q16[2 * e], 2 * sizeof(int16_t));
        o.d[lane] = h2f(wb);
        o.o[lane] = kOff == Off::kStored ? h2f(wb + 2) : kOff == Off::kNone ? 0.0f : o.d[lane];
      }
    }
  }

  // out[j * 16 + r] for the 16 weight rows of panels w[0 .. nb) and w[nb .. 2 nb), j < RX. The
  // float accumulators live in acc (RX * 16) and offs (RX * 16, offset types) in memory: touched
  // once per block, they leave the registers to the integer accumulators and the broadcasts.
  template <int RX>
  static void tile(int64_t nb, const WPanel32* w, const BlockX16* const* x, float* out) {
    alignas(32) float acc[RX * 16], offs[RX * 16];
    for (int i = 0; i < RX * 16; ++i) acc[i] = offs[i] = 0.0f;
    float* volatile accp = acc;  // opaque to the compiler: stays in memory
    float* volatile offp = offs;
    float* const am = accp;
    float* const om = offp;
    for (int64_t b = 0; b < nb; ++b) {
      const WPanel32& p0 = w[b];
      const WPanel32& p1 = w[nb + b];
      __m256i is[RX][2];
#pragma GCC unroll 4
      for (int j = 0; j < RX; ++j) is[j][0] = is[j][1] = _mm256_setzero_si256();
      for (int e0 = 0; e0 < 16; e0 += 4) {
        // Four activation pairs of each row in both 128-bit halves, then one in-lane shuffle each.
        __m256i x4[RX];
#pragma GCC unroll 4
        for (int j = 0; j < RX; ++j) {
          x4[j] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[j][b].q + 2 * e0)));
        }
#define ELI_PANEL_STEP(E)                                                                   \
  {                                                                                         \
    const __m256i a0 = load256(p0.q[e0 + E]), a1 = load256(p1.q[e0 + E]);                  \
    for (int j = 0; j < RX; ++j) {                                                          \
      const __m256i xb = _mm256_shuffle_epi32(x4[j], E * 0x55);                             \
      is[j][0] = _mm256_add_epi32(is[j][0], _mm256_madd_epi16(a0, xb));                     \
      is[j][1] = _mm256_add_epi32(is[j][1], _mm256_madd_epi16(a1, xb));                     \
    }                                                                                       \
  }
        ELI_PANEL_STEP(0)
        ELI_PANEL_STEP(1)
        ELI_PANEL_STEP(2)
        ELI_PANEL_STEP(3)
#undef ELI_PANEL_STEP
      }
      const __m256 d0 = _mm256_loadu_ps(p0.d), d1 = _mm256_loadu_ps(p1.d);
#pragma GCC unroll 4
      for (int j = 0; j < RX; ++j) {
        const __m256 dx = _mm256_broadcast_ss(&x[j][b].d);
        float* a = am + j * 16;
        _mm256_store_ps(a, _mm256_fmadd_ps(_mm256_mul_ps(d0, dx), _mm256_cvtepi32_ps(is[j][0]), _mm256_load_ps(a)));
        _mm256_store_ps(a + 8, _mm256_fmadd_ps(_mm256_mul_ps(d1, dx), _mm256_cvtepi32_ps(is[j][1]), _mm256_load_ps(a + 8)));
        if (kOff != Off::kNone) {
          const __m256 sx = _mm256_broadcast_ss(&x[j][b].s);
          float* o = om + j * 16;
          _mm256_store_ps(o, _mm256_fmadd_ps(_mm256_loadu_ps(p0.o), sx, _mm256_load_ps(o)));
          _mm256_store_ps(o + 8, _mm256_fmadd_ps(_mm256_loadu_ps(p1.o), sx, _mm256_load_ps(o + 8)));
        }
      }
    }
    // out = acc + offs * c: c is 1, -8 or -16, so the product is exact (no rounding to fuse).
    const __m256 c = _mm256_set1_ps(off_scale(kOff));
    for (int i = 0; i < RX * 16; i += 8) {
      const __m256 v = _mm256_load_ps(am + i);
      _mm256_storeu_ps(out + i, kOff != Off::kNone ? _mm256_add_ps(v, _mm256_mul_ps(_mm256_load_ps(om + i), c)) : v);
    }
  }

  static void gemm(int64_t nb, const WPanel32* w, const BlockX16* const* x, int rx, float* out) {
    switch (rx) {
      case 1: tile<1>(nb, w, x, out); break;
      case 2: tile<2>(nb, w, x, out); break;
      case 3: tile<3>(nb, w, x, out); break;
      default: tile<4>(nb, w, x, out); break;
    }
  }
};

using G4_0 = Panels32<18, false, Off::kMinus8, DecodeQ4_0>;
using G4_1 = Panels32<20, false, Off::kStored, DecodeQ4_1>;
using G5_0 = Panels32<22, false, Off::kMinus16, DecodeQ5_0>;
using G5_1 = Panels32<24, false, Off::kStored, DecodeQ5_1>;
using G8_0 = Panels32<34, true, Off::kNone, DecodeQ8_0>;
using GIq4Nl = Panels32<18, true, Off::kNone, DecodeIq4Nl>;

}  // namespace

QuantDecodePanelsFn quant_decode_panels_avx2(DType wtype) {
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

QuantGemmPanelsFn quant_gemm_panels_avx2(DType wtype) {
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
