// kernels/cpu/quant_dot_generic.cc: activation quantization (Q8x32 / Q8xK) and the portable C++
// dot products of every GGUF block type with them (the "generic" CPU variant; see quant_dot.h).
//
// Each dot product forms, per weight block, exact integer sums of weight quants times activation
// quants per sub-block, scales them by the sub-block's integer scale, and only then goes to float:
//   32-element types: d_w * d_x * sum(q_w q_x)  (+ m_w * s_x for the types with an offset)
//   K types: d_x * (d_w * sum_j sc_j sum(q_w q_x) - dmin_w * sum_j mn_j bsum_j)
#include <cmath>
#include <cstring>

#include "eli/error.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/ref/dequant_ref.h"
#include "runtime/core/float_convert.h"

namespace eli {
namespace {

using quant::load_u16;
using quant::load_u32;

inline float h2f(const uint8_t* p) { return f16_to_f32(load_u16(p)); }

// x * 127 / amax rounded to nearest (ties away from zero), in [-127, 127]; 0 for a NaN or an
// infinity (whose block scale is then non-finite and poisons the product). Written out rather
// than std::lround, which is a library call per value here (no SSE4.1 rounding in this file):
// truncation toward zero, then the exact fraction decides.
inline int8_t q8(float v, float id) {
  const float y = v * id;
  if (!(y > -128.0f && y < 128.0f)) return 0;
  int t = static_cast<int>(y);
  const float frac = y - static_cast<float>(t);  // exact: y and t share their leading bits
  t += static_cast<int>(frac >= 0.5f) - static_cast<int>(frac <= -0.5f);
  return static_cast<int8_t>(t);
}

// max(amax, |v|) without std::fmax's library call; a NaN v leaves amax as fmax would.
inline float abs_max(float amax, float v) {
  const float a = std::fabs(v);
  return a > amax ? a : amax;
}

inline float act_value(const float* x, const float* norm_w, float inv_rms, float offset, int64_t j) {
  return norm_w != nullptr ? x[j] * inv_rms * (norm_w[j] + offset) : x[j];
}

void quantize_q8x32(const float* x, const float* norm_w, float inv, float off, int64_t k, BlockQ8x32* out) {
  float v[32];
  for (int64_t b = 0; b < k / 32; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) {
      v[j] = act_value(x, norm_w, inv, off, 32 * b + j);
      amax = abs_max(amax, v[j]);
    }
    const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      out[b].qs[j] = q8(v[j], id);
      sum += out[b].qs[j];
    }
    out[b].d = d;
    out[b].s = d * static_cast<float>(sum);
  }
}

void quantize_q8xk(const float* x, const float* norm_w, float inv, float off, int64_t k, BlockQ8xK* out) {
  float v[256];
  for (int64_t b = 0; b < k / 256; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < 256; ++j) {
      v[j] = act_value(x, norm_w, inv, off, 256 * b + j);
      amax = abs_max(amax, v[j]);
    }
    const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 256; ++j) out[b].qs[j] = q8(v[j], id);
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += out[b].qs[16 * g + j];
      out[b].bsums[g] = static_cast<int16_t>(sum);
    }
    out[b].d = d;
  }
}

// ---- 32-element types: unpack the block's quants to ints, one integer dot per block ----------

template <int kBlockBytes, typename Unpack>
float dot32(int64_t k, const void* w, const void* xq, Unpack unpack) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8x32*>(xq);
  float acc = 0.0f;
  int q[32];
  for (int64_t b = 0; b < k / 32; ++b, wb += kBlockBytes) {
    float d = 0.0f, m = 0.0f;
    unpack(wb, q, &d, &m);
    int sum = 0;
    for (int j = 0; j < 32; ++j) sum += q[j] * xb[b].qs[j];
    acc += d * xb[b].d * static_cast<float>(sum) + m * xb[b].s;
  }
  return acc;
}

float dot_q4_0(int64_t k, const void* w, const void* xq) {
  return dot32<18>(k, w, xq, [](const uint8_t* b, int* q, float* d, float*) {
    *d = h2f(b);
    for (int j = 0; j < 16; ++j) {
      q[j] = (b[2 + j] & 0x0f) - 8;
      q[j + 16] = (b[2 + j] >> 4) - 8;
    }
  });
}
float dot_q4_1(int64_t k, const void* w, const void* xq) {
  return dot32<20>(k, w, xq, [](const uint8_t* b, int* q, float* d, float* m) {
    *d = h2f(b);
    *m = h2f(b + 2);
    for (int j = 0; j < 16; ++j) {
      q[j] = b[4 + j] & 0x0f;
      q[j + 16] = b[4 + j] >> 4;
    }
  });
}
float dot_q5_0(int64_t k, const void* w, const void* xq) {
  return dot32<22>(k, w, xq, [](const uint8_t* b, int* q, float* d, float*) {
    *d = h2f(b);
    const uint32_t qh = load_u32(b + 2);
    for (int j = 0; j < 16; ++j) {
      q[j] = ((b[6 + j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4)) - 16;
      q[j + 16] = ((b[6 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4)) - 16;
    }
  });
}
float dot_q5_1(int64_t k, const void* w, const void* xq) {
  return dot32<24>(k, w, xq, [](const uint8_t* b, int* q, float* d, float* m) {
    *d = h2f(b);
    *m = h2f(b + 2);
    const uint32_t qh = load_u32(b + 4);
    for (int j = 0; j < 16; ++j) {
      q[j] = (b[8 + j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
      q[j + 16] = (b[8 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    }
  });
}
float dot_q8_0(int64_t k, const void* w, const void* xq) {
  return dot32<34>(k, w, xq, [](const uint8_t* b, int* q, float* d, float*) {
    *d = h2f(b);
    for (int j = 0; j < 32; ++j) q[j] = static_cast<int8_t>(b[2 + j]);
  });
}
float dot_iq4_nl(int64_t k, const void* w, const void* xq) {
  return dot32<18>(k, w, xq, [](const uint8_t* b, int* q, float* d, float*) {
    *d = h2f(b);
    for (int j = 0; j < 16; ++j) {
      q[j] = kIq4Values[b[2 + j] & 0x0f];
      q[j + 16] = kIq4Values[b[2 + j] >> 4];
    }
  });
}

// ---- K types: per super-block, integer sums per 16 (or 32) elements times integer scales ----

// sum over 16 elements of q[e] * x[e].
inline int idot16(const int* q, const int8_t* x) {
  int s = 0;
  for (int j = 0; j < 16; ++j) s += q[j] * x[j];
  return s;
}

float dot_q2_k(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  float acc = 0.0f;
  int q[256];
  for (int64_t b = 0; b < k / 256; ++b, wb += 84) {
    const uint8_t* sc = wb;
    const uint8_t* qs = wb + 16;
    for (int e = 0; e < 256; ++e) q[e] = (qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
    int sum = 0, msum = 0;
    for (int g = 0; g < 16; ++g) {
      sum += (sc[g] & 0x0f) * idot16(q + 16 * g, xb[b].qs + 16 * g);
      msum += (sc[g] >> 4) * xb[b].bsums[g];
    }
    acc += xb[b].d * (h2f(wb + 80) * static_cast<float>(sum) - h2f(wb + 82) * static_cast<float>(msum));
  }
  return acc;
}

float dot_q3_k(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  float acc = 0.0f;
  int q[256];
  for (int64_t b = 0; b < k / 256; ++b, wb += 110) {
    const uint8_t* hmask = wb;
    const uint8_t* qs = wb + 32;
    for (int e = 0; e < 256; ++e) {
      const int lo = (qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
      q[e] = lo - (((hmask[e % 32] >> (e / 32)) & 1) ? 0 : 4);
    }
    int sum = 0;
    for (int g = 0; g < 16; ++g) sum += quant::q3_k_scale(wb + 96, g) * idot16(q + 16 * g, xb[b].qs + 16 * g);
    acc += xb[b].d * h2f(wb + 108) * static_cast<float>(sum);
  }
  return acc;
}

// Q4_K and Q5_K share the scale layout; kBits 4 or 5.
template <int kBits>
float dot_q45_k(int64_t k, const void* w, const void* xq) {
  constexpr int kBytes = kBits == 4 ? 144 : 176;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  float acc = 0.0f;
  int q[256];
  for (int64_t b = 0; b < k / 256; ++b, wb += kBytes) {
    const uint8_t* qh = wb + 16;
    const uint8_t* qs = wb + (kBits == 4 ? 16 : 48);
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        q[64 * c + l] = qs[32 * c + l] & 0x0f;
        q[64 * c + 32 + l] = qs[32 * c + l] >> 4;
        if (kBits == 5) {
          q[64 * c + l] |= ((qh[l] >> (2 * c)) & 1) << 4;
          q[64 * c + 32 + l] |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
        }
      }
    }
    int sum = 0, msum = 0;
    for (int s = 0; s < 8; ++s) {
      int sc, mn;
      quant::k_scale_min(wb + 4, s, &sc, &mn);
      sum += sc * (idot16(q + 32 * s, xb[b].qs + 32 * s) + idot16(q + 32 * s + 16, xb[b].qs + 32 * s + 16));
      msum += mn * (xb[b].bsums[2 * s] + xb[b].bsums[2 * s + 1]);
    }
    acc += xb[b].d * (h2f(wb) * static_cast<float>(sum) - h2f(wb + 2) * static_cast<float>(msum));
  }
  return acc;
}

float dot_q6_k(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  float acc = 0.0f;
  int q[256];
  for (int64_t b = 0; b < k / 256; ++b, wb += 210) {
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = wb + 64 * h;
      const uint8_t* qh = wb + 128 + 32 * h;
      int* o = q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        o[l] = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32;
        o[l + 32] = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        o[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        o[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      }
    }
    const auto* sc = reinterpret_cast<const int8_t*>(wb + 192);
    int sum = 0;
    for (int g = 0; g < 16; ++g) sum += sc[g] * idot16(q + 16 * g, xb[b].qs + 16 * g);
    acc += xb[b].d * h2f(wb + 208) * static_cast<float>(sum);
  }
  return acc;
}

float dot_iq4_xs(int64_t k, const void* w, const void* xq) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8xK*>(xq);
  float acc = 0.0f;
  int q[32];
  for (int64_t b = 0; b < k / 256; ++b, wb += 136) {
    int sum = 0;
    for (int s = 0; s < 8; ++s) {
      const uint8_t* qs = wb + 8 + 16 * s;
      for (int l = 0; l < 16; ++l) {
        q[l] = kIq4Values[qs[l] & 0x0f];
        q[l + 16] = kIq4Values[qs[l] >> 4];
      }
      sum += quant::iq4_xs_scale(wb, s) * (idot16(q, xb[b].qs + 32 * s) + idot16(q + 16, xb[b].qs + 32 * s + 16));
    }
    acc += xb[b].d * h2f(wb) * static_cast<float>(sum);
  }
  return acc;
}

}  // namespace

bool quant_uses_q8k(DType wtype) {
  switch (wtype) {
    case DType::kQ2_K: case DType::kQ3_K: case DType::kQ4_K: case DType::kQ5_K: case DType::kQ6_K:
    case DType::kIQ4_XS:
      return true;
    default:
      return false;
  }
}

size_t quant_act_row_bytes(DType wtype, int64_t k) {
  return quant_uses_q8k(wtype) ? static_cast<size_t>(k / 256) * sizeof(BlockQ8xK)
                               : static_cast<size_t>(k / 32) * sizeof(BlockQ8x32);
}

void quantize_act_row(DType wtype, const float* x, const float* norm_w, float inv_rms, float offset, int64_t k,
                      void* out) {
  if (quant_uses_q8k(wtype)) {
    quantize_q8xk(x, norm_w, inv_rms, offset, k, static_cast<BlockQ8xK*>(out));
  } else {
    quantize_q8x32(x, norm_w, inv_rms, offset, k, static_cast<BlockQ8x32*>(out));
  }
}

QuantVecDotFn quant_vec_dot_generic(DType wtype) {
  switch (wtype) {
    case DType::kQ4_0: return dot_q4_0;
    case DType::kQ4_1: return dot_q4_1;
    case DType::kQ5_0: return dot_q5_0;
    case DType::kQ5_1: return dot_q5_1;
    case DType::kQ8_0: return dot_q8_0;
    case DType::kIQ4_NL: return dot_iq4_nl;
    case DType::kQ2_K: return dot_q2_k;
    case DType::kQ3_K: return dot_q3_k;
    case DType::kQ4_K: return dot_q45_k<4>;
    case DType::kQ5_K: return dot_q45_k<5>;
    case DType::kQ6_K: return dot_q6_k;
    case DType::kIQ4_XS: return dot_iq4_xs;
    default: return nullptr;
  }
}

}  // namespace eli
