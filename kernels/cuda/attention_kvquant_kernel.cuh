// kernels/cuda/attention_kvquant_kernel.cuh: paged attention over a compressed KV cache (int8 or
// fp8 e4m3 values, one f32 scale per (slot, kv head) row: kernels/cuda/kv_quant.cuh), for decode
// and prefill alike. The cache is dequantized in registers as it is read, never into a copy.
//
// One warp per (query token, q head); a CTA holds kWarps consecutive q heads of one token (the
// heads of one kv group read the same K/V rows, so the CTA's warps share them through L1). The
// warp walks its visible kv range [lo, hi] in tiles of 32 rows with an online softmax in the log2
// domain:
// - scores: lane r of the tile owns row r: the dot of q (f32 in shared memory, already times
//   scale * log2 e) with the row's hd stored values (16-byte loads when hd % 16 == 0, 4-byte when
//   hd % 4 == 0), times the
//   row's K scale;
// - p = exp2(score - m); V: each lane owns 4 consecutive dims per 128 (4 lane + 128 i + c, one
//   4-byte load; dims lane + 32 i when head_dim % 4 != 0) and adds p_r * v_scale_r * V[r][d] for
//   the tile's rows (p and the row taken from lane r by shuffle), so V reads are coalesced.
// Any head_dim <= 256 (8 dims per lane), any block size, GQA / MQA, sliding windows; q and out f32,
// bf16 or f16 (kinds 0 / 1 / 2). Masking is the reference's (ref_kernels.h). An empty range writes
// zeros; a NaN scale (a row written from non-finite values) makes the output NaN, as the reference.
// Instantiated once per cache type in attention_kvquant_<type>.cu (fast to compile on 2 cores).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/kv_quant.cuh"
#include "kernels/ops.h"

namespace eli {
namespace attn_kvq {

constexpr int kWarps = 4;
constexpr int kMaxHeadDim = 256;
constexpr int kDimsPerLane = kMaxHeadDim / 32;
constexpr unsigned kFull = 0xffffffffu;

struct Params {
  void* out;
  const void* q;
  const void* k_cache;          // (NB, B, nkv, hd) of C
  const void* v_cache;
  const float* k_scale;         // (NB, B, nkv)
  const float* v_scale;
  const int32_t* cu_seqlens;    // (S + 1)
  const int32_t* positions;     // (T)
  const int32_t* context_lens;  // (S)
  const int32_t* block_tables;  // (S, max_blocks)
  int64_t q_stride, out_stride, max_blocks, kv_cap, window;
  int n_seqs, n_heads, n_kv_heads, group, head_dim, block_size;
  int q_kind, out_kind;         // 0 f32, 1 bf16, 2 f16
  float scale_log2;             // scale * log2(e)
};

__device__ __forceinline__ float load_act(const void* p, int kind, int64_t i) {
  if (kind == 1) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  if (kind == 2) return __half2float(static_cast<const __half*>(p)[i]);
  return static_cast<const float*>(p)[i];
}
__device__ __forceinline__ void store_act(void* p, int kind, int64_t i, float v) {
  if (kind == 1) {
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  } else if (kind == 2) {
    static_cast<__half*>(p)[i] = __float2half_rn(v);
  } else {
    static_cast<float*>(p)[i] = v;
  }
}

template <typename C>
__device__ __forceinline__ float dec(uint8_t b) {
  C c;
  *reinterpret_cast<uint8_t*>(&c) = b;
  return cuda::KvQuant<C>::decode(c);
}

template <typename C>
__device__ void attend_one(const Params& p, int s, int64_t t, int h, int lane, float* qs);

template <typename C>
__global__ void __launch_bounds__(kWarps * 32) attention_kvquant_kernel(Params p) {
  __shared__ float qs[kWarps][kMaxHeadDim];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int s = blockIdx.z;
  const int h = static_cast<int>(blockIdx.y) * kWarps + warp;
  if (h >= p.n_heads) return;  // warp-uniform
  const int64_t t_end = p.cu_seqlens[s + 1];
  for (int64_t t = p.cu_seqlens[s] + blockIdx.x; t < t_end; t += gridDim.x) {
    __syncwarp();  // the previous query's reads of qs are done
    attend_one<C>(p, s, t, h, lane, qs[warp]);
  }
}

// One query (token t of sequence s, q head h) by one warp; qs: the warp's hd floats of shared memory.
template <typename C>
__device__ void attend_one(const Params& p, int s, int64_t t, int h, int lane, float* qs) {
  const int64_t pos = p.positions[t];
  int64_t hi = pos;
  if (hi > p.context_lens[s] - 1) hi = p.context_lens[s] - 1;
  if (hi > p.kv_cap - 1) hi = p.kv_cap - 1;
  int64_t lo = 0;
  if (p.window > 0 && pos - p.window + 1 > 0) lo = pos - p.window + 1;
  const int hd = p.head_dim;
  const int64_t out0 = t * p.out_stride + static_cast<int64_t>(h) * hd;
  if (hi < lo) {
    for (int d = lane; d < hd; d += 32) store_act(p.out, p.out_kind, out0 + d, 0.0f);
    return;
  }
  const int kvh = h / p.group;
  const int64_t q0 = t * p.q_stride + static_cast<int64_t>(h) * hd;
  for (int d = lane; d < hd; d += 32) qs[d] = load_act(p.q, p.q_kind, q0 + d) * p.scale_log2;
  __syncwarp();
  const int32_t* table = p.block_tables + static_cast<int64_t>(s) * p.max_blocks;
  const uint8_t* kc = static_cast<const uint8_t*>(p.k_cache);
  const uint8_t* vc = static_cast<const uint8_t*>(p.v_cache);
  const bool vec4 = (hd & 3) == 0;
  float m = -INFINITY, l = 0.0f, acc[kDimsPerLane];
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) acc[i] = 0.0f;
  for (int64_t j0 = lo; j0 <= hi; j0 += 32) {
    const int64_t j = j0 + lane;
    const bool valid = j <= hi;
    int64_t row = 0;
    float score = -INFINITY, vsc = 0.0f;
    if (valid) {
      const int64_t jb = j / p.block_size;
      row = (static_cast<int64_t>(__ldg(table + jb)) * p.block_size + (j - jb * p.block_size)) * p.n_kv_heads + kvh;
      const uint8_t* kr = kc + row * hd;
      float dot = 0.0f;
      if ((hd & 15) == 0) {  // 16-byte loads
        for (int d = 0; d < hd; d += 16) {
          const uint4 u = __ldg(reinterpret_cast<const uint4*>(kr + d));
          const uint32_t w4[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            const float* qd = qs + d + 4 * k;
            dot += qd[0] * dec<C>(w4[k] & 0xff) + qd[1] * dec<C>((w4[k] >> 8) & 0xff) +
                   qd[2] * dec<C>((w4[k] >> 16) & 0xff) + qd[3] * dec<C>(w4[k] >> 24);
          }
        }
      } else if (vec4) {
        for (int d = 0; d < hd; d += 4) {
          const uint32_t w = __ldg(reinterpret_cast<const unsigned int*>(kr + d));
          dot += qs[d] * dec<C>(w & 0xff) + qs[d + 1] * dec<C>((w >> 8) & 0xff) +
                 qs[d + 2] * dec<C>((w >> 16) & 0xff) + qs[d + 3] * dec<C>(w >> 24);
        }
      } else {
        for (int d = 0; d < hd; ++d) dot += qs[d] * dec<C>(__ldg(kr + d));
      }
      score = dot * __ldg(p.k_scale + row);
      vsc = __ldg(p.v_scale + row);
    }
    float mt = score;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mt = fmaxf(mt, __shfl_xor_sync(kFull, mt, o));
    const float m_new = fmaxf(m, mt);
    const float alpha = exp2f(m - m_new);  // m == -inf at the first tile: 0
    const float pr = valid ? exp2f(score - m_new) : 0.0f;
    float ps = pr;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(kFull, ps, o);
    l = l * alpha + ps;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) acc[i] *= alpha;
    const float w = pr * vsc;
    const int n_rows = static_cast<int>(hi - j0 + 1 < 32 ? hi - j0 + 1 : 32);
    for (int r = 0; r < n_rows; ++r) {
      const float wr = __shfl_sync(kFull, w, r);
      const int64_t rr = __shfl_sync(kFull, row, r);
      const uint8_t* vr = vc + rr * hd;
      if (vec4) {  // lane owns dims 4 lane + 128 i + c: one 4-byte load per 128 dims
#pragma unroll
        for (int i = 0; i < kDimsPerLane / 4; ++i) {
          const int d = 4 * lane + 128 * i;
          if (d < hd) {
            const uint32_t w4 = __ldg(reinterpret_cast<const unsigned int*>(vr + d));
            acc[4 * i] += wr * dec<C>(w4 & 0xff);
            acc[4 * i + 1] += wr * dec<C>((w4 >> 8) & 0xff);
            acc[4 * i + 2] += wr * dec<C>((w4 >> 16) & 0xff);
            acc[4 * i + 3] += wr * dec<C>(w4 >> 24);
          }
        }
      } else {  // lane owns dims lane + 32 i
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) {
          const int d = lane + 32 * i;
          if (d < hd) acc[i] += wr * dec<C>(__ldg(vr + d));
        }
      }
    }
    m = m_new;
  }
  const float inv = l > 0.0f ? 1.0f / l : (l == 0.0f ? 0.0f : l);  // NaN stays NaN
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) {
    const int d = vec4 ? 4 * lane + 128 * (i / 4) + (i % 4) : lane + 32 * i;
    if (d < hd) store_act(p.out, p.out_kind, out0 + d, acc[i] * inv);
  }
}

// The host path for any batch over an int8 (kI8) or fp8 (kF8E4M3) cache (attention_kvquant.cu):
// checks the arguments, then launches launch<C>.
void attention_kvquant_simple(const AttentionArgs& a, const ExecContext& ctx, DType cache);

// Grid (q_blocks, ceil(nh / kWarps), n_seqs): block x takes queries x, x + q_blocks, ... of its
// sequence (so any q_blocks >= 1 is correct; max_query_len makes it one pass). Instantiated only
// in attention_kvquant_<type>.cu (ELI_KVQ_INSTANTIATE); the extern declarations keep every other
// translation unit from compiling the kernel again.
template <typename C>
void launch(const Params& p, int64_t q_blocks, cudaStream_t stream) {
  const unsigned groups = static_cast<unsigned>((p.n_heads + kWarps - 1) / kWarps);
  const dim3 grid(static_cast<unsigned>(q_blocks), groups, static_cast<unsigned>(p.n_seqs));
  attention_kvquant_kernel<C><<<grid, kWarps * 32, 0, stream>>>(p);
}
extern template void launch<int8_t>(const Params& p, int64_t q_blocks, cudaStream_t stream);
extern template void launch<__nv_fp8_e4m3>(const Params& p, int64_t q_blocks, cudaStream_t stream);

}  // namespace attn_kvq
}  // namespace eli

// The instantiation of launch<C> for one cache type (one per translation unit).
#define ELI_KVQ_INSTANTIATE(C) \
  template void eli::attn_kvq::launch<C>(const eli::attn_kvq::Params&, int64_t, cudaStream_t);
