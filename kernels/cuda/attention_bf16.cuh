// kernels/cuda/attention_bf16.cuh: shared pieces of the bf16-KV-cache attention kernels
// (attention_bf16.cu: host dispatch; attention_decode.cu: split-K decode whose last CTA per query
// chunk combines the splits; attention_prefill.cu: tensor-core prefill). Internal to those three
// files.
//
// Invariants every kernel keeps (the contract of kernels/ref/attention_ref.cc):
// - query t of sequence s at position p sees kv positions [lo, hi] with
//   hi = min(p, context_len - 1, max_blocks_per_seq * block_size - 1) and
//   lo = window > 0 ? max(0, p - window + 1) : 0; an empty range gives a zero output row;
// - q head h reads kv head h / (n_heads / n_kv_heads); kv position j of sequence s lives in slot
//   block_tables[s][j / B] * B + j % B of the (NB, B, nkv, hd) cache;
// - scores are kept in the log2 domain (s * scale * log2(e)) so that exp is one ex2 instruction.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "kernels/ops.h"

namespace eli {
namespace attn {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kMaxHeadDim = 256;

// AttentionArgs flattened for the device, with the host's decisions.
struct Params {
  void* out;                   // (T, nh, hd), row stride out_stride, out_bf16 ? bf16 : f32
  const void* q;               // (T, nh, hd), row stride q_stride, q_bf16 ? bf16 : f32
  const __nv_bfloat16* k_cache;  // (NB, B, nkv, hd)
  const __nv_bfloat16* v_cache;  // (NB, B, nkv, hd)
  const int32_t* cu_seqlens;   // (S + 1)
  const int32_t* positions;    // (T)
  const int32_t* context_lens; // (S)
  const int32_t* block_tables; // (S, max_blocks_per_seq)
  int64_t q_stride, out_stride;
  int64_t max_blocks_per_seq;
  int64_t kv_cap;              // max_blocks_per_seq * block_size: kv positions a table can name
  int64_t sliding_window;
  int n_seqs, n_heads, n_kv_heads, group, head_dim, block_size;
  float scale_log2;            // scale * log2(e)
  bool q_bf16, out_bf16;
  bool q_vec;                  // q rows may be read 16 bytes (8 elements) at a time
  bool kv_vec;                 // cache rows may be read 16 bytes at a time (hd % 8 == 0, aligned)
  bool out_pair;               // out may be written two elements (4 or 8 bytes) at a time
  // Split-K decode only: partial results, n_splits per (token, head); n_splits == 1: none.
  int n_splits;
  int n_qchunks;               // grid's query-chunk count per (seq, kv head) (grid-stride beyond)
  int n_qchunks_cap;           // query chunks per (seq, kv head) the host bounds (counter index)
  int counter_slot;            // n_splits > 1: slot of the split counters (decode_counter_slot)
  bool pdl_trigger_early;      // decode: let the next PDL kernel start when this one starts
  int bs_shift;                // log2(block_size) when a power of two, else -1
  float* ws_o;                 // (T_bound, nh, n_splits, hd) unnormalised partial outputs
  float* ws_m;                 // (T_bound, nh, n_splits) running max (log2 domain)
  float* ws_l;                 // (T_bound, nh, n_splits) softmax denominators
  int64_t ws_tokens;           // T_bound: tokens the workspace holds
};

// Visible kv range [*lo, *hi] of a query at position pos (empty when *hi < *lo). Both fit an int:
// hi <= pos and lo <= pos for any window >= 1.
__device__ __forceinline__ void kv_range(const Params& p, int64_t pos, int64_t ctx_len, int* lo, int* hi) {
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
__device__ __forceinline__ int64_t kv_offset(const Params& p, const int32_t* table, int j, int kvh) {
  const int jb = j / p.block_size;
  const int64_t slot = static_cast<int64_t>(table[jb]) * p.block_size + (j - jb * p.block_size);
  return (slot * p.n_kv_heads + kvh) * p.head_dim;
}

__device__ __forceinline__ float load_q(const Params& p, int64_t t, int h, int d) {
  const int64_t i = t * p.q_stride + static_cast<int64_t>(h) * p.head_dim + d;
  return p.q_bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p.q)[i]) : static_cast<const float*>(p.q)[i];
}

__device__ __forceinline__ void store_out(const Params& p, int64_t t, int h, int d, float v) {
  const int64_t i = t * p.out_stride + static_cast<int64_t>(h) * p.head_dim + d;
  if (p.out_bf16) {
    static_cast<__nv_bfloat16*>(p.out)[i] = __float2bfloat16_rn(v);
  } else {
    static_cast<float*>(p.out)[i] = v;
  }
}

// Two adjacent elements d, d + 1 (d even); paired store when allowed.
__device__ __forceinline__ void store_out2(const Params& p, int64_t t, int h, int d, float v0, float v1) {
  if (p.out_pair && d + 1 < p.head_dim) {
    const int64_t i = t * p.out_stride + static_cast<int64_t>(h) * p.head_dim + d;
    if (p.out_bf16) {
      *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(p.out) + i) = __floats2bfloat162_rn(v0, v1);
    } else {
      *reinterpret_cast<float2*>(static_cast<float*>(p.out) + i) = make_float2(v0, v1);
    }
    return;
  }
  if (d < p.head_dim) store_out(p, t, h, d, v0);
  if (d + 1 < p.head_dim) store_out(p, t, h, d + 1, v1);
}

// 2^x in one instruction (ex2.approx(-inf) = +0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// 8 bf16 packed in a uint4 -> 8 floats.
__device__ __forceinline__ void unpack8(const uint4& u, float* f) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// 16 bytes global -> shared; src_bytes == 0 writes zeros and reads nothing.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most n of this thread's most recent cp.async groups are pending.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// Kernels with more than 48 KiB of dynamic shared memory must opt in, once per device.
void allow_dynamic_smem(const void* kernel, size_t bytes, std::atomic<uint64_t>* done_devices);

// Launchers (attention_decode.cu, attention_prefill.cu); p is complete except what they choose.
// Decode: queries per (seq, kv head) are processed in chunks of qmax (4 or 8) query heads x tokens.
inline int decode_qmax(int64_t queries_per_kv_head) { return queries_per_kv_head <= 4 ? 4 : 8; }
// Split-K needs an arrival counter per query chunk: n_splits > 1 requires a counter slot
// (decode_counter_slot) and n_seqs * n_kv_heads * n_qchunks_cap <= kDecodeSlotCounters; the host
// runs one split otherwise.
constexpr int64_t kDecodeSlotCounters = 8192;
// The counter slot of a workspace on the current device, least recently used first (-1: none).
int decode_counter_slot(const void* workspace);
// One kernel, grid (n_splits, nkv * n_qchunks, n_seqs); with n_splits > 1 the partials go to the
// workspace and the last CTA of each query chunk to finish combines them into out.
void launch_decode(const Params& p, int qmax, cudaStream_t stream);
// CTAs of the decode kernel launch_decode would pick that fit on one SM at once.
int decode_ctas_per_sm(const Params& p, int qmax);
// Prefill: q_tiles = grid's tiles of 64 query rows per sequence (grid-stride beyond).
void launch_prefill(const Params& p, int64_t q_tiles, cudaStream_t stream);

}  // namespace attn
}  // namespace eli
