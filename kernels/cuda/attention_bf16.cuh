// kernels/cuda/attention_bf16.cuh: shared pieces of the 16-bit-KV-cache attention kernels, bf16
// or f16 (IEEE half) caches (attention_bf16.cu: host dispatch; attention_decode*.cu{,h}: split-K
// decode whose last CTA per query chunk combines the splits; attention_prefill*.cu{,h}: tensor-core
// prefill). Internal to those files.
//
// Every kernel, launcher and Params<T> is a template on the cache's element type T
// (__nv_bfloat16 or __half), whose per-type pieces live in HalfTraits<T>; exactly those two are
// instantiated, with the same kernel variants and launch configurations each (the bf16 code is
// what it was before f16 existed). q and out are f32 or T (never the other 16-bit type: the host
// refuses that).
//
// Invariants every kernel keeps (the contract of kernels/ref/attention_ref.cc):
// - query t of sequence s at position p sees kv positions [lo, hi] with
//   hi = min(p, context_len - 1, max_blocks_per_seq * block_size - 1) and
//   lo = window > 0 ? max(0, p - window + 1) : 0; an empty range gives a zero output row;
// - q head h reads kv head h / (n_heads / n_kv_heads); kv position j of sequence s lives in slot
//   block_tables[s][j / B] * B + j % B of the (NB, B, nkv, hd) cache;
// - scores are kept in the log2 domain (s * scale * log2(e)) so that exp is one ex2 instruction;
// - arithmetic is f32 (accumulators, softmax); only tensor-core operands (prefill's Q, K, V and
//   P) are T.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "kernels/ops.h"

namespace eli {
namespace attn {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kMaxHeadDim = 256;

// AttentionArgs flattened for the device, with the host's decisions; T is the cache's element type.
template <typename T>
struct Params {
  void* out;                   // (tokens, nh, hd), row stride out_stride, out_half ? T : f32
  const void* q;               // (tokens, nh, hd), row stride q_stride, q_half ? T : f32
  const T* k_cache;            // (NB, B, nkv, hd)
  const T* v_cache;            // (NB, B, nkv, hd)
  const int32_t* cu_seqlens;   // (S + 1)
  const int32_t* positions;    // (tokens)
  const int32_t* context_lens; // (S)
  const int32_t* block_tables; // (S, max_blocks_per_seq)
  int64_t q_stride, out_stride;
  int64_t max_blocks_per_seq;
  int64_t kv_cap;              // max_blocks_per_seq * block_size: kv positions a table can name
  int64_t sliding_window;
  int n_seqs, n_heads, n_kv_heads, group, head_dim, block_size;
  float scale_log2;            // scale * log2(e)
  bool q_half, out_half;       // q / out stored as T (the cache's type), else f32
  bool q_vec;                  // q rows may be read 16 bytes (8 elements) at a time
  bool kv_vec;                 // cache rows may be read 16 bytes at a time (hd % 8 == 0, aligned)
  bool out_pair;               // out may be written two elements (4 or 8 bytes) at a time
  // Split-K decode only: partial results, n_splits per (token, head); n_splits == 1: none.
  int n_splits;
  int n_qchunks;               // grid's query-chunk count per (seq, kv head) (grid-stride beyond)
  int n_qchunks_cap;           // query chunks per (seq, kv head) the host bounds (counter index)
  int counter_slot;            // n_splits > 1: slot of the split counters (decode_counter_slot)
  bool pdl_trigger_early;      // decode: let the next PDL kernel start when this one starts
  // > 0: a mixed batch split between the two kernels: sequences with at most decode_q_max queries
  // are the decode kernel's, the others the prefill kernel's (each skips the other's); 0: one
  // kernel takes every sequence.
  int decode_q_max;
  int bs_shift;                // log2(block_size) when a power of two, else -1
  float* ws_o;                 // (T_bound, nh, n_splits, hd) unnormalised partial outputs
  float* ws_m;                 // (T_bound, nh, n_splits) running max (log2 domain)
  float* ws_l;                 // (T_bound, nh, n_splits) softmax denominators
  int64_t ws_tokens;           // T_bound: tokens the workspace holds
  // A compressed cache (decode only, attention_decode_kernel.cuh with KV = int8_t / __nv_fp8_e4m3):
  // k_cache / v_cache then point at its bytes, and these at its (NB, B, nkv) f32 scales.
  const float* k_scale;
  const float* v_scale;
};

// Visible kv range [*lo, *hi] of a query at position pos (empty when *hi < *lo). Both fit an int:
// hi <= pos and lo <= pos for any window >= 1.
template <typename T>
__device__ __forceinline__ void kv_range(const Params<T>& p, int64_t pos, int64_t ctx_len, int* lo, int* hi) {
  int64_t h = pos;
  if (h > ctx_len - 1) h = ctx_len - 1;
  if (h > p.kv_cap - 1) h = p.kv_cap - 1;
  if (h < -1) h = -1;
  int64_t l = 0;
  if (p.sliding_window > 0 && pos - p.sliding_window + 1 > 0) l = pos - p.sliding_window + 1;
  *lo = static_cast<int>(l);
  *hi = static_cast<int>(h);
}

// Element offset of (kv position j >= 0, kv head kvh, dim 0) in the cache, through a sequence's
// block table row.
template <typename T>
__device__ __forceinline__ int64_t kv_offset(const Params<T>& p, const int32_t* table, int j, int kvh) {
  const int jb = j / p.block_size;
  const int64_t slot = static_cast<int64_t>(table[jb]) * p.block_size + (j - jb * p.block_size);
  return (slot * p.n_kv_heads + kvh) * p.head_dim;
}

// The per-type pieces of a 16-bit cache element type T: conversions of one element, of two
// packed in a uint32 (element 0 in the low half) and of eight packed in a uint4, the raw bits of
// one element, and the tensor-core product d += a (16x16, row) * b (16x8, col) with T inputs and
// f32 accumulators (mma.sync m16n8k16).
template <typename T>
struct HalfTraits;

template <>
struct HalfTraits<__nv_bfloat16> {
  static __device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }
  static __device__ __forceinline__ unsigned short bits(__nv_bfloat16 v) { return __bfloat16_as_ushort(v); }
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
  // bf16 -> f32 is a shift: two ALU ops per pair.
  static __device__ __forceinline__ void unpack8(const uint4& u, float* f) {
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      f[2 * i] = __uint_as_float(w[i] << 16);
      f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
  static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <>
struct HalfTraits<__half> {
  static __device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half from_float(float v) { return __float2half_rn(v); }
  static __device__ __forceinline__ unsigned short bits(__half v) { return __half_as_ushort(v); }
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
  static __device__ __forceinline__ void unpack8(const uint4& u, float* f) {
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 v = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
      f[2 * i] = v.x;
      f[2 * i + 1] = v.y;
    }
  }
  static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// q[t, h, d] as float (q is f32 or T).
template <typename T>
__device__ __forceinline__ float load_q(const Params<T>& p, int64_t t, int h, int d) {
  const int64_t i = t * p.q_stride + static_cast<int64_t>(h) * p.head_dim + d;
  return p.q_half ? HalfTraits<T>::to_float(static_cast<const T*>(p.q)[i]) : static_cast<const float*>(p.q)[i];
}

template <typename T>
__device__ __forceinline__ void store_out(const Params<T>& p, int64_t t, int h, int d, float v) {
  const int64_t i = t * p.out_stride + static_cast<int64_t>(h) * p.head_dim + d;
  if (p.out_half) {
    static_cast<T*>(p.out)[i] = HalfTraits<T>::from_float(v);
  } else {
    static_cast<float*>(p.out)[i] = v;
  }
}

// Two adjacent elements d, d + 1 (d even); paired store when allowed.
template <typename T>
__device__ __forceinline__ void store_out2(const Params<T>& p, int64_t t, int h, int d, float v0, float v1) {
  if (p.out_pair && d + 1 < p.head_dim) {
    const int64_t i = t * p.out_stride + static_cast<int64_t>(h) * p.head_dim + d;
    if (p.out_half) {
      *reinterpret_cast<uint32_t*>(static_cast<T*>(p.out) + i) = HalfTraits<T>::pack2(v0, v1);
    } else {
      *reinterpret_cast<float2*>(static_cast<float*>(p.out) + i) = make_float2(v0, v1);
    }
    return;
  }
  if (d < p.head_dim) store_out<T>(p, t, h, d, v0);
  if (d + 1 < p.head_dim) store_out<T>(p, t, h, d + 1, v1);
}

// 8 cache elements from dim d0 (zeros past head_dim), element by element, packed as in memory.
template <typename T>
__device__ __forceinline__ uint4 load_kv8_scalar(const T* p, int d0, int hd) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int d = d0 + 2 * i;
    const uint32_t lo = d < hd ? HalfTraits<T>::bits(p[2 * i]) : 0u;
    const uint32_t hi = d + 1 < hd ? HalfTraits<T>::bits(p[2 * i + 1]) : 0u;
    w[i] = lo | (hi << 16);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// 2^x in one instruction (ex2.approx(-inf) = +0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// 16 bytes global -> shared; src_bytes == 0 writes zeros and reads nothing.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(src_bytes) : "memory");
}
// 8 / 4 bytes global -> shared (through L1); src_bytes == 0 writes zeros and reads nothing.
__device__ __forceinline__ void cp_async8(void* dst, const void* src, int src_bytes) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(d), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src, int src_bytes) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(d), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most n of this thread's most recent cp.async groups are pending.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// Kernels with more than 48 KiB of dynamic shared memory must opt in, once per device.
void allow_dynamic_smem(const void* kernel, size_t bytes, std::atomic<uint64_t>* done_devices);

// Launchers (attention_decode.cu, attention_prefill_kernel.cuh); p is complete except what they choose.
// Decode: queries per (seq, kv head) are processed in chunks of qmax (4 or 8) query heads x tokens.
inline int decode_qmax(int64_t queries_per_kv_head) { return queries_per_kv_head <= 4 ? 4 : 8; }
// Split-K needs an arrival counter per query chunk: n_splits > 1 requires a counter slot
// (decode_counter_slot) and n_seqs * n_kv_heads * n_qchunks_cap <= kDecodeSlotCounters; the host
// runs one split otherwise.
constexpr int64_t kDecodeSlotCounters = 8192;
// The counter slot of a workspace on the current device, least recently used first (-1: none).
int decode_counter_slot(const void* workspace);
// One kernel, grid (n_splits, nkv * n_qchunks, n_seqs); with n_splits > 1 the partials go to the
// workspace and the last CTA of each query chunk to finish combines them into out. T is the cache
// type (instantiated for __nv_bfloat16 and __half in attention_decode.cu, its kernels per head-dim
// layout in attention_decode_<type>_<layout>.cu). KV: the stored element type, T (a 16-bit cache)
// or int8_t / __nv_fp8_e4m3 (a compressed cache read with p.k_scale / p.v_scale; T = bf16 then, the
// type of a 16-bit q / out; 16-byte layouts only).
template <typename T, typename KV = T>
void launch_decode(const Params<T>& p, int qmax, cudaStream_t stream);
// CTAs of the decode kernel launch_decode<T, KV> would pick that fit on one SM at once.
template <typename T, typename KV = T>
int decode_ctas_per_sm(const Params<T>& p, int qmax);
// Prefill: q_tiles = grid's tiles of 64 query rows per sequence (grid-stride beyond); T as above
// (instantiated in attention_prefill_bf16.cu and attention_prefill_f16.cu).
template <typename T>
void launch_prefill(const Params<T>& p, int64_t q_tiles, cudaStream_t stream);

}  // namespace attn
}  // namespace eli
