// kernels/ref/dequant_ref.cc: reference dequantization of the GGUF block formats, written from the
// format descriptions (one function per block type, one block at a time).
//
// Block layouts (little-endian; fp16 = IEEE half; QK_K = 256):
//   Q8_0 (34 B / 32):  fp16 d, int8 qs[32]                     y = d * q
//   Q4_0 (18 B / 32):  fp16 d, u8 qs[16]                       y[j] = d * (lo(qs[j]) - 8), y[j+16]: hi
//   Q4_1 (20 B / 32):  fp16 d, fp16 m, u8 qs[16]               y = d * q + m
//   Q5_0 (22 B / 32):  fp16 d, u32 qh, u8 qs[16]               5th bit of element j is bit j of qh
//   Q5_1 (24 B / 32):  fp16 d, fp16 m, u32 qh, u8 qs[16]
//   Q4_K (144 B / 256): fp16 d, fp16 dmin, u8 scales[12] (8 x 6-bit scale + 8 x 6-bit min), u8 qs[128]
//   Q5_K (176 B / 256): as Q4_K plus u8 qh[32] before qs (bit s of qh[l]: sub-block s, lane l)
//   Q6_K (210 B / 256): u8 ql[128], u8 qh[64], int8 scales[16], fp16 d
//   Q2_K (84 B / 256):  u8 scales[16] (lo nibble scale, hi nibble min, per 16), u8 qs[64], fp16 d,
//                       fp16 dmin; element 128h + 32s + l = (qs[32h + l] >> 2s) & 3
//   Q3_K (110 B / 256): u8 hmask[32], u8 qs[64], u8 scales[12] (16 x 6-bit, biased by 32), fp16 d;
//                       low 2 bits as Q2_K, minus 4 where bit (e / 32) of hmask[e % 32] is clear
//   IQ4_NL (18 B / 32): fp16 d, u8 qs[16]; nibbles index the non-linear table kIq4Values
//   IQ4_XS (136 B / 256): fp16 d, u16 scales_h, u8 scales_l[4], u8 qs[128]; 8 sub-blocks of 32,
//                       6-bit scale (lo nibble | 2 hi bits) - 32, nibbles as IQ4_NL per sub-block
// Products are formed in the same order as ggml / gguf-py ((d * scale) * q - (dmin * min)) so that
// results match the python reference bit for bit on targets without FMA contraction.
#include "kernels/ref/dequant_ref.h"

#include <cstring>
#include <vector>

#include "eli/error.h"
#include "kernels/ops.h"
#include "kernels/ref/float_convert.h"
#include "kernels/ref/ref_kernels.h"
#include "runtime/core/thread_pool.h"

namespace eli {
namespace {

constexpr int kQK = 32;    // elements per block of the simple types

inline float load_f16(const uint8_t* p) { return f16_to_f32(static_cast<uint16_t>(p[0] | (p[1] << 8))); }
inline uint32_t load_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

void block_q8_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

void block_q4_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0x0f) - 8);
    y[j + kQK / 2] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

void block_q4_1(const uint8_t* b, float* y) {
  const float d = load_f16(b), m = load_f16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0x0f) + m;
    y[j + kQK / 2] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

void block_q5_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const uint32_t qh = load_u32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo - 16);
    y[j + kQK / 2] = d * static_cast<float>(hi - 16);
  }
}

void block_q5_1(const uint8_t* b, float* y) {
  const float d = load_f16(b), m = load_f16(b + 2);
  const uint32_t qh = load_u32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < kQK / 2; ++j) {
    const int lo = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo) + m;
    y[j + kQK / 2] = d * static_cast<float>(hi) + m;
  }
}

// The 12 packed scale bytes of Q4_K / Q5_K hold 8 (scale, min) pairs of 6 bits each: pairs 0..3
// in the low 6 bits of bytes 0..3 (scale) and 4..7 (min); pairs 4..7 take their low 4 bits from
// bytes 8..11 (scale: low nibble, min: high nibble) and their top 2 bits from the top 2 bits of
// bytes 0..3 (scale) and 4..7 (min).
inline void k_scale_min(const uint8_t* s, int j, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

void block_q4_k(const uint8_t* b, float* y) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int c = 0; c < 4; ++c) {  // 4 chunks of 64 elements, two sub-blocks of 32 each
    int sc0, m0, sc1, m1;
    k_scale_min(scales, 2 * c, &sc0, &m0);
    k_scale_min(scales, 2 * c + 1, &sc1, &m1);
    const float d0 = d * static_cast<float>(sc0), dm0 = dmin * static_cast<float>(m0);
    const float d1 = d * static_cast<float>(sc1), dm1 = dmin * static_cast<float>(m1);
    const uint8_t* q = qs + 32 * c;
    for (int l = 0; l < 32; ++l) {
      y[64 * c + l] = d0 * static_cast<float>(q[l] & 0x0f) - dm0;
      y[64 * c + 32 + l] = d1 * static_cast<float>(q[l] >> 4) - dm1;
    }
  }
}

void block_q5_k(const uint8_t* b, float* y) {
  const float d = load_f16(b), dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int c = 0; c < 4; ++c) {
    int sc0, m0, sc1, m1;
    k_scale_min(scales, 2 * c, &sc0, &m0);
    k_scale_min(scales, 2 * c + 1, &sc1, &m1);
    const float d0 = d * static_cast<float>(sc0), dm0 = dmin * static_cast<float>(m0);
    const float d1 = d * static_cast<float>(sc1), dm1 = dmin * static_cast<float>(m1);
    const uint8_t* q = qs + 32 * c;
    for (int l = 0; l < 32; ++l) {
      const int lo = (q[l] & 0x0f) | (((qh[l] >> (2 * c)) & 1) << 4);
      const int hi = (q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
      y[64 * c + l] = d0 * static_cast<float>(lo) - dm0;
      y[64 * c + 32 + l] = d1 * static_cast<float>(hi) - dm1;
    }
  }
}

void block_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql_all = b;
  const uint8_t* qh_all = b + 128;
  const int8_t* sc_all = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_f16(b + 208);
  for (int half = 0; half < 2; ++half) {  // two halves of 128 elements
    const uint8_t* ql = ql_all + 64 * half;
    const uint8_t* qh = qh_all + 32 * half;
    const int8_t* sc = sc_all + 8 * half;
    float* out = y + 128 * half;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;  // 16 elements per scale
      const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      out[l] = (d * static_cast<float>(sc[is])) * static_cast<float>(q1);
      out[l + 32] = (d * static_cast<float>(sc[is + 2])) * static_cast<float>(q2);
      out[l + 64] = (d * static_cast<float>(sc[is + 4])) * static_cast<float>(q3);
      out[l + 96] = (d * static_cast<float>(sc[is + 6])) * static_cast<float>(q4);
    }
  }
}

void block_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  const float d = load_f16(b + 80), dmin = load_f16(b + 82);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, s = (e / 32) % 4, l = e % 32;
    const int q = (qs[32 * h + l] >> (2 * s)) & 3;
    const uint8_t sc = scales[e / 16];
    const float dl = d * static_cast<float>(sc & 0x0f), ml = dmin * static_cast<float>(sc >> 4);
    y[e] = dl * static_cast<float>(q) - ml;
  }
}

// Q3_K's 16 6-bit scales: low 4 bits from bytes 0..7 (j < 8: low nibble of byte j, else high
// nibble of byte j - 8), top 2 bits from bits 2 * (j / 4) of byte 8 + j % 4; stored biased by 32.
inline int q3_k_scale(const uint8_t* s, int j) {
  const int lo = j < 8 ? (s[j] & 0x0f) : (s[j - 8] >> 4);
  const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}

void block_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* scales = b + 96;
  const float d = load_f16(b + 108);
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, s = (e / 32) % 4, l = e % 32;
    const int lo = (qs[32 * h + l] >> (2 * s)) & 3;
    const int high_set = (hmask[l] >> (e / 32)) & 1;
    const int q = lo - (high_set ? 0 : 4);
    const float dl = d * static_cast<float>(q3_k_scale(scales, e / 16));
    y[e] = dl * static_cast<float>(q);
  }
}

void block_iq4_nl(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>(kIq4Values[qs[j] & 0x0f]);
    y[j + kQK / 2] = d * static_cast<float>(kIq4Values[qs[j] >> 4]);
  }
}

void block_iq4_xs(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const unsigned scales_h = static_cast<unsigned>(b[2] | (b[3] << 8));
  const uint8_t* scales_l = b + 4;
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 8; ++j) {
    const int lo = (scales_l[j / 2] >> (4 * (j % 2))) & 0x0f;
    const int hi = (scales_h >> (2 * j)) & 3;
    const float dl = d * static_cast<float>((lo | (hi << 4)) - 32);
    const uint8_t* q = qs + 16 * j;
    for (int l = 0; l < 16; ++l) {
      y[32 * j + l] = dl * static_cast<float>(kIq4Values[q[l] & 0x0f]);
      y[32 * j + 16 + l] = dl * static_cast<float>(kIq4Values[q[l] >> 4]);
    }
  }
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_fn(DType dtype) {
  switch (dtype) {
    case DType::kQ8_0: return block_q8_0;
    case DType::kQ4_0: return block_q4_0;
    case DType::kQ4_1: return block_q4_1;
    case DType::kQ5_0: return block_q5_0;
    case DType::kQ5_1: return block_q5_1;
    case DType::kQ4_K: return block_q4_k;
    case DType::kQ5_K: return block_q5_k;
    case DType::kQ6_K: return block_q6_k;
    case DType::kQ2_K: return block_q2_k;
    case DType::kQ3_K: return block_q3_k;
    case DType::kIQ4_NL: return block_iq4_nl;
    case DType::kIQ4_XS: return block_iq4_xs;
    default: return nullptr;
  }
}

template <DType kDType>
void dequant_kernel(const void* raw_args, const ExecContext& ctx) {
  const auto& a = *static_cast<const DequantArgs*>(raw_args);
  const DTypeInfo& info = dtype_info(kDType);
  ELI_CHECK(a.rows >= 0 && a.cols >= 0 && a.cols % info.block_elems == 0, "dequant ", info.name,
            ": cols ", a.cols, " not a multiple of ", info.block_elems);
  const int64_t row_bytes = a.cols / info.block_elems * info.block_bytes;
  const auto* in = static_cast<const uint8_t*>(a.in);
  // Grain: about 64K elements per task so small matrices stay on one thread.
  const int64_t grain = a.cols > 0 ? (65536 + a.cols - 1) / a.cols : 1;
  parallel_for(ctx.pool, a.rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) dequant_row_ref(kDType, in + r * row_bytes, a.out + r * a.cols, a.cols);
  }, grain);
}

// The whole (n, k) block matrix as f32.
std::vector<float> dequant_matrix(DType dtype, const void* w, int64_t n, int64_t k) {
  const DTypeInfo& info = dtype_info(dtype);
  ELI_CHECK_ARG(k > 0 && k % info.block_elems == 0, info.name, " matmul: k ", k,
                " must be a positive multiple of the block size ", info.block_elems);
  std::vector<float> out(static_cast<size_t>(n * k));
  const int64_t row_bytes = k / info.block_elems * info.block_bytes;
  for (int64_t r = 0; r < n; ++r)
    dequant_row_ref(dtype, static_cast<const uint8_t*>(w) + r * row_bytes, out.data() + r * k, k);
  return out;
}

template <DType kDType>
void gemv_blocks_ref(const void* raw_args, const ExecContext& ctx) {
  GemvArgs a = *static_cast<const GemvArgs*>(raw_args);
  const std::vector<float> w = dequant_matrix(kDType, a.w, a.n, a.k);
  a.w = w.data();
  gemv_ref_f32(&a, ctx);
}

template <DType kDType>
void gemm_blocks_ref(const void* raw_args, const ExecContext& ctx) {
  GemmArgs a = *static_cast<const GemmArgs*>(raw_args);
  const std::vector<float> w = dequant_matrix(kDType, a.w, a.n, a.k);
  a.w = w.data();
  gemm_ref_f32(&a, ctx);
}

template <DType kDType>
void embedding_blocks_ref(const void* raw_args, const ExecContext&) {
  const auto& a = *static_cast<const EmbeddingArgs*>(raw_args);
  const DTypeInfo& info = dtype_info(kDType);
  ELI_CHECK(a.vocab > 0 && a.hidden >= 0 && a.n_tokens >= 0 && a.hidden % info.block_elems == 0,
            "embedding ", info.name, ": bad sizes");
  const int64_t row_bytes = a.hidden / info.block_elems * info.block_bytes;
  for (int64_t t = 0; t < a.n_tokens; ++t) {
    int64_t id = a.ids[t];
    if (id < 0) id = 0;
    if (id >= a.vocab) id = a.vocab - 1;
    float* out = a.out + t * a.hidden;
    dequant_row_ref(kDType, static_cast<const uint8_t*>(a.table) + id * row_bytes, out, a.hidden);
    if (a.scale != 1.0f)
      for (int64_t j = 0; j < a.hidden; ++j) out[j] *= a.scale;
  }
}

}  // namespace

void dequant_row_ref(DType dtype, const void* in, float* out, int64_t n) {
  const auto* src = static_cast<const uint8_t*>(in);
  switch (dtype) {
    case DType::kF32: std::memcpy(out, in, static_cast<size_t>(n) * sizeof(float)); return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(static_cast<uint16_t>(src[2 * i] | (src[2 * i + 1] << 8)));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(static_cast<uint16_t>(src[2 * i] | (src[2 * i + 1] << 8)));
      return;
    default: break;
  }
  BlockFn fn = block_fn(dtype);
  ELI_CHECK(fn != nullptr, "dequant_row_ref: dtype ", dtype_name(dtype), " is not dequantizable");
  const DTypeInfo& info = dtype_info(dtype);
  ELI_CHECK(n >= 0 && n % info.block_elems == 0, "dequant_row_ref ", info.name, ": n ", n,
            " not a multiple of ", info.block_elems);
  const int64_t n_blocks = n / info.block_elems;
  for (int64_t i = 0; i < n_blocks; ++i) fn(src + i * info.block_bytes, out + i * info.block_elems);
}

KernelFn dequant_ref_kernel(DType dtype) {
  switch (dtype) {
    case DType::kQ8_0: return dequant_kernel<DType::kQ8_0>;
    case DType::kQ4_0: return dequant_kernel<DType::kQ4_0>;
    case DType::kQ4_1: return dequant_kernel<DType::kQ4_1>;
    case DType::kQ5_0: return dequant_kernel<DType::kQ5_0>;
    case DType::kQ5_1: return dequant_kernel<DType::kQ5_1>;
    case DType::kQ4_K: return dequant_kernel<DType::kQ4_K>;
    case DType::kQ5_K: return dequant_kernel<DType::kQ5_K>;
    case DType::kQ6_K: return dequant_kernel<DType::kQ6_K>;
    case DType::kQ2_K: return dequant_kernel<DType::kQ2_K>;
    case DType::kQ3_K: return dequant_kernel<DType::kQ3_K>;
    case DType::kIQ4_NL: return dequant_kernel<DType::kIQ4_NL>;
    case DType::kIQ4_XS: return dequant_kernel<DType::kIQ4_XS>;
    default: return nullptr;
  }
}

KernelFn quant_matmul_ref_kernel(Op op, DType dtype) {
  if (op != Op::kGemv && op != Op::kGemm) return nullptr;
#define ELI_QUANT_REF_CASE(D) \
  case D: return op == Op::kGemv ? static_cast<KernelFn>(gemv_blocks_ref<D>) : gemm_blocks_ref<D>;
  switch (dtype) {
    ELI_QUANT_REF_CASE(DType::kQ4_0)
    ELI_QUANT_REF_CASE(DType::kQ4_1)
    ELI_QUANT_REF_CASE(DType::kQ5_0)
    ELI_QUANT_REF_CASE(DType::kQ5_1)
    ELI_QUANT_REF_CASE(DType::kQ8_0)
    ELI_QUANT_REF_CASE(DType::kQ2_K)
    ELI_QUANT_REF_CASE(DType::kQ3_K)
    ELI_QUANT_REF_CASE(DType::kQ4_K)
    ELI_QUANT_REF_CASE(DType::kQ5_K)
    ELI_QUANT_REF_CASE(DType::kQ6_K)
    ELI_QUANT_REF_CASE(DType::kIQ4_NL)
    ELI_QUANT_REF_CASE(DType::kIQ4_XS)
    default: return nullptr;
  }
#undef ELI_QUANT_REF_CASE
}

KernelFn gguf_embedding_ref_kernel(DType dtype) {
  switch (dtype) {
    case DType::kQ4_0: return embedding_blocks_ref<DType::kQ4_0>;
    case DType::kQ4_1: return embedding_blocks_ref<DType::kQ4_1>;
    case DType::kQ5_0: return embedding_blocks_ref<DType::kQ5_0>;
    case DType::kQ5_1: return embedding_blocks_ref<DType::kQ5_1>;
    case DType::kQ8_0: return embedding_blocks_ref<DType::kQ8_0>;
    case DType::kQ2_K: return embedding_blocks_ref<DType::kQ2_K>;
    case DType::kQ3_K: return embedding_blocks_ref<DType::kQ3_K>;
    case DType::kQ4_K: return embedding_blocks_ref<DType::kQ4_K>;
    case DType::kQ5_K: return embedding_blocks_ref<DType::kQ5_K>;
    case DType::kQ6_K: return embedding_blocks_ref<DType::kQ6_K>;
    case DType::kIQ4_NL: return embedding_blocks_ref<DType::kIQ4_NL>;
    case DType::kIQ4_XS: return embedding_blocks_ref<DType::kIQ4_XS>;
    default: return nullptr;
  }
}

}  // namespace eli
