// kernels/cuda/attention_decode_kernel.cuh: split-K ("flash-decoding") attention for decode-like batches
// (few queries per sequence) over the 16-bit (bf16 or f16) paged KV cache, in ONE kernel: the last
// CTA of each query chunk to finish combines the splits. The element type T is a template
// parameter (HalfTraits<T>, attention_bf16.cuh): both types run the same code and launch
// configurations; only the conversions of K, V, q and out differ (all arithmetic is f32).
//
// One CTA of 8 warps per (split, kv head, query chunk, sequence): the chunk holds up to QMAX
// queries = (token, q head) pairs of that kv head's group in that sequence, so each K/V row is
// read from memory once for all of them. The CTA's kv range is the union of its queries' visible
// ranges, cut into n_splits equal contiguous pieces (blockIdx.x picks one, possibly empty).
// - Warps work independently: the piece is cut into tiles of TR rows, warp w takes tiles w,
//   w + 8, ...; each warp keeps its own online softmax (m, l) and accumulators. A row is read by
//   TPR lanes, each owning 8 dims (16 bytes of T); a pass covers RP = 32 / TPR rows, a tile is
//   kPasses passes. K and V stream through a per-warp ring of S (2 or 3) cp.async stages (16-byte copies,
//   zero-filled past the piece or head_dim) in which every lane reads back only the chunks it
//   copied itself: the loop has no CTA barrier at all, one __syncwarp per tile. A tile's cache
//   offsets go through the block table once per row (lane L computes row L's, the others take
//   theirs by shuffle).
// - Scores: per row and query, 8 FMAs per lane, then a reduce-scatter over the TPR lanes of the
//   row (QMAX - 1 + log2(TPR / QMAX) shuffles for all QMAX queries): afterwards lane c of a row
//   holds the full score of query c / (TPR / QMAX). Softmax per tile: max over the warp's rows
//   (xor shuffles across rows), exp2 in the log2 domain, p (and the rescale factor alpha) to a
//   small per-warp shared buffer (double-buffered by tile parity), from which every lane reads
//   the p of its row for all queries to accumulate p * V into QMAX x 8 f32 registers.
// - The end merges the warps (and the rows of a pass) through shared memory (the ring's memory)
//   and writes either the output (n_splits == 1: acc / l, zero when l == 0) or the split's
//   (acc, m, l) to the workspace. Then, with n_splits > 1, every CTA fences its writes and bumps
//   the chunk's arrival counter; the CTA that arrives last (sees n_splits - 1) resets the counter
//   to zero and combines all splits (reading the workspace through L2) into out.
// - Split counters: one module-global array (attention_decode.cu; zero when its module loads, its
//   device address passed to every launch) of kCounterSlots slots of kDecodeSlotCounters
//   counters; every launch leaves each counter it uses at zero, so no memset is ever needed, in or
//   out of CUDA graphs, and the workspace may hold anything. The launcher gives each workspace
//   (per device) its own slot, least recently used first: launches that may run concurrently must
//   use different workspaces (as they must anyway, for the partials), and at most kCounterSlots
//   workspaces may be in such concurrent use per device.
// - Rows past the range, masked queries and dims >= head_dim contribute exact zeros (their ring
//   slots are zero-filled, never loaded), so no NaN from uninitialised memory can leak in.
// TPR = 8 / 16 / 32 serve head_dim <= 64 / 128 / 256 with 16-byte loads (hd % 8 == 0 and an
// aligned cache); anything else runs TPR = 32 with element loads (slow but correct; its ring is
// always 2 deep: a deeper one hides nothing when the loads are synchronous).
// Launched with programmatic dependent launch (kernels/cuda/pdl.cuh): a CTA reads the batch's
// lengths (uploaded before the step) while the previous kernel drains, then waits for it before it
// touches q or the cache.
//
// Compressed cache (KV = int8_t / __nv_fp8_e4m3, kv_cache_dtype int8 / fp8): the same kernel with
// 8 bytes (8 dims) per lane chunk (8-byte cp.async into the ring's 16-byte slots), VEC layouts
// only. The tile's rows' K and V scales (one f32 per (slot, kv head), kernels/cuda/kv_quant.cuh) go
// through the same ring, copied by lane L for row L into a small per-warp array and read by the
// row's lanes after a __syncwarp; the score of a row is its dot with the stored values times its K
// scale, and the p the V accumulation uses is p times the row's V scale (the softmax sum is not).
// Dequantization happens in registers: no dequantized copy of the cache exists.
//
// Build layout: this header is included only by the instance files attention_decode_<type>_<layout>.cu,
// each of which instantiates one (cache type, head-dim layout) pair with ELI_DECODE_INSTANTIATE
// (4 or 2 kernels: QMAX 4 and 8, ring depth 2 and 3), so the kernels compile in parallel and an
// edit of one layout's dispatch rebuilds little; attention_decode.cu holds the split counters and
// the dispatch (kernels/cuda/attention_decode.cuh declares what it calls).
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "eli/error.h"
#include "kernels/cuda/attention_bf16.cuh"
#include "kernels/cuda/attention_decode.cuh"
#include "kernels/cuda/kv_quant.cuh"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda_tuning_knobs.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace attn {
namespace decode {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kPasses = 4;   // K (and V) chunks per lane per tile
// Tiles in each warp's ring (the template parameter S): S - 1 tiles are in flight while one is
// consumed. 3 (8 KiB in flight per warp) when it costs no resident CTAs: on the H100 (228 KiB per
// SM) two CTAs of 96 KiB fit, and a batch-256 decode step's attention took 0.28 ms less of its
// 8 ms than with 2 (bench/results/2026-11-27_session6.md); else 2 (sm_86 / sm_89 allow 99 KiB per
// CTA, A100 / Orin two CTAs of 64 KiB but one of 96). The kAttnStages knob forces one.
constexpr int kMinStages = 2, kMaxStages = 3;
constexpr unsigned kFull = 0xffffffffu;

// Dynamic shared memory: per warp a ring of S tiles x kPasses x (K, V) x 32 lanes of 16 bytes
// (32 KiB per stage in all); after the loop reused for the merge of the warps, (kWarps, RP, QMAX,
// DW) floats = 8 KiB * QMAX.
constexpr int ring_per_warp(int stages) { return stages * kPasses * 2 * 32; }  // uint4's
constexpr size_t smem_bytes(int stages) {
  return static_cast<size_t>(kWarps) * ring_per_warp(stages) * sizeof(uint4);
}

constexpr int ilog2(int v) { return v <= 1 ? 0 : 1 + ilog2(v / 2); }

// Element offset of kv position j >= 0 (its slot's first element) in the cache, through a
// sequence's block table row: kv_offset without the head, with a shift for power-of-two block
// sizes and, where a block's (B, nkv, hd) fit an int, one 32 x 32 -> 64-bit multiply.
struct RowAddr {
  int block_elems, slot_elems;  // B * nkv * hd, nkv * hd (when narrow)
  int head_off;                 // kvh * hd + the lane's first dim
  bool narrow;
};
template <typename T>
__device__ __forceinline__ int64_t row_offset(const Params<T>& p, const RowAddr& a, const int32_t* table, int j) {
  int jb, jo;
  if (p.bs_shift >= 0) {
    jb = j >> p.bs_shift;
    jo = j & (p.block_size - 1);
  } else {
    jb = j / p.block_size;
    jo = j - jb * p.block_size;
  }
  const int blk = __ldg(table + jb);
  if (a.narrow) return static_cast<int64_t>(blk) * a.block_elems + jo * a.slot_elems;
  return (static_cast<int64_t>(blk) * p.block_size + jo) * (static_cast<int64_t>(p.n_kv_heads) * p.head_dim);
}

// q[t, h, d0 .. d0 + 8) as floats (zeros past head_dim).
template <typename T>
__device__ __forceinline__ void load_q8(const Params<T>& p, int64_t t, int h, int d0, float* f) {
  if (p.q_vec && d0 < p.head_dim) {  // head_dim % 8 == 0 and 16-byte aligned rows: the chunk is whole
    const int64_t i = t * p.q_stride + static_cast<int64_t>(h) * p.head_dim + d0;
    if (p.q_half) {
      HalfTraits<T>::unpack8(*reinterpret_cast<const uint4*>(static_cast<const T*>(p.q) + i), f);
    } else {
      const float4* v = reinterpret_cast<const float4*>(static_cast<const float*>(p.q) + i);
      const float4 a = v[0], b = v[1];
      f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    }
    return;
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) f[e] = d0 + e < p.head_dim ? load_q<T>(p, t, h, d0 + e) : 0.f;
}

// v[q] holds this lane's partial dot product of query q with its row; the TPR lanes of a row
// (aligned groups of TPR lanes) together hold the full ones. Returns the full dot product of
// query c / (TPR / QMAX) for lane c of the row: halving steps (each lane keeps half of its
// values, receives its partner's other half) then a plain xor reduction over the replicas.
template <int TPR, int QMAX>
__device__ __forceinline__ float reduce_scatter(float (&v)[QMAX], int lane) {
  constexpr int kSteps = ilog2(QMAX);
#pragma unroll
  for (int st = 0; st < kSteps; ++st) {
    const int n = QMAX >> st;
    const int off = (TPR / 2) >> st;
    const bool up = (lane & off) != 0;
#pragma unroll
    for (int i = 0; i < n / 2; ++i) {
      const float send = up ? v[i] : v[i + n / 2];
      const float keep = up ? v[i + n / 2] : v[i];
      v[i] = keep + __shfl_xor_sync(kFull, send, off);
    }
  }
#pragma unroll
  for (int off = TPR / QMAX / 2; off > 0; off >>= 1) v[0] += __shfl_xor_sync(kFull, v[0], off);
  return v[0];
}

// 8 stored values of a compressed cache (the low 8 bytes of u) as floats, unscaled.
template <typename KV>
__device__ __forceinline__ void unpack8_quant(const uint4& u, float* f) {
  if constexpr (std::is_same<KV, int8_t>::value) {
    const uint32_t w[2] = {u.x, u.y};
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = static_cast<float>(static_cast<int8_t>((w[i / 4] >> (8 * (i % 4))) & 0xffu));
  } else {
    __nv_fp8x4_e4m3 a, b;
    a.__x = u.x;
    b.__x = u.y;
    const float4 fa = static_cast<float4>(a), fb = static_cast<float4>(b);
    f[0] = fa.x, f[1] = fa.y, f[2] = fa.z, f[3] = fa.w, f[4] = fb.x, f[5] = fb.y, f[6] = fb.z, f[7] = fb.w;
  }
}

template <typename T, int TPR, bool VEC, int QMAX, int S, typename KV>
__global__ void __launch_bounds__(kThreads, QMAX <= 4 ? 2 : 1)
    decode_kernel(const Params<T> p, unsigned int* const split_counters) {
  using H = HalfTraits<T>;
  constexpr bool kQuant = cuda::KvQuant<KV>::kQuant;
  static_assert(!kQuant || VEC, "a compressed cache runs the 16-byte layouts only");
  constexpr int RP = 32 / TPR;          // kv rows per pass (per warp)
  constexpr int TR = RP * kPasses;      // kv rows per warp tile
  constexpr int DW = TPR * 8;           // dims covered by a row's lanes (>= head_dim)
  constexpr int REP = TPR / QMAX;       // lanes of a row holding the same query's score
  static_assert(32 % TPR == 0 && TPR >= QMAX && (QMAX & (QMAX - 1)) == 0, "layout");
  static_assert(QMAX <= kWarps && kMaxSplits == 32, "the combine: a warp per query, a lane per split");
  static_assert(sizeof(float) * kWarps * RP * QMAX * DW <= smem_bytes(S), "the merge fits the ring");
  static_assert(S >= kMinStages && S <= kMaxStages, "ring depth");
  constexpr int kScaleW = kQuant ? kWarps : 1, kScaleS = kQuant ? S : 1, kScaleR = kQuant ? TR : 1;

  extern __shared__ uint4 ring[];
  __shared__ __align__(16) float s_p[kWarps][2][kPasses * RP * QMAX];  // p per (pass, row, query)
  __shared__ __align__(16) float s_alpha[kWarps][2][QMAX];
  __shared__ float s_mw[kWarps][QMAX];         // each warp's running max
  __shared__ float s_lw[kWarps][RP * QMAX];    // each warp row-lane's softmax sum
  __shared__ float s_cw[QMAX][kMaxSplits];     // last CTA: the weight of each split
  __shared__ int s_last;
  // Compressed cache: the K and V scales of each ring stage's tile rows (per warp).
  __shared__ float s_ks[kScaleW][kScaleS][kScaleR];
  __shared__ float s_vs[kScaleW][kScaleS][kScaleR];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int r = lane / TPR, c = lane % TPR;
  const int qsel = c / REP;                    // the query whose score this lane ends up holding
  const bool rep0 = c % REP == 0;              // the first lane holding it
  uint4* const my_ring = ring + warp * ring_per_warp(S);  // [stage][pass][K, V][lane]
  const int split = blockIdx.x;
  const int kvh = blockIdx.y / p.n_qchunks;
  const int qc0 = blockIdx.y % p.n_qchunks;
  const int s = blockIdx.z;
  const int hd = p.head_dim;
  const int64_t t0 = p.cu_seqlens[s];
  const int64_t n_q = (static_cast<int64_t>(p.cu_seqlens[s + 1]) - t0) * p.group;  // (token, head) pairs
  const int64_t ctx_len = p.context_lens[s];
  const int32_t* table = p.block_tables + static_cast<int64_t>(s) * p.max_blocks_per_seq;
  const bool chunk_live = c * 8 < hd;
  RowAddr addr;
  {
    const int64_t slot_elems = static_cast<int64_t>(p.n_kv_heads) * hd;
    addr.narrow = slot_elems * p.block_size <= INT32_MAX;
    addr.block_elems = addr.narrow ? static_cast<int>(slot_elems * p.block_size) : 0;
    addr.slot_elems = addr.narrow ? static_cast<int>(slot_elems) : 0;
    addr.head_off = kvh * hd + c * 8;
  }

  // Programmatic dependent launch (kernels/cuda/pdl.cuh): the batch's lengths read above were
  // uploaded before the step's first kernel, so they are read while the previous kernel drains; q
  // and the cache rows of this step come from that kernel, so everything below waits for it.
  cuda::pdl_wait();
  if (p.pdl_trigger_early) cuda::pdl_launch_dependents();
  // A mixed batch: sequences with more queries are the prefill kernel's. (After the wait, so that
  // this kernel never completes before the one it follows.)
  if (p.decode_q_max > 0 && n_q > static_cast<int64_t>(p.decode_q_max) * p.group) return;

  for (int64_t qc = qc0; qc * QMAX < n_q; qc += p.n_qchunks) {
    // This lane's 8 dims of every query (scaled into the log2 domain), the visible range of query
    // qsel, and the union of all ranges.
    float qr[QMAX][8];
    int my_lo = 0, my_hi = -1;
    int64_t ulo = INT64_MAX, uhi = -1;
#pragma unroll
    for (int qi = 0; qi < QMAX; ++qi) {
      const int64_t gq = qc * QMAX + qi;
      int lo = 0, hi = -1;
      if (gq < n_q) {
        const int64_t t = t0 + gq / p.group;
        kv_range(p, p.positions[t], ctx_len, &lo, &hi);
        load_q8<T>(p, t, kvh * p.group + static_cast<int>(gq % p.group), c * 8, qr[qi]);
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) qr[qi][e] = 0.f;
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) qr[qi][e] *= p.scale_log2;
      if (qi == qsel) {
        my_lo = lo;
        my_hi = hi;
      }
      if (hi >= lo) {
        ulo = min(ulo, static_cast<int64_t>(lo));
        uhi = max(uhi, static_cast<int64_t>(hi));
      }
    }

    // This split's piece [beg, end) of the union (an int: hi <= context_len - 1); its tiles; this
    // warp's share; the rows of the piece that query qsel sees, [vis_lo, vis_hi).
    int beg = 0, end = 0;
    if (uhi >= ulo) {
      const int64_t piece = (uhi - ulo + 1 + p.n_splits - 1) / p.n_splits;
      beg = static_cast<int>(min(ulo + split * piece, uhi + 1));
      end = static_cast<int>(min(ulo + (split + 1) * piece, uhi + 1));
    }
    const int vis_lo = max(my_lo, beg), vis_hi = min(my_hi + 1, end);
    const int n_tiles = (end - beg + TR - 1) / TR;
    const int my_tiles = n_tiles > warp ? (n_tiles - warp + kWarps - 1) / kWarps : 0;

    float acc[QMAX][8];
#pragma unroll
    for (int qi = 0; qi < QMAX; ++qi) {
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[qi][e] = 0.f;
    }
    float m = -INFINITY, l = 0.f;  // of query qsel; l over this lane's rows only

    // This lane's chunk of each row of the warp's k-th tile -> ring stage `stage` (zeros past the
    // piece or head_dim). Lane L < TR computes the cache offset of the tile's row L (-1: past the
    // piece); the lanes of pass i, row r take row i * RP + r's by shuffle.
    auto issue_tile = [&](int k, int stage) {
      const int row_base = beg + (warp + k * kWarps) * TR;
      const int jl = row_base + lane;
      const int64_t mine = lane < TR && jl < end ? row_offset(p, addr, table, jl) : -1;
      if constexpr (kQuant) {
        // Lane L < TR: row L's scales (index slot * nkv + kvh = its offset / hd + kvh).
        if (lane < TR) {
          const int64_t srow = mine >= 0 ? mine / hd + kvh : 0;
          cp_async4(&s_ks[warp][stage][lane], p.k_scale + srow, mine >= 0 ? 4 : 0);
          cp_async4(&s_vs[warp][stage][lane], p.v_scale + srow, mine >= 0 ? 4 : 0);
        }
      }
#pragma unroll
      for (int i = 0; i < kPasses; ++i) {
        const int64_t o = __shfl_sync(kFull, mine, i * RP + r);
        const bool ok = o >= 0 && chunk_live;
        const int64_t off = ok ? o + addr.head_off : 0;
        uint4* const sk = my_ring + ((stage * kPasses + i) * 2) * 32 + lane;
        uint4* const sv = sk + 32;
        if constexpr (kQuant) {  // 8 one-byte values: the low half of the slot
          cp_async8(sk, reinterpret_cast<const uint8_t*>(p.k_cache) + off, ok ? 8 : 0);
          cp_async8(sv, reinterpret_cast<const uint8_t*>(p.v_cache) + off, ok ? 8 : 0);
        } else if (VEC) {
          cp_async16(sk, p.k_cache + off, ok ? 16 : 0);
          cp_async16(sv, p.v_cache + off, ok ? 16 : 0);
        } else {
          *sk = ok ? load_kv8_scalar(p.k_cache + off, c * 8, hd) : make_uint4(0, 0, 0, 0);
          *sv = ok ? load_kv8_scalar(p.v_cache + off, c * 8, hd) : make_uint4(0, 0, 0, 0);
        }
      }
    };

    // Tile k lives in ring stage k % S. Prologue: tiles 0 .. S - 2 in flight, one commit group
    // each (empty groups past my_tiles keep the group count regular).
#pragma unroll
    for (int k = 0; k < S - 1; ++k) {
      if (k < my_tiles) issue_tile(k, k);
      cp_async_commit();
    }
    int stage = 0, refill = S - 1;  // the stage of tile k, and of tile k + S - 1
    for (int k = 0; k < my_tiles; ++k) {
      // Refill the stage this lane consumed in the previous tile, then wait for this tile's.
      if (k + S - 1 < my_tiles) issue_tile(k + S - 1, refill);
      cp_async_commit();
      cp_async_wait<S - 1>();
      if constexpr (kQuant) __syncwarp();  // the scales were copied by other lanes
      const int row0 = beg + (warp + k * kWarps) * TR + r;

      // Scores of this lane's query for the tile's rows r, r + RP, ... (log2 domain, -inf masked).
      float sc[kPasses];
#pragma unroll
      for (int i = 0; i < kPasses; ++i) {
        float kf[8];
        if constexpr (kQuant) {
          unpack8_quant<KV>(my_ring[((stage * kPasses + i) * 2) * 32 + lane], kf);
        } else {
          H::unpack8(my_ring[((stage * kPasses + i) * 2) * 32 + lane], kf);
        }
        float dot[QMAX];
#pragma unroll
        for (int qi = 0; qi < QMAX; ++qi) {
          float d = 0.f;
#pragma unroll
          for (int e = 0; e < 8; ++e) d = fmaf(qr[qi][e], kf[e], d);
          dot[qi] = d;
        }
        float full = reduce_scatter<TPR, QMAX>(dot, lane);
        if constexpr (kQuant) full *= s_ks[kQuant ? warp : 0][kQuant ? stage : 0][kQuant ? i * RP + r : 0];
        const int j = row0 + i * RP;
        sc[i] = j >= vis_lo && j < vis_hi ? full : -INFINITY;
      }

      // Online softmax of query qsel over the warp's rows of the tile.
      float tmax = sc[0];
#pragma unroll
      for (int i = 1; i < kPasses; ++i) tmax = fmaxf(tmax, sc[i]);
#pragma unroll
      for (int off = TPR; off < 32; off <<= 1) tmax = fmaxf(tmax, __shfl_xor_sync(kFull, tmax, off));
      const float m_new = fmaxf(m, tmax);
      const float base = m_new == -INFINITY ? 0.f : m_new;
      const float alpha = fast_exp2(m - base);
      float sum = 0.f;
#pragma unroll
      for (int i = 0; i < kPasses; ++i) {
        sc[i] = fast_exp2(sc[i] - base);
        sum += sc[i];
      }
      l = l * alpha + sum;
      m = m_new;
      float* const pbuf = s_p[warp][k & 1];
      if (rep0) {
#pragma unroll
        for (int i = 0; i < kPasses; ++i) {
          float pw = sc[i];  // the V rows are stored / v_scale: the weight carries the scale
          if constexpr (kQuant) pw *= s_vs[kQuant ? warp : 0][kQuant ? stage : 0][kQuant ? i * RP + r : 0];
          pbuf[(i * RP + r) * QMAX + qsel] = pw;
        }
        if (r == 0) s_alpha[warp][k & 1][qsel] = alpha;
      }
      // The buffers of this parity were last read in tile k - 2, before every lane passed the
      // __syncwarp of tile k - 1.
      __syncwarp();

      // acc = acc * alpha + p . V (rows past the piece are zero in the ring, with p = 0); the
      // rescale only when some query's max moved (rare once the first tiles are seen).
      if (__any_sync(kFull, alpha != 1.f)) {
        float al[QMAX];
#pragma unroll
        for (int qi = 0; qi < QMAX; qi += 4) {
          const float4 a4 = *reinterpret_cast<const float4*>(&s_alpha[warp][k & 1][qi]);
          al[qi] = a4.x, al[qi + 1] = a4.y, al[qi + 2] = a4.z, al[qi + 3] = a4.w;
        }
#pragma unroll
        for (int qi = 0; qi < QMAX; ++qi) {
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[qi][e] *= al[qi];
        }
      }
#pragma unroll
      for (int i = 0; i < kPasses; ++i) {
        float vf[8];
        if constexpr (kQuant) {
          unpack8_quant<KV>(my_ring[((stage * kPasses + i) * 2 + 1) * 32 + lane], vf);
        } else {
          H::unpack8(my_ring[((stage * kPasses + i) * 2 + 1) * 32 + lane], vf);
        }
        float pv[QMAX];
#pragma unroll
        for (int qi = 0; qi < QMAX; qi += 4) {
          const float4 p4 = *reinterpret_cast<const float4*>(&pbuf[(i * RP + r) * QMAX + qi]);
          pv[qi] = p4.x, pv[qi + 1] = p4.y, pv[qi + 2] = p4.z, pv[qi + 3] = p4.w;
        }
#pragma unroll
        for (int qi = 0; qi < QMAX; ++qi) {
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[qi][e] = fmaf(pv[qi], vf[e], acc[qi][e]);
        }
      }
      refill = stage;  // consumed: the next iteration refills it
      stage = stage + 1 == S ? 0 : stage + 1;
    }
    cp_async_wait<0>();
    __syncthreads();  // every warp is done with its ring: it becomes the merge area

    // Merge the warps and the row-lanes: out(q, d) = sum_w 2^(m_w - M) acc_w / sum_w 2^(m_w - M) l_w.
    float* const red = reinterpret_cast<float*>(ring);  // (kWarps, RP, QMAX, DW)
#pragma unroll
    for (int qi = 0; qi < QMAX; ++qi) {
      float4* dst = reinterpret_cast<float4*>(red + ((warp * RP + r) * QMAX + qi) * DW + c * 8);
      dst[0] = make_float4(acc[qi][0], acc[qi][1], acc[qi][2], acc[qi][3]);
      dst[1] = make_float4(acc[qi][4], acc[qi][5], acc[qi][6], acc[qi][7]);
    }
    if (rep0) {
      s_lw[warp][r * QMAX + qsel] = l;
      if (r == 0) s_mw[warp][qsel] = m;
    }
    __syncthreads();
    for (int i = tid; i < QMAX * hd; i += kThreads) {
      const int qi = i / hd, d = i % hd;
      const int64_t gq = qc * QMAX + qi;
      if (gq >= n_q) continue;
      float mx = -INFINITY;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, s_mw[w][qi]);
      float o = 0.f, den = 0.f;
      if (mx != -INFINITY) {
#pragma unroll
        for (int w = 0; w < kWarps; ++w) {
          const float mw = s_mw[w][qi];
          if (mw == -INFINITY) continue;  // a warp without visible rows (acc and l are zero)
          const float f = fast_exp2(mw - mx);
          float ow = 0.f, lw = 0.f;
#pragma unroll
          for (int rr = 0; rr < RP; ++rr) {
            ow += red[((w * RP + rr) * QMAX + qi) * DW + d];
            lw += s_lw[w][rr * QMAX + qi];
          }
          o = fmaf(f, ow, o);
          den = fmaf(f, lw, den);
        }
      }
      const int64_t t = t0 + gq / p.group;
      const int h = kvh * p.group + static_cast<int>(gq % p.group);
      if (p.n_splits == 1) {
        store_out<T>(p, t, h, d, den > 0.f ? o / den : 0.f);
      } else if (t < p.ws_tokens) {
        const int64_t idx = (t * p.n_heads + h) * p.n_splits + split;
        p.ws_o[idx * hd + d] = o;
        if (d == 0) {
          p.ws_m[idx] = mx;
          p.ws_l[idx] = den;
        }
      }
    }

    // Split-K: the last CTA of this query chunk to arrive combines the n_splits partial results.
    if (p.n_splits > 1 && qc < p.n_qchunks_cap) {
      __threadfence();  // release this CTA's partials before the arrival below
      __syncthreads();
      if (tid == 0) {
        unsigned int* ctr = split_counters + static_cast<int64_t>(p.counter_slot) * kDecodeSlotCounters +
                            (static_cast<int64_t>(s) * p.n_kv_heads + kvh) * p.n_qchunks_cap + qc;
        const bool last = atomicAdd(ctr, 1u) == static_cast<unsigned>(p.n_splits - 1);
        if (last) atomicExch(ctr, 0u);  // every split has arrived: ready for the next launch
        s_last = last;
      }
      __syncthreads();
      if (s_last) {
        __threadfence();  // acquire: the other CTAs' partials are visible (read through L2 below)
        // Warp qi (QMAX <= kWarps) weighs query qi's splits, lane sp reading split sp's (m, l): the
        // weight is 2^(m_sp - M) / sum 2^(m - M) l over the splits with l > 0 (zero otherwise).
        if (warp < QMAX) {
          const int64_t gq = qc * QMAX + warp;
          const int64_t t = t0 + gq / p.group;
          float mv = -INFINITY, lv = 0.f;
          if (gq < n_q && t < p.ws_tokens && lane < p.n_splits) {
            const int64_t idx = (t * p.n_heads + kvh * p.group + static_cast<int>(gq % p.group)) * p.n_splits + lane;
            mv = __ldcg(p.ws_m + idx);
            lv = __ldcg(p.ws_l + idx);
          }
          if (!(lv > 0.f)) mv = -INFINITY;
          float mx = mv;
#pragma unroll
          for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, off));
          const float w = lv > 0.f ? fast_exp2(mv - mx) : 0.f;
          float den = w * lv;
#pragma unroll
          for (int off = 16; off > 0; off >>= 1) den += __shfl_xor_sync(kFull, den, off);
          s_cw[warp][lane] = den > 0.f ? w / den : 0.f;
        }
        __syncthreads();
        for (int i = tid; i < QMAX * hd; i += kThreads) {
          const int qi = i / hd, d = i % hd;
          const int64_t gq = qc * QMAX + qi;
          if (gq >= n_q) continue;
          const int64_t t = t0 + gq / p.group;
          if (t >= p.ws_tokens) continue;
          const int h = kvh * p.group + static_cast<int>(gq % p.group);
          const float* src = p.ws_o + (t * p.n_heads + h) * p.n_splits * hd + d;
          // Every split's value in flight at once; splits of zero weight (empty) hold zeros.
          float v[kMaxSplits];
#pragma unroll
          for (int sp = 0; sp < kMaxSplits; ++sp) v[sp] = sp < p.n_splits ? __ldcg(src + static_cast<int64_t>(sp) * hd) : 0.f;
          float o = 0.f;
#pragma unroll
          for (int sp = 0; sp < kMaxSplits; ++sp) {
            if (sp < p.n_splits) {
              const float w = s_cw[qi][sp];
              o = w != 0.f ? fmaf(w, v[sp], o) : o;
            }
          }
          store_out<T>(p, t, h, d, o);
        }
      }
    }
    __syncthreads();  // shared state (and the ring) is reused by the next query chunk
  }
}

inline int current_device() {
  int dev = 0;
  ELI_CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}

// Once per device and instantiation: the dynamic shared memory opt-in. The shared-memory carveout
// stays the driver's choice: forcing the largest one (as an earlier version did, for two CTAs per
// SM) made the SMs switch configurations between this kernel and the GEMVs around it, which cost
// more than the occupancy gained (bench/cuda_decode_step_bench.cc, the kAttnCarveout knob at 100).
template <typename T, int TPR, bool VEC, int QMAX, int S, typename KV>
void configure_t() {
  static std::atomic<uint64_t> opted{0};
  allow_dynamic_smem(reinterpret_cast<const void*>(decode_kernel<T, TPR, VEC, QMAX, S, KV>), smem_bytes(S), &opted);
}

// Resident CTAs per SM of an instantiation on the current device (0: it does not fit at all).
template <typename T, int TPR, bool VEC, int QMAX, int S, typename KV>
int occupancy_of() {
  int optin = 0;
  ELI_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, current_device()));
  cudaFuncAttributes fa{};
  ELI_CUDA_CHECK(cudaFuncGetAttributes(&fa, decode_kernel<T, TPR, VEC, QMAX, S, KV>));
  if (smem_bytes(S) + fa.sharedSizeBytes > static_cast<size_t>(optin)) return 0;
  configure_t<T, TPR, VEC, QMAX, S, KV>();
  int n = 0;
  ELI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, decode_kernel<T, TPR, VEC, QMAX, S, KV>, kThreads,
                                                               smem_bytes(S)));
  return n;
}

// The ring depth of an instantiation on the current device, and its resident CTAs per SM (both
// cached per device): the kAttnStages knob if set, else the deepest ring whose occupancy is the
// shallow ring's.
struct RingChoice {
  int stages = kMinStages, ctas = 1;
};
template <typename T, int TPR, bool VEC, int QMAX, typename KV>
RingChoice ring_choice() {
  static std::atomic<int> cached[64] = {};  // stages * 16 + ctas, 0: not yet
  const int dev = current_device();
  const bool cacheable = dev >= 0 && dev < 64;
  const int forced = cuda::knob(cuda::Knob::kAttnStages);
  if (cacheable && forced == 0) {
    const int c = cached[dev].load(std::memory_order_relaxed);
    if (c > 0) return RingChoice{c / 16, c % 16};
  }
  const int shallow = occupancy_of<T, TPR, VEC, QMAX, kMinStages, KV>();
  int deep = 0;  // element loads (!VEC): the shallow ring only
  if constexpr (VEC) {
    if (forced != kMinStages) deep = occupancy_of<T, TPR, VEC, QMAX, kMaxStages, KV>();
  }
  RingChoice r;
  if (deep > 0 && (forced == kMaxStages || deep >= shallow)) {
    r = RingChoice{kMaxStages, deep};
  } else {
    r = RingChoice{kMinStages, shallow > 0 ? shallow : 1};
  }
  if (cacheable && forced == 0) cached[dev].store(r.stages * 16 + std::min(r.ctas, 15), std::memory_order_relaxed);
  return r;
}

template <typename T, int TPR, bool VEC, int QMAX, int S, typename KV>
void launch_decode_s(const Params<T>& p, dim3 grid, unsigned int* counters, cudaStream_t stream) {
  configure_t<T, TPR, VEC, QMAX, S, KV>();
  cuda::apply_carveout_knob(reinterpret_cast<const void*>(decode_kernel<T, TPR, VEC, QMAX, S, KV>),
                            cuda::Knob::kAttnCarveout);
  cuda::launch_kernel(decode_kernel<T, TPR, VEC, QMAX, S, KV>, grid, dim3(kThreads), smem_bytes(S), stream,
                      cuda::pdl_enabled(), p, counters);
}

template <typename T, int TPR, bool VEC, int QMAX, typename KV>
void launch_decode_t(const Params<T>& p, dim3 grid, unsigned int* counters, cudaStream_t stream) {
  if constexpr (VEC) {
    if (ring_choice<T, TPR, VEC, QMAX, KV>().stages == kMaxStages) {
      launch_decode_s<T, TPR, VEC, QMAX, kMaxStages, KV>(p, grid, counters, stream);
      return;
    }
  }
  launch_decode_s<T, TPR, VEC, QMAX, kMinStages, KV>(p, grid, counters, stream);
}

// The entry points of one (T, layout) instantiation (attention_decode.cuh).
template <typename T, int TPR, bool VEC, typename KV>
void launch_layout(const Params<T>& p, int qmax, dim3 grid, unsigned int* counters, cudaStream_t stream) {
  if (qmax == 4) {
    launch_decode_t<T, TPR, VEC, 4, KV>(p, grid, counters, stream);
  } else {
    launch_decode_t<T, TPR, VEC, 8, KV>(p, grid, counters, stream);
  }
}

template <typename T, int TPR, bool VEC, typename KV>
int ctas_layout(int qmax) {
  return qmax == 4 ? ring_choice<T, TPR, VEC, 4, KV>().ctas : ring_choice<T, TPR, VEC, 8, KV>().ctas;
}

}  // namespace decode
}  // namespace attn
}  // namespace eli

// Explicit instantiation of one (cache type, layout): one line per instance file.
#define ELI_DECODE_INSTANTIATE(T, TPR, VEC)                                                                 \
  template void eli::attn::decode::launch_layout<T, TPR, VEC>(const eli::attn::Params<T>&, int, dim3,       \
                                                               unsigned int*, cudaStream_t);                \
  template int eli::attn::decode::ctas_layout<T, TPR, VEC>(int);

// One (q / out type T, compressed cache type KV, layout) instance: attention_decode_{i8,fp8}_*.cu.
#define ELI_DECODE_INSTANTIATE_KV(T, KV, TPR, VEC)                                                          \
  template void eli::attn::decode::launch_layout<T, TPR, VEC, KV>(const eli::attn::Params<T>&, int, dim3,   \
                                                                   unsigned int*, cudaStream_t);            \
  template int eli::attn::decode::ctas_layout<T, TPR, VEC, KV>(int);
