// kernels/cuda/gguf_blocks.cuh: per-type decoders of the GGUF weight blocks for the CUDA kernels
// (gguf_gemv*.cu, gguf_gemm*.cu), and the 8-bit activation blocks they are multiplied with.
//
// One unit of work everywhere is an *item*: 32 consecutive weights of one row (a 32-block, or one
// of the 8 sub-blocks of a 256-superblock), matching one 32-element block of the quantized x.
// A decoder turns item s of a block into 32 small integers packed as int8 (q[i] holds elements
// 4i..4i+3, element 4i + j in byte j) and per-half affine maps: w = a[h] * q + b[h] for elements
// 16h..16h+15 (types whose scale covers the whole item set a[1] = a[0], b[1] = b[0]; types
// without an offset set b = 0 and kHasB = false). The values are those of the reference
// (kernels/ref/dequant_ref.cc) up to f32 rounding of a * q + b.
//
// Alignment: every block starts at a multiple of B::kAlign = gcd(block bytes, 16) when the weight
// pointer does (rows, and the parts of a merged projection, are whole blocks); the kernels check
// the pointer, and the loads below use the widest access that alignment allows (2-byte loads for
// the 34/18/22/210/110-byte blocks, 16-byte ones for Q4_K / Q5_K).
//
// Everything here is host-and-device (ELI_HD) so that tests/cpp/test_cuda_gguf_blocks_host.cc can
// check the decoders and the integer dot products against the reference on a machine without a
// GPU; the device-only intrinsics have plain C++ twins on the host.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "eli/dtype.h"

#include "runtime/core/float_convert.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define ELI_HD __host__ __device__ __forceinline__
#define ELI_UNROLL _Pragma("unroll")
#else
#define ELI_HD inline
#define ELI_UNROLL
#endif

namespace eli {
namespace gguf {

constexpr int kItemElems = 32;          // weights per item = elements per activation block
constexpr int kQ8BlockBytes = 40;       // workspace bytes per activation block (32 int8 + d + s)

// The activation blocks in a workspace (written by gguf_quantize_x.cu): rows of k/32 blocks;
// qs: (m, k/32, 32) int8 at the start, then ds: (m, k/32) float2 {d, s} with x ~= d * q and
// s = d * sum(q). The ds region starts at m * k bytes (a multiple of 32).
struct Q8View {
  int8_t* qs;
  float* ds;  // 2 floats per block
};
ELI_HD Q8View q8_view(void* ws, int64_t m, int64_t k) {
  Q8View v;
  v.qs = static_cast<int8_t*>(ws);
  v.ds = reinterpret_cast<float*>(static_cast<char*>(ws) + m * k);
  return v;
}
inline size_t q8_workspace_bytes(int64_t m, int64_t k) {
  return static_cast<size_t>(m) * static_cast<size_t>(k / kItemElems) * kQ8BlockBytes;
}

// ---- portable intrinsics ----------------------------------------------------------------------

ELI_HD int dp4a(int a, int b, int c) {
#if defined(__CUDA_ARCH__)
  return __dp4a(a, b, c);
#else
  for (int j = 0; j < 4; ++j) {
    c += static_cast<int>(static_cast<int8_t>(static_cast<uint32_t>(a) >> (8 * j))) *
         static_cast<int>(static_cast<int8_t>(static_cast<uint32_t>(b) >> (8 * j)));
  }
  return c;
#endif
}

ELI_HD uint32_t byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(x, y, s);
#else
  const uint64_t v = (static_cast<uint64_t>(y) << 32) | x;
  uint32_t r = 0;
  for (int j = 0; j < 4; ++j) r |= static_cast<uint32_t>((v >> (8 * ((s >> (4 * j)) & 7))) & 0xff) << (8 * j);
  return r;
#endif
}

// Per-byte a - b (modulo 256 in each byte, no borrow between bytes).
ELI_HD uint32_t vsub4(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __vsub4(a, b);
#else
  uint32_t r = 0;
  for (int j = 0; j < 4; ++j) r |= (((a >> (8 * j)) - (b >> (8 * j))) & 0xffu) << (8 * j);
  return r;
#endif
}

// Loads from weight memory at the alignment named (the caller guarantees it).
ELI_HD uint32_t ld_u8(const uint8_t* p) { return *p; }
ELI_HD uint32_t ld_u16(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint16_t*>(p);
#else
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
#endif
}
ELI_HD uint32_t ld_u32(const uint8_t* p) {  // 4-byte aligned
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint32_t*>(p);
#else
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
#endif
}
ELI_HD uint32_t ld_u32_a2(const uint8_t* p) { return ld_u16(p) | (ld_u16(p + 2) << 16); }  // 2-byte aligned
// n consecutive 32-bit words at 16- / 8-byte alignment.
ELI_HD void ld_words16(const uint8_t* p, uint32_t (&w)[4]) {
#if defined(__CUDA_ARCH__)
  const uint4 v = *reinterpret_cast<const uint4*>(p);
  w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
#else
  std::memcpy(w, p, 16);
#endif
}
ELI_HD void ld_words8(const uint8_t* p, uint32_t& w0, uint32_t& w1) {
#if defined(__CUDA_ARCH__)
  const uint2 v = *reinterpret_cast<const uint2*>(p);
  w0 = v.x, w1 = v.y;
#else
  std::memcpy(&w0, p, 4);
  std::memcpy(&w1, p + 4, 4);
#endif
}

ELI_HD float f16_bits_to_f32(uint32_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(static_cast<unsigned short>(h)));
#else
  return f16_to_f32(static_cast<uint16_t>(h));
#endif
}
ELI_HD float ld_f16(const uint8_t* p) { return f16_bits_to_f32(ld_u16(p)); }

// Spreads 4 bits (h in 0..15) to bit 0 of the 4 bytes: byte j = bit j of h. The partial products
// h, h << 7, h << 14, h << 21 occupy disjoint bit ranges, so the product is their OR.
ELI_HD uint32_t spread4(uint32_t h) { return (h * 0x00204081u) & 0x01010101u; }

// Table lookup of 4 indices (each byte of idx in 0..15) in a 16-entry byte table t (entry e in
// byte e % 4 of t[e / 4]): __byte_perm picks within entries 0..7 and 8..15, bit 3 chooses.
ELI_HD uint32_t lut16(uint32_t idx, uint32_t t0, uint32_t t1, uint32_t t2, uint32_t t3) {
  const uint32_t sel = (idx & 0x7u) | ((idx >> 4) & 0x70u) | ((idx >> 8) & 0x700u) | ((idx >> 12) & 0x7000u);
  const uint32_t lo = byte_perm(t0, t1, sel);
  const uint32_t hi = byte_perm(t2, t3, sel);
  const uint32_t mask = ((idx & 0x08080808u) >> 3) * 0xffu;  // 0xff in each byte whose index >= 8
  return (lo & ~mask) | (hi & mask);
}

// ---- the weight item ---------------------------------------------------------------------------

struct WItem {
  int32_t q[8];     // 32 weights as int8, element 4i + j in byte j of q[i]
  float a[2], b[2]; // w = a[h] * q + b[h], h = element / 16
};

// Q8_0: fp16 d | int8 qs[32]; 34 bytes, 2-byte aligned.
struct BlockQ8_0 {
  static constexpr DType kType = DType::kQ8_0;
  static constexpr int kElems = 32, kBytes = 34, kItems = 1;
  static constexpr int kAlign = 2;
  static constexpr bool kHalves = false, kHasB = false;
  ELI_HD static void item(const uint8_t* b, int /*s*/, WItem& it) {
    it.a[0] = it.a[1] = ld_f16(b);
    it.b[0] = it.b[1] = 0.f;
ELI_UNROLL
    for (int i = 0; i < 8; ++i) it.q[i] = static_cast<int32_t>(ld_u32_a2(b + 2 + 4 * i));
  }
};

// Q4_0: fp16 d | u8 qs[16]; element j < 16 = low nibble of qs[j], j >= 16 the high nibble of
// qs[j - 16]; w = d * (nibble - 8). 18 bytes, 2-byte aligned.
struct BlockQ4_0 {
  static constexpr DType kType = DType::kQ4_0;
  static constexpr int kElems = 32, kBytes = 18, kItems = 1;
  static constexpr int kAlign = 2;
  static constexpr bool kHalves = false, kHasB = true;
  ELI_HD static void item(const uint8_t* b, int /*s*/, WItem& it) {
    const float d = ld_f16(b);
    it.a[0] = it.a[1] = d;
    it.b[0] = it.b[1] = -8.f * d;
ELI_UNROLL
    for (int i = 0; i < 4; ++i) {
      const uint32_t w = ld_u32_a2(b + 2 + 4 * i);
      it.q[i] = static_cast<int32_t>(w & 0x0f0f0f0fu);
      it.q[i + 4] = static_cast<int32_t>((w >> 4) & 0x0f0f0f0fu);
    }
  }
};

// Q4_1: fp16 d, fp16 m | u8 qs[16] (nibbles as Q4_0); w = d * nibble + m. 20 bytes, 4-byte aligned.
struct BlockQ4_1 {
  static constexpr DType kType = DType::kQ4_1;
  static constexpr int kElems = 32, kBytes = 20, kItems = 1;
  static constexpr int kAlign = 4;
  static constexpr bool kHalves = false, kHasB = true;
  ELI_HD static void item(const uint8_t* b, int /*s*/, WItem& it) {
    const uint32_t dm = ld_u32(b);
    it.a[0] = it.a[1] = f16_bits_to_f32(dm & 0xffffu);
    it.b[0] = it.b[1] = f16_bits_to_f32(dm >> 16);
ELI_UNROLL
    for (int i = 0; i < 4; ++i) {
      const uint32_t w = ld_u32(b + 4 + 4 * i);
      it.q[i] = static_cast<int32_t>(w & 0x0f0f0f0fu);
      it.q[i + 4] = static_cast<int32_t>((w >> 4) & 0x0f0f0f0fu);
    }
  }
};

// Q5_0: fp16 d | u32 qh | u8 qs[16]; the 5th bit of element j is bit j of qh; w = d * (q - 16).
// 22 bytes, 2-byte aligned.
struct BlockQ5_0 {
  static constexpr DType kType = DType::kQ5_0;
  static constexpr int kElems = 32, kBytes = 22, kItems = 1;
  static constexpr int kAlign = 2;
  static constexpr bool kHalves = false, kHasB = true;
  ELI_HD static void item(const uint8_t* b, int /*s*/, WItem& it) {
    const float d = ld_f16(b);
    it.a[0] = it.a[1] = d;
    it.b[0] = it.b[1] = -16.f * d;
    const uint32_t qh = ld_u32_a2(b + 2);
ELI_UNROLL
    for (int i = 0; i < 4; ++i) {
      const uint32_t w = ld_u32_a2(b + 6 + 4 * i);
      it.q[i] = static_cast<int32_t>((w & 0x0f0f0f0fu) | (spread4((qh >> (4 * i)) & 0xfu) << 4));
      it.q[i + 4] = static_cast<int32_t>(((w >> 4) & 0x0f0f0f0fu) | (spread4((qh >> (16 + 4 * i)) & 0xfu) << 4));
    }
  }
};

// Q5_1: fp16 d, fp16 m | u32 qh | u8 qs[16]; w = d * q + m. 24 bytes, 8-byte aligned.
struct BlockQ5_1 {
  static constexpr DType kType = DType::kQ5_1;
  static constexpr int kElems = 32, kBytes = 24, kItems = 1;
  static constexpr int kAlign = 8;
  static constexpr bool kHalves = false, kHasB = true;
  ELI_HD static void item(const uint8_t* b, int /*s*/, WItem& it) {
    const uint32_t dm = ld_u32(b);
    it.a[0] = it.a[1] = f16_bits_to_f32(dm & 0xffffu);
    it.b[0] = it.b[1] = f16_bits_to_f32(dm >> 16);
    const uint32_t qh = ld_u32(b + 4);
ELI_UNROLL
    for (int i = 0; i < 4; ++i) {
      const uint32_t w = ld_u32(b + 8 + 4 * i);
      it.q[i] = static_cast<int32_t>((w & 0x0f0f0f0fu) | (spread4((qh >> (4 * i)) & 0xfu) << 4));
      it.q[i + 4] = static_cast<int32_t>(((w >> 4) & 0x0f0f0f0fu) | (spread4((qh >> (16 + 4 * i)) & 0xfu) << 4));
    }
  }
};

// The 6-bit (scale, min) pair j of the 12 packed scale bytes of Q4_K / Q5_K (as the reference).
ELI_HD void k_scale_min(const uint8_t* s, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = static_cast<int>(ld_u8(s + j) & 63u);
    mn = static_cast<int>(ld_u8(s + j + 4) & 63u);
  } else {
    const uint32_t hi = ld_u8(s + j + 4);
    sc = static_cast<int>((hi & 0x0fu) | ((ld_u8(s + j - 4) >> 6) << 4));
    mn = static_cast<int>((hi >> 4) | ((ld_u8(s + j) >> 6) << 4));
  }
}

// Q4_K: fp16 d, fp16 dmin | u8 scales[12] | u8 qs[128]; sub-block s (32 weights) is the low
// (s even) or high (s odd) nibbles of qs[32 (s/2) ..]; w = d sc_s * q - dmin m_s.
// 144 bytes, 16-byte aligned.
struct BlockQ4_K {
  static constexpr DType kType = DType::kQ4_K;
  static constexpr int kElems = 256, kBytes = 144, kItems = 8;
  static constexpr int kAlign = 16;
  static constexpr bool kHalves = false, kHasB = true;
  ELI_HD static void item(const uint8_t* b, int s, WItem& it) {
    const uint32_t dd = ld_u32(b);
    int sc, mn;
    k_scale_min(b + 4, s, sc, mn);
    it.a[0] = it.a[1] = f16_bits_to_f32(dd & 0xffffu) * static_cast<float>(sc);
    it.b[0] = it.b[1] = -(f16_bits_to_f32(dd >> 16) * static_cast<float>(mn));
    const int shift = 4 * (s & 1);
    uint32_t w[4];
ELI_UNROLL
    for (int h = 0; h < 2; ++h) {
      ld_words16(b + 16 + 32 * (s >> 1) + 16 * h, w);
ELI_UNROLL
      for (int i = 0; i < 4; ++i) it.q[4 * h + i] = static_cast<int32_t>((w[i] >> shift) & 0x0f0f0f0fu);
    }
  }
};

// Q5_K: fp16 d, fp16 dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]; as Q4_K plus a 5th bit: bit s
// of qh[l] for element l of sub-block s. 176 bytes, 16-byte aligned.
struct BlockQ5_K {
  static constexpr DType kType = DType::kQ5_K;
  static constexpr int kElems = 256, kBytes = 176, kItems = 8;
  static constexpr int kAlign = 16;
  static constexpr bool kHalves = false, kHasB = true;
  ELI_HD static void item(const uint8_t* b, int s, WItem& it) {
    const uint32_t dd = ld_u32(b);
    int sc, mn;
    k_scale_min(b + 4, s, sc, mn);
    it.a[0] = it.a[1] = f16_bits_to_f32(dd & 0xffffu) * static_cast<float>(sc);
    it.b[0] = it.b[1] = -(f16_bits_to_f32(dd >> 16) * static_cast<float>(mn));
    const int shift = 4 * (s & 1);
    uint32_t w[4], h[4];
ELI_UNROLL
    for (int g = 0; g < 2; ++g) {
      ld_words16(b + 48 + 32 * (s >> 1) + 16 * g, w);
      ld_words16(b + 16 + 16 * g, h);
ELI_UNROLL
      for (int i = 0; i < 4; ++i) {
        it.q[4 * g + i] = static_cast<int32_t>(((w[i] >> shift) & 0x0f0f0f0fu) | (((h[i] >> s) & 0x01010101u) << 4));
      }
    }
  }
};

// Q6_K: u8 ql[128] | u8 qh[64] | int8 scales[16] | fp16 d. Half hf = s / 4 (128 weights), group
// g = s % 4: element l (0..31) has low 4 bits from ql[64 hf + 32 (g % 2) + l] (low nibble for
// g < 2, high for g >= 2), top 2 bits from qh[32 hf + l] >> 2g; w = d sc[8 hf + 2 g + l / 16] *
// (q - 32). 210 bytes, 2-byte aligned.
struct BlockQ6_K {
  static constexpr DType kType = DType::kQ6_K;
  static constexpr int kElems = 256, kBytes = 210, kItems = 8;
  static constexpr int kAlign = 2;
  static constexpr bool kHalves = true, kHasB = false;
  ELI_HD static void item(const uint8_t* b, int s, WItem& it) {
    const int hf = s >> 2, g = s & 3;
    const float d = ld_f16(b + 208);
    const uint32_t sc = ld_u16(b + 192 + 8 * hf + 2 * g);
    it.a[0] = d * static_cast<float>(static_cast<int8_t>(sc & 0xffu));
    it.a[1] = d * static_cast<float>(static_cast<int8_t>(sc >> 8));
    it.b[0] = it.b[1] = 0.f;
    const uint8_t* ql = b + 64 * hf + 32 * (g & 1);
    const uint8_t* qh = b + 128 + 32 * hf;
    const int lshift = 4 * (g >> 1), hshift = 2 * g;
ELI_UNROLL
    for (int i = 0; i < 8; ++i) {
      const uint32_t lo = (ld_u32_a2(ql + 4 * i) >> lshift) & 0x0f0f0f0fu;
      const uint32_t hi = ((ld_u32_a2(qh + 4 * i) >> hshift) & 0x03030303u) << 4;
      it.q[i] = static_cast<int32_t>(vsub4(lo | hi, 0x20202020u));
    }
  }
};

// Q2_K: u8 scales[16] (low nibble scale, high nibble min) | u8 qs[64] | fp16 d | fp16 dmin. Item
// s = 4 hf + j: element l (0..31) is bits 2j..2j+1 of qs[32 hf + l]; half h of the item uses
// scales[2 s + h]: w = d (sc & 15) q - dmin (sc >> 4). 84 bytes, 4-byte aligned.
struct BlockQ2_K {
  static constexpr DType kType = DType::kQ2_K;
  static constexpr int kElems = 256, kBytes = 84, kItems = 8;
  static constexpr int kAlign = 4;
  static constexpr bool kHalves = true, kHasB = true;
  ELI_HD static void item(const uint8_t* b, int s, WItem& it) {
    const uint32_t dd = ld_u32(b + 80);
    const float d = f16_bits_to_f32(dd & 0xffffu), dmin = f16_bits_to_f32(dd >> 16);
    const uint32_t sc = ld_u16(b + 2 * s);
ELI_UNROLL
    for (int h = 0; h < 2; ++h) {
      const uint32_t v = (sc >> (8 * h)) & 0xffu;
      it.a[h] = d * static_cast<float>(v & 0x0fu);
      it.b[h] = -(dmin * static_cast<float>(v >> 4));
    }
    const int shift = 2 * (s & 3);
    const uint8_t* qs = b + 16 + 32 * (s >> 2);
ELI_UNROLL
    for (int i = 0; i < 8; ++i) it.q[i] = static_cast<int32_t>((ld_u32(qs + 4 * i) >> shift) & 0x03030303u);
  }
};

// Q3_K: u8 hmask[32] | u8 qs[64] | u8 scales[12] (16 packed 6-bit scales) | fp16 d. Item s = 4 hf + j:
// element l is bits 2j..2j+1 of qs[32 hf + l], minus 4 where bit s of hmask[l] is clear; half h
// uses scale 2 s + h (stored + 32): w = d (scale - 32) q. 110 bytes, 2-byte aligned.
struct BlockQ3_K {
  static constexpr DType kType = DType::kQ3_K;
  static constexpr int kElems = 256, kBytes = 110, kItems = 8;
  static constexpr int kAlign = 2;
  static constexpr bool kHalves = true, kHasB = false;
  // Scale i (0..15): low 4 bits from scales[i % 8] (low nibble for i < 8, high for i >= 8), top
  // 2 bits from scales[8 + i % 4] >> 2 (i / 4).
  ELI_HD static int scale(const uint8_t* sc, int i) {
    const uint32_t lo = (ld_u8(sc + (i & 7)) >> (4 * (i >> 3))) & 0x0fu;
    const uint32_t hi = (ld_u8(sc + 8 + (i & 3)) >> (2 * (i >> 2))) & 0x03u;
    return static_cast<int>(lo | (hi << 4)) - 32;
  }
  ELI_HD static void item(const uint8_t* b, int s, WItem& it) {
    const float d = ld_f16(b + 108);
    it.a[0] = d * static_cast<float>(scale(b + 96, 2 * s));
    it.a[1] = d * static_cast<float>(scale(b + 96, 2 * s + 1));
    it.b[0] = it.b[1] = 0.f;
    const int shift = 2 * (s & 3);
    const uint8_t* qs = b + 32 + 32 * (s >> 2);
ELI_UNROLL
    for (int i = 0; i < 8; ++i) {
      const uint32_t q2 = (ld_u32_a2(qs + 4 * i) >> shift) & 0x03030303u;
      const uint32_t hb = ((ld_u32_a2(b + 4 * i) >> s) & 0x01010101u) << 2;  // 4 where the bit is set
      it.q[i] = static_cast<int32_t>(vsub4(q2 | hb, 0x04040404u));
    }
  }
};

// The 16 non-linear levels of IQ4_NL / IQ4_XS as int8 bytes (entry e in byte e % 4 of word e / 4):
// -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113.
constexpr uint32_t kIq4T0 = 0xBFAD9881u, kIq4T1 = 0xF6EADDCFu, kIq4T2 = 0x26190D01u, kIq4T3 = 0x71594535u;

// IQ4_NL: fp16 d | u8 qs[16] (nibbles as Q4_0); w = d * level[nibble]. 18 bytes, 2-byte aligned.
struct BlockIQ4_NL {
  static constexpr DType kType = DType::kIQ4_NL;
  static constexpr int kElems = 32, kBytes = 18, kItems = 1;
  static constexpr int kAlign = 2;
  static constexpr bool kHalves = false, kHasB = false;
  ELI_HD static void item(const uint8_t* b, int /*s*/, WItem& it) {
    it.a[0] = it.a[1] = ld_f16(b);
    it.b[0] = it.b[1] = 0.f;
ELI_UNROLL
    for (int i = 0; i < 4; ++i) {
      const uint32_t w = ld_u32_a2(b + 2 + 4 * i);
      it.q[i] = static_cast<int32_t>(lut16(w & 0x0f0f0f0fu, kIq4T0, kIq4T1, kIq4T2, kIq4T3));
      it.q[i + 4] = static_cast<int32_t>(lut16((w >> 4) & 0x0f0f0f0fu, kIq4T0, kIq4T1, kIq4T2, kIq4T3));
    }
  }
};

// IQ4_XS: fp16 d | u16 scales_h | u8 scales_l[4] | u8 qs[128]; sub-block s: 6-bit scale
// ls = ((scales_l[s/2] >> 4 (s%2)) & 15) | (((scales_h >> 2s) & 3) << 4), w = d (ls - 32) level[q],
// nibbles of qs[16 s ..] as Q4_0. 136 bytes, 8-byte aligned.
struct BlockIQ4_XS {
  static constexpr DType kType = DType::kIQ4_XS;
  static constexpr int kElems = 256, kBytes = 136, kItems = 8;
  static constexpr int kAlign = 8;
  static constexpr bool kHalves = false, kHasB = false;
  ELI_HD static void item(const uint8_t* b, int s, WItem& it) {
    const uint32_t h = ld_u32(b);
    const uint32_t ls = ((ld_u8(b + 4 + (s >> 1)) >> (4 * (s & 1))) & 0x0fu) | (((h >> (16 + 2 * s)) & 3u) << 4);
    it.a[0] = it.a[1] = f16_bits_to_f32(h & 0xffffu) * static_cast<float>(static_cast<int>(ls) - 32);
    it.b[0] = it.b[1] = 0.f;
    uint32_t w[4];
    ld_words8(b + 8 + 16 * s, w[0], w[1]);
    ld_words8(b + 16 + 16 * s, w[2], w[3]);
ELI_UNROLL
    for (int i = 0; i < 4; ++i) {
      it.q[i] = static_cast<int32_t>(lut16(w[i] & 0x0f0f0f0fu, kIq4T0, kIq4T1, kIq4T2, kIq4T3));
      it.q[i + 4] = static_cast<int32_t>(lut16((w[i] >> 4) & 0x0f0f0f0fu, kIq4T0, kIq4T1, kIq4T2, kIq4T3));
    }
  }
};

// The weight value of element e (0..31) of an item (the GEMM's dequantization; tests).
ELI_HD float item_value(const WItem& it, int e) {
  const int q = static_cast<int8_t>(static_cast<uint32_t>(it.q[e >> 2]) >> (8 * (e & 3)));
  return it.a[e >> 4] * static_cast<float>(q) + it.b[e >> 4];
}

// sum over the item of w * x for an activation block (x ~= dx * xq, sx = dx * sum(xq)): exact
// integer dot products, then the scales.
template <class B>
ELI_HD float item_dot(const WItem& it, const int32_t (&xq)[8], float dx, float sx) {
  if (!B::kHalves) {
    int sum = 0;
ELI_UNROLL
    for (int i = 0; i < 8; ++i) sum = dp4a(it.q[i], xq[i], sum);
    float r = it.a[0] * (dx * static_cast<float>(sum));
    if (B::kHasB) r = fmaf(it.b[0], sx, r);
    return r;
  } else {
    int s0 = 0, s1 = 0;
ELI_UNROLL
    for (int i = 0; i < 4; ++i) {
      s0 = dp4a(it.q[i], xq[i], s0);
      s1 = dp4a(it.q[i + 4], xq[i + 4], s1);
    }
    float r = it.a[0] * static_cast<float>(s0) + it.a[1] * static_cast<float>(s1);
    if (B::kHasB) {
      int u0 = 0, u1 = 0;
ELI_UNROLL
      for (int i = 0; i < 4; ++i) {
        u0 = dp4a(0x01010101, xq[i], u0);
        u1 = dp4a(0x01010101, xq[i + 4], u1);
      }
      r = fmaf(it.b[0], static_cast<float>(u0), fmaf(it.b[1], static_cast<float>(u1), r));
    }
    return dx * r;
  }
}

// Calls f(Block{}) for the decoder of dtype; returns false for a dtype without one.
template <class F>
bool visit_block(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kQ8_0: f(BlockQ8_0{}); return true;
    case DType::kQ4_0: f(BlockQ4_0{}); return true;
    case DType::kQ4_1: f(BlockQ4_1{}); return true;
    case DType::kQ5_0: f(BlockQ5_0{}); return true;
    case DType::kQ5_1: f(BlockQ5_1{}); return true;
    case DType::kQ4_K: f(BlockQ4_K{}); return true;
    case DType::kQ5_K: f(BlockQ5_K{}); return true;
    case DType::kQ6_K: f(BlockQ6_K{}); return true;
    case DType::kQ2_K: f(BlockQ2_K{}); return true;
    case DType::kQ3_K: f(BlockQ3_K{}); return true;
    case DType::kIQ4_NL: f(BlockIQ4_NL{}); return true;
    case DType::kIQ4_XS: f(BlockIQ4_XS{}); return true;
    default: return false;
  }
}

}  // namespace gguf
}  // namespace eli
