// kernels/cuda/sampling_kernel.cuh: the body of the Op::kSample kernel (one CTA per row). Included
// by kernels/cuda/sampling.cu, and by tests/cpp/test_sampling_emu.cc, which runs the same code on
// the CPU through a small CUDA emulator (so it includes no CUDA header itself; the includer
// provides the CUDA built-ins). Contract: kernels/sample_ops.h.
//
// Per row, over the vocab row (it stays in L2 between passes):
//  P1   one pass: finiteness (lowest bad index), max/argmax, and the log-sum-exp of the raw row
//       (per-thread online rescaling) when logprobs are wanted.
//  top-n (raw logprobs) = select_prefix by count on the raw row, before the penalties.
//  penalties in place from the row's token list (raw values saved), then P2: max/argmax again.
//  greedy: the argmax. Otherwise the filters, then one Gumbel-max draw over the survivors.
// select_prefix finds the cut of the order (z desc, id asc) at a count (top-k) or a mass (top-p):
//  level 1: a 2048-bucket histogram of s = (z - zmax) / T (32 buckets per unit, the last takes
//  everything beyond 64 units), which is monotone in z; the bucket where the count/mass crosses is
//  collected into shared memory (with everything above it, when that fits: the filtered set then
//  never leaves shared memory), sorted (bitonic) and cut exactly. If the bucket holds more than
//  kList tokens, up to three radix passes over the 32-bit order key of z narrow it; a group of more
//  than kList identical logits is cut by id with one ranked pass. Exact for counts and for masses
//  (integers, sample_mass: shared 64-bit atomics and sums give the same totals in any order), so
//  the cut is the reference's, bit for bit.
// Costs: greedy without penalties or logprobs is one pass; temperature sampling two; top-k (k up to
// a few thousand) or top-p usually three or four. Every pass reads the row once (512 KB for 128k).
// The draw computes noise only for survivors whose key could still win: a token needs its 64-bit
// hash unless s + kSampleGumbelMax is below the thread's best key, and its two logs only if
// s + sample_gumbel_bound(hash) is not (on real logits nearly every token stops there). A row-wide
// draw (temperature or min-p only, or a nucleus larger than the list) hashes most of the row.
//
// Invariants: blockDim.x is a multiple of 32 in [32, 1024]; every __syncthreads is reached by all
// threads (all control flow around them is uniform over the block); no allocation, no host
// synchronisation (CUDA-graph capturable); logits are read with plain loads (never the
// non-coherent path) because the kernel writes them.
#pragma once

#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/sample_math.h"
#include "kernels/sample_ops.h"

// The emulation test compiles this body into another namespace (its host copy of the kernel must
// not collide with the CUDA kernel's host stub).
#ifndef ELI_SAMPLE_KERNEL_NS
#define ELI_SAMPLE_KERNEL_NS sample_kernel
#endif

namespace eli {
namespace ELI_SAMPLE_KERNEL_NS {

constexpr int kBuckets = 2048;        // histogram buckets (level 1 and 11-bit radix digits)
constexpr int kList = 4096;           // candidates held in shared memory
constexpr float kBucketsPerUnit = 32.0f;
constexpr unsigned kFull = 0xffffffffu;

// A cut of the order (z desc, id asc): keeps (z, id) iff it comes no later than (z, id) of the cut.
struct Cut {
  float z;
  int32_t id;
};
__device__ __forceinline__ Cut keep_all() { return Cut{-INFINITY, INT_MAX}; }
__device__ __forceinline__ bool in_cut(float z, int32_t id, Cut c) { return z > c.z || (z == c.z && id <= c.id); }

struct Smem {
  union {
    struct {
      uint32_t cnt[kBuckets];
      unsigned long long mass[kBuckets];  // sample_mass sums
    } h;
    struct {
      float z[kList];
      int32_t id[kList];
    } l;
  } u;
  float rf[32];
  int32_t ri[32];
  double rd[32];
  uint32_t ru[32];
  unsigned long long rm[32];  // mass sums
  unsigned long long rs[32];  // scans
  float bf;
  int32_t bi;
  double bd;
  uint32_t bu;
  unsigned long long bm;
  int32_t pick_bucket;
  uint32_t pick_before, pick_in, pick_total;
  unsigned long long pick_mass_before;
  int32_t list_n;
  int32_t rank_id;
  uint32_t wcnt[2][32];
  float tok_raw;
};

__device__ __forceinline__ int lane_id() { return static_cast<int>(threadIdx.x & 31u); }
__device__ __forceinline__ int warp_id() { return static_cast<int>(threadIdx.x >> 5); }
__device__ __forceinline__ int n_warps() { return static_cast<int>(blockDim.x >> 5); }

// Order key of z, ascending with z descending (-0 and +0 share one key).
__device__ __forceinline__ uint32_t dkey(float z) {
  uint32_t b = __float_as_uint(z);
  if (b == 0x80000000u) b = 0u;
  const uint32_t ok = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return ~ok;
}
__device__ __forceinline__ float from_dkey(uint32_t d) {
  const uint32_t ok = ~d;
  return __uint_as_float((ok & 0x80000000u) ? (ok & 0x7fffffffu) : ~ok);
}

__device__ __forceinline__ int bucket_of(float s) {
  const float d = sample_fmul(-s, kBucketsPerUnit);
  return d >= static_cast<float>(kBuckets - 1) ? kBuckets - 1 : static_cast<int>(d);
}

using Mass = unsigned long long;  // sample_mass and its sums
static_assert((kBuckets - 1) / kBucketsPerUnit > -kSampleMassCut, "the overflow bucket must have no mass");

// ---- block-wide reductions (every thread gets the result) ----------------------------------------

struct ArgMax {
  float v;
  int32_t id;
};

__device__ __forceinline__ void warp_argmax(float& v, int32_t& id) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, v, o);
    const int32_t oi = __shfl_xor_sync(kFull, id, o);
    if (sample_before(ov, oi, v, id)) {
      v = ov;
      id = oi;
    }
  }
}

__device__ ArgMax block_argmax(Smem& sm, float v, int32_t id) {
  warp_argmax(v, id);
  if (lane_id() == 0) {
    sm.rf[warp_id()] = v;
    sm.ri[warp_id()] = id;
  }
  __syncthreads();
  if (warp_id() == 0) {
    const bool ok = lane_id() < n_warps();
    v = ok ? sm.rf[lane_id()] : -INFINITY;
    id = ok ? sm.ri[lane_id()] : INT_MAX;
    warp_argmax(v, id);
    if (lane_id() == 0) {
      sm.bf = v;
      sm.bi = id;
    }
  }
  __syncthreads();
  return ArgMax{sm.bf, sm.bi};
}

__device__ double block_sum_double(Smem& sm, double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  if (lane_id() == 0) sm.rd[warp_id()] = v;
  __syncthreads();
  if (warp_id() == 0) {
    v = lane_id() < n_warps() ? sm.rd[lane_id()] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    if (lane_id() == 0) sm.bd = v;
  }
  __syncthreads();
  return sm.bd;
}

__device__ Mass block_sum_mass(Smem& sm, Mass v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  if (lane_id() == 0) sm.rm[warp_id()] = v;
  __syncthreads();
  if (warp_id() == 0) {
    v = lane_id() < n_warps() ? sm.rm[lane_id()] : 0ull;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    if (lane_id() == 0) sm.bm = v;
  }
  __syncthreads();
  return sm.bm;
}

__device__ uint32_t block_sum_u32(Smem& sm, uint32_t v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  if (lane_id() == 0) sm.ru[warp_id()] = v;
  __syncthreads();
  if (warp_id() == 0) {
    v = lane_id() < n_warps() ? sm.ru[lane_id()] : 0u;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    if (lane_id() == 0) sm.bu = v;
  }
  __syncthreads();
  return sm.bu;
}

__device__ int32_t block_min_i32(Smem& sm, int32_t v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const int32_t w = __shfl_xor_sync(kFull, v, o);
    v = w < v ? w : v;
  }
  if (lane_id() == 0) sm.ri[warp_id()] = v;
  __syncthreads();
  if (warp_id() == 0) {
    v = lane_id() < n_warps() ? sm.ri[lane_id()] : INT_MAX;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const int32_t w = __shfl_xor_sync(kFull, v, o);
      v = w < v ? w : v;
    }
    if (lane_id() == 0) sm.bi = v;
  }
  __syncthreads();
  return sm.bi;
}

// Exclusive prefix sum over the threads in thread order.
__device__ Mass block_exclusive_scan(Smem& sm, Mass v) {
  Mass x = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const Mass t = __shfl_up_sync(kFull, x, o);
    if (lane_id() >= o) x += t;
  }
  Mass e = __shfl_up_sync(kFull, x, 1);
  if (lane_id() == 0) e = 0;
  if (lane_id() == 31) sm.rs[warp_id()] = x;
  __syncthreads();
  if (warp_id() == 0) {
    Mass y = lane_id() < n_warps() ? sm.rs[lane_id()] : 0ull;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const Mass t = __shfl_up_sync(kFull, y, o);
      if (lane_id() >= o) y += t;
    }
    if (lane_id() < n_warps()) sm.rs[lane_id()] = y;
  }
  __syncthreads();
  const Mass base = warp_id() > 0 ? sm.rs[warp_id() - 1] : 0ull;
  __syncthreads();  // sm.rs is reused by the next scan
  return base + e;
}

// ---- row traversal ---------------------------------------------------------------------------------

// Calls f(id, z) for every element of the row; each thread visits its ids in increasing order.
// kLoadsInFlight 16-byte loads are issued before any of them is used: a pass over a 128k-vocab row
// is ~31 loads per thread, and one at a time it is a chain of L2 round trips (latency, not
// bandwidth, at one CTA per row), which made the greedy sampler ~20 us at batch 1.
constexpr int kLoadsInFlight = 4;
template <typename F>
__device__ __forceinline__ void for_each_elem(const float* x, int32_t V, F&& f) {
  int32_t start = 0;
  if ((reinterpret_cast<uintptr_t>(x) & 15u) == 0) {
    const int32_t n4 = V >> 2;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const int32_t bd = static_cast<int32_t>(blockDim.x);
    int32_t i = static_cast<int32_t>(threadIdx.x);
    for (; i + (kLoadsInFlight - 1) * bd < n4; i += kLoadsInFlight * bd) {
      float4 v[kLoadsInFlight];
#pragma unroll
      for (int u = 0; u < kLoadsInFlight; ++u) v[u] = x4[i + u * bd];
#pragma unroll
      for (int u = 0; u < kLoadsInFlight; ++u) {
        const int32_t b = 4 * (i + u * bd);
        f(b, v[u].x);
        f(b + 1, v[u].y);
        f(b + 2, v[u].z);
        f(b + 3, v[u].w);
      }
    }
    for (; i < n4; i += bd) {
      const float4 v = x4[i];
      f(4 * i, v.x);
      f(4 * i + 1, v.y);
      f(4 * i + 2, v.z);
      f(4 * i + 3, v.w);
    }
    start = n4 * 4;
  }
  for (int32_t i = start + static_cast<int32_t>(threadIdx.x); i < V; i += static_cast<int32_t>(blockDim.x)) f(i, x[i]);
}

__device__ ArgMax row_argmax(Smem& sm, const float* x, int32_t V) {
  float m = -INFINITY;
  int32_t am = INT_MAX;
  for_each_elem(x, V, [&](int32_t i, float z) {
    if (z > m) {
      m = z;
      am = i;
    }
  });
  return block_argmax(sm, m, am);
}

// ---- candidate list in shared memory -----------------------------------------------------------------

// Collects the tokens with cls(z, id) == 1 into the list (unordered); with want_above, returns the
// mass of the tokens with cls == 2. Returns the list size (<= kList).
template <typename Cls>
__device__ int32_t collect(Smem& sm, const float* x, int32_t V, Cls cls, bool want_above, float zmax, float inv_t,
                           Mass* above) {
  __syncthreads();  // the list aliases the histogram
  if (threadIdx.x == 0) sm.list_n = 0;
  __syncthreads();
  Mass sum = 0;
  for_each_elem(x, V, [&](int32_t i, float z) {
    const int c = cls(z, i);
    if (c == 1) {
      const int32_t p = atomicAdd(&sm.list_n, 1);
      if (p < kList) {
        sm.u.l.z[p] = z;
        sm.u.l.id[p] = i;
      }
    } else if (c == 2 && want_above) {
      sum += sample_mass(sample_scaled(z, zmax, inv_t));
    }
  });
  if (want_above) {
    *above = block_sum_mass(sm, sum);
  } else {
    __syncthreads();
  }
  const int32_t n = sm.list_n;
  return n < kList ? n : kList;
}

// Sorts list[0, n) by (z desc, id asc) (bitonic over the next power of two, padded).
__device__ void sort_list(Smem& sm, int32_t n) {
  int32_t p2 = 1;
  while (p2 < n) p2 <<= 1;
  for (int32_t i = n + static_cast<int32_t>(threadIdx.x); i < p2; i += static_cast<int32_t>(blockDim.x)) {
    sm.u.l.z[i] = -INFINITY;
    sm.u.l.id[i] = INT_MAX;
  }
  __syncthreads();
  for (int32_t k = 2; k <= p2; k <<= 1) {
    for (int32_t j = k >> 1; j > 0; j >>= 1) {
      for (int32_t i = static_cast<int32_t>(threadIdx.x); i < p2; i += static_cast<int32_t>(blockDim.x)) {
        const int32_t l = i ^ j;
        if (l > i) {
          const float zi = sm.u.l.z[i], zl = sm.u.l.z[l];
          const int32_t ii = sm.u.l.id[i], il = sm.u.l.id[l];
          const bool first_half = (i & k) == 0;  // this run is sorted best-first
          if (first_half == sample_before(zl, il, zi, ii)) {
            sm.u.l.z[i] = zl;
            sm.u.l.z[l] = zi;
            sm.u.l.id[i] = il;
            sm.u.l.id[l] = ii;
          }
        }
      }
      __syncthreads();
    }
  }
}

// Mass of the list[0, n).
__device__ Mass list_mass(Smem& sm, int32_t n, float zmax, float inv_t) {
  Mass local = 0;
  for (int32_t i = static_cast<int32_t>(threadIdx.x); i < n; i += static_cast<int32_t>(blockDim.x)) {
    local += sample_mass(sample_scaled(sm.u.l.z[i], zmax, inv_t));
  }
  return block_sum_mass(sm, local);
}

// First index i of the sorted list[0, n) with above + sum_{j <= i} mass_j >= target; n - 1 if none.
__device__ int32_t list_mass_cut(Smem& sm, int32_t n, float zmax, float inv_t, Mass above, Mass target) {
  const int32_t per = (n + static_cast<int32_t>(blockDim.x) - 1) / static_cast<int32_t>(blockDim.x);
  const int32_t lo = static_cast<int32_t>(threadIdx.x) * per;
  const int32_t hi = lo + per < n ? lo + per : n;
  Mass local = 0;
  for (int32_t i = lo; i < hi; ++i) local += sample_mass(sample_scaled(sm.u.l.z[i], zmax, inv_t));
  Mass cum = above + block_exclusive_scan(sm, local);
  int32_t first = INT_MAX;
  for (int32_t i = lo; i < hi; ++i) {
    cum += sample_mass(sample_scaled(sm.u.l.z[i], zmax, inv_t));
    if (cum >= target) {
      first = i;
      break;
    }
  }
  first = block_min_i32(sm, first);
  return first == INT_MAX ? n - 1 : first;
}

// ---- selection -------------------------------------------------------------------------------------------

// Picks, among nb histogram buckets, the first one where the running count reaches need_cnt
// (by_mass false) or base_mass + running mass reaches target (by_mass true); if none does, the last
// non-empty one. Warp 0 scans; results in sm.pick_*; ends with a barrier.
__device__ void scan_pick(Smem& sm, int nb, bool by_mass, uint32_t need_cnt, Mass target, Mass base_mass) {
  if (warp_id() == 0) {
    const int lane = lane_id();
    const int per = nb / 32;
    const int b0 = lane * per;
    uint32_t c = 0;
    Mass m = 0;
    for (int j = 0; j < per; ++j) {
      c += sm.u.h.cnt[b0 + j];
      if (by_mass) m += sm.u.h.mass[b0 + j];
    }
    uint32_t ci = c;
    Mass mi = m;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t tc = __shfl_up_sync(kFull, ci, o);
      const Mass tm = __shfl_up_sync(kFull, mi, o);
      if (lane >= o) {
        ci += tc;
        mi += tm;
      }
    }
    uint32_t ce = __shfl_up_sync(kFull, ci, 1);
    Mass me = __shfl_up_sync(kFull, mi, 1);
    if (lane == 0) {
      ce = 0;
      me = 0;
    }
    const uint32_t total = __shfl_sync(kFull, ci, 31);
    const bool cross = by_mass ? (base_mass + mi >= target) : (ci >= need_cnt);
    const unsigned hit = __ballot_sync(kFull, cross && c > 0);
    const unsigned nonempty = __ballot_sync(kFull, c > 0);
    const bool found = hit != 0;
    const int sel = found ? __ffs(static_cast<int>(hit)) - 1 : (nonempty ? 31 - __clz(static_cast<int>(nonempty)) : 0);
    if (lane == sel) {
      uint32_t cc = ce;
      Mass mm = me;
      int pick = b0;
      uint32_t before = ce, in = 0;
      Mass mass_before = me;
      for (int j = 0; j < per; ++j) {
        const uint32_t cj = sm.u.h.cnt[b0 + j];
        if (cj == 0) continue;
        const Mass mj = by_mass ? sm.u.h.mass[b0 + j] : 0ull;
        pick = b0 + j;
        before = cc;
        mass_before = mm;
        in = cj;
        if (found && (by_mass ? (base_mass + mm + mj >= target) : (cc + cj >= need_cnt))) break;
        cc += cj;
        mm += mj;
      }
      sm.pick_bucket = pick;
      sm.pick_before = before;
      sm.pick_in = in;
      sm.pick_mass_before = mass_before;
      sm.pick_total = total;
    }
  }
  __syncthreads();
}

struct Selected {
  Cut cut;       // the last kept token
  bool in_list;  // the list holds the kept prefix, sorted, in [0, kept)
  int32_t kept;
};

// The cut of the order (z desc, id asc) restricted to the tokens in `base`: after k tokens
// (by_mass false; k >= 1) or where the mass reaches top_p of the total mass (by_mass true).
__device__ Selected select_prefix(Smem& sm, const float* x, int32_t V, float zmax, float inv_t, Cut base, bool by_mass,
                                  uint32_t k, double top_p) {
  __syncthreads();  // the histogram aliases the list of a previous step
  for (int i = static_cast<int>(threadIdx.x); i < kBuckets; i += static_cast<int>(blockDim.x)) {
    sm.u.h.cnt[i] = 0;
    sm.u.h.mass[i] = 0;
  }
  __syncthreads();
  // Level 1: buckets of s. The overflow bucket (far tokens, often most of them; no mass) is
  // counted per thread to keep shared atomics off one hot address.
  uint32_t ovf_cnt = 0;
  Mass tot = 0;
  for_each_elem(x, V, [&](int32_t i, float z) {
    if (!in_cut(z, i, base)) return;
    const float s = sample_scaled(z, zmax, inv_t);
    const int b = bucket_of(s);
    if (b == kBuckets - 1) {
      ++ovf_cnt;
    } else {
      atomicAdd(&sm.u.h.cnt[b], 1u);
      if (by_mass) {
        const Mass w = sample_mass(s);
        if (w > 0) {
          atomicAdd(&sm.u.h.mass[b], w);
          tot += w;
        }
      }
    }
  });
  const uint32_t ovf_total = block_sum_u32(sm, ovf_cnt);  // its barriers also complete the atomics
  const Mass total = by_mass ? block_sum_mass(sm, tot) : 0ull;
  if (threadIdx.x == 0) sm.u.h.cnt[kBuckets - 1] = ovf_total;
  __syncthreads();
  const Mass target = by_mass ? sample_top_p_target(total, top_p) : 0ull;
  scan_pick(sm, kBuckets, by_mass, k, target, 0);
  const int b1 = sm.pick_bucket;
  const uint32_t members = sm.pick_total;
  const uint32_t need = by_mass ? 0u : (k < members ? k : members);
  uint32_t before = sm.pick_before, in = sm.pick_in;
  Mass mass_before = sm.pick_mass_before;
  auto bucket_at = [&](float z) { return bucket_of(sample_scaled(z, zmax, inv_t)); };

  if (before + in <= static_cast<uint32_t>(kList)) {
    // Everything up to and including the boundary bucket fits: the kept set stays in the list.
    const int32_t n = collect(
        sm, x, V, [&](float z, int32_t i) { return (in_cut(z, i, base) && bucket_at(z) <= b1) ? 1 : 0; }, false, zmax,
        inv_t, nullptr);
    sort_list(sm, n);
    int32_t kept;
    if (by_mass) {
      kept = list_mass_cut(sm, n, zmax, inv_t, 0, target) + 1;
    } else {
      kept = static_cast<int32_t>(need) < n ? static_cast<int32_t>(need) : n;
      kept = kept < 1 ? 1 : kept;
    }
    return Selected{Cut{sm.u.l.z[kept - 1], sm.u.l.id[kept - 1]}, true, kept};
  }

  // Narrow the boundary bucket with radix digits of the order key until it fits the list.
  uint32_t prefix = 0;
  int pshift = 32;  // low bits of the key not fixed by prefix (32: no prefix yet)
  if (in > static_cast<uint32_t>(kList)) {
    for (int level = 0; level < 3; ++level) {
      const int shift = level == 0 ? 21 : (level == 1 ? 10 : 0);
      const int nb = level == 2 ? 1024 : 2048;
      __syncthreads();
      for (int i = static_cast<int>(threadIdx.x); i < nb; i += static_cast<int>(blockDim.x)) {
        sm.u.h.cnt[i] = 0;
        sm.u.h.mass[i] = 0;
      }
      __syncthreads();
      for_each_elem(x, V, [&](int32_t i, float z) {
        if (!in_cut(z, i, base) || bucket_at(z) != b1) return;
        const uint32_t dk = dkey(z);
        if (pshift != 32 && (dk >> pshift) != prefix) return;
        const uint32_t d = (dk >> shift) & static_cast<uint32_t>(nb - 1);
        atomicAdd(&sm.u.h.cnt[d], 1u);
        if (by_mass) {
          const Mass w = sample_mass(sample_scaled(z, zmax, inv_t));
          if (w > 0) atomicAdd(&sm.u.h.mass[d], w);
        }
      });
      __syncthreads();
      scan_pick(sm, nb, by_mass, need - before, target, mass_before);
      const uint32_t d = static_cast<uint32_t>(sm.pick_bucket);
      prefix = (pshift == 32 ? 0u : (prefix << (pshift - shift))) | d;
      pshift = shift;
      before += sm.pick_before;
      mass_before += sm.pick_mass_before;
      in = sm.pick_in;
      if (in <= static_cast<uint32_t>(kList)) break;
    }
  }
  const uint32_t pfx = prefix;
  const int psh = pshift;
  auto region = [&](float z, int32_t i) {
    return in_cut(z, i, base) && bucket_at(z) == b1 && (psh == 32 || (dkey(z) >> psh) == pfx);
  };

  if (in <= static_cast<uint32_t>(kList)) {
    // The boundary region fits: collect it, with the exact mass of everything above it.
    Mass above = 0;
    const int32_t n = collect(
        sm, x, V,
        [&](float z, int32_t i) {
          if (!in_cut(z, i, base)) return 0;
          const int b = bucket_at(z);
          if (b < b1) return 2;
          if (b > b1) return 0;
          if (psh == 32) return 1;
          const uint32_t p = dkey(z) >> psh;
          return p == pfx ? 1 : (p < pfx ? 2 : 0);
        },
        by_mass, zmax, inv_t, &above);
    sort_list(sm, n);
    int32_t idx;
    if (by_mass) {
      idx = list_mass_cut(sm, n, zmax, inv_t, above, target);
    } else {
      idx = static_cast<int32_t>(need - before) - 1;
      idx = idx < 0 ? 0 : (idx >= n ? n - 1 : idx);
    }
    return Selected{Cut{sm.u.l.z[idx], sm.u.l.id[idx]}, false, 0};
  }

  // More than kList tokens with one identical logit: the cut is a rank among them by id.
  const float tz = from_dkey(pfx);
  uint32_t r;
  if (by_mass) {
    // The group's tokens have equal masses w: the cut is the ceil((target - before) / w)-th of them.
    const Mass w = sample_mass(sample_scaled(tz, zmax, inv_t));
    const Mass rem = target > mass_before ? target - mass_before : 1ull;
    Mass j = w > 0 ? (rem + w - 1) / w : static_cast<Mass>(in);
    j = j < 1 ? 1 : (j > in ? in : j);
    r = static_cast<uint32_t>(j) - 1u;
  } else {
    r = need - before - 1u;
  }
  if (threadIdx.x == 0) sm.rank_id = -1;
  uint32_t seen = 0;
  int buf = 0;
  for (int32_t c0 = 0; c0 < V; c0 += static_cast<int32_t>(blockDim.x)) {  // uniform trip count
    const int32_t i = c0 + static_cast<int32_t>(threadIdx.x);
    const bool m = i < V && region(x[i], i);
    const unsigned bal = __ballot_sync(kFull, m);
    if (lane_id() == 0) sm.wcnt[buf][warp_id()] = static_cast<uint32_t>(__popc(bal));
    __syncthreads();
    uint32_t off = 0, chunk = 0;
    for (int w = 0; w < n_warps(); ++w) {
      const uint32_t c = sm.wcnt[buf][w];
      off += w < warp_id() ? c : 0u;
      chunk += c;
    }
    if (m && seen + off + static_cast<uint32_t>(__popc(bal & ((1u << lane_id()) - 1u))) == r) sm.rank_id = i;
    seen += chunk;
    buf ^= 1;
    if (seen > r) break;
  }
  __syncthreads();
  const int32_t id = sm.rank_id;
  return Selected{Cut{tz, id < 0 ? INT_MAX : id}, false, 0};
}

// ---- the kernel ----------------------------------------------------------------------------------------

// Filters and draws one token of a non-greedy row (all threads return it).
__device__ int32_t sample_filtered(Smem& sm, const float* x, int32_t V, float zmax, int32_t argmax, double temperature,
                                   int32_t top_k, double top_p, double min_p, uint64_t row_key) {
  const float inv_t = sample_inv_temperature(temperature);
  const bool use_k = top_k > 1 && top_k < V;
  Cut cut = keep_all();
  bool in_list = false;
  int32_t kept = 0;
  if (use_k) {
    const Selected s = select_prefix(sm, x, V, zmax, inv_t, keep_all(), false, static_cast<uint32_t>(top_k), 0.0);
    cut = s.cut;
    in_list = s.in_list;
    kept = s.kept;
  }
  if (top_p < 1.0) {
    if (in_list) {
      const Mass total = list_mass(sm, kept, zmax, inv_t);
      const int32_t i = list_mass_cut(sm, kept, zmax, inv_t, 0, sample_top_p_target(total, top_p));
      kept = i + 1;
    } else {
      const Selected s = select_prefix(sm, x, V, zmax, inv_t, cut, true, 0u, top_p);
      cut = s.cut;
      in_list = s.in_list;
      kept = s.kept;
    }
  }
  // Every thread starts from the key of the max token, which survives every filter; a token whose
  // key cannot reach the best so far even with the largest noise (of any bits, then of its bits)
  // skips the noise: exact pruning.
  float best_key = sample_gumbel_key(sample_scaled(zmax, zmax, inv_t), row_key, argmax);
  int32_t best_id = argmax;
  auto consider = [&](float z, int32_t i) {
    const float s = sample_scaled(z, zmax, inv_t);
    if (sample_fadd(s, kSampleGumbelMax) < best_key) return;
    const uint64_t bits = sample_token_bits(row_key, i);
    if (sample_fadd(s, sample_gumbel_bound(bits)) < best_key) return;
    if (min_p > 0.0 && !sample_min_p_keeps(s, min_p)) return;
    const float key = sample_fadd(s, sample_gumbel(bits));
    if (sample_before(key, i, best_key, best_id)) {
      best_key = key;
      best_id = i;
    }
  };
  if (in_list) {
    for (int32_t i = static_cast<int32_t>(threadIdx.x); i < kept; i += static_cast<int32_t>(blockDim.x)) {
      consider(sm.u.l.z[i], sm.u.l.id[i]);
    }
  } else {
    for_each_elem(x, V, [&](int32_t i, float z) {
      if (in_cut(z, i, cut)) consider(z, i);
    });
  }
  return block_argmax(sm, best_key, best_id).id;
}

__global__ void __launch_bounds__(1024, 1) sample_rows_kernel(SampleArgs a) {
  __shared__ Smem sm;
  const int64_t row = blockIdx.x;
  const int64_t slot = a.row_slot != nullptr ? a.row_slot[row] : row;  // the request's parameters
  float* x = a.logits + row * a.logits_stride;
  const int32_t V = static_cast<int32_t>(a.vocab);
  const int32_t ts = static_cast<int32_t>(a.top_stride);
  const int n_lp = a.n_logprobs[slot];
  const bool want_lse = n_lp >= 0;

  // P1: finiteness, max/argmax and the raw log-sum-exp.
  float m = -INFINITY, lsum = 0.0f;
  int32_t am = INT_MAX, bad = INT_MAX;
  for_each_elem(x, V, [&](int32_t i, float z) {
    if (!isfinite(z)) {
      bad = i < bad ? i : bad;
      return;
    }
    if (z > m) {
      if (want_lse) lsum = lsum * expf(m - z) + 1.0f;
      m = z;
      am = i;
    } else if (want_lse) {
      lsum += expf(z - m);
    }
  });
  bad = block_min_i32(sm, bad);
  if (bad != INT_MAX) {
    if (threadIdx.x == 0) {
      a.status[row] = kSampleNonFinite;
      a.token[row] = bad;
      a.logprob[row] = x[bad];
    }
    for (int32_t j = static_cast<int32_t>(threadIdx.x); j < ts; j += static_cast<int32_t>(blockDim.x)) {
      a.top_ids[row * ts + j] = -1;
      a.top_logprobs[row * ts + j] = 0.0f;
    }
    return;  // uniform: every thread saw the same `bad`
  }
  const ArgMax raw = block_argmax(sm, m, am);
  double lse = 0.0;
  if (want_lse) {
    const double part = m == -INFINITY ? 0.0 : static_cast<double>(lsum) * exp(static_cast<double>(m) - raw.v);
    lse = static_cast<double>(raw.v) + log(block_sum_double(sm, part));
  }

  // Top-n raw logprobs.
  int32_t n_top = n_lp < V ? n_lp : V;
  n_top = n_top < ts ? n_top : ts;
  n_top = n_top > 0 ? n_top : 0;
  if (n_top > 0) {
    Selected s = select_prefix(sm, x, V, raw.v, 1.0f, keep_all(), false, static_cast<uint32_t>(n_top), 0.0);
    if (!s.in_list) {
      const Cut c = s.cut;
      const int32_t n = collect(
          sm, x, V, [&](float z, int32_t i) { return in_cut(z, i, c) ? 1 : 0; }, false, 0.0f, 1.0f, nullptr);
      sort_list(sm, n);
    }
    for (int32_t j = static_cast<int32_t>(threadIdx.x); j < n_top; j += static_cast<int32_t>(blockDim.x)) {
      a.top_ids[row * ts + j] = sm.u.l.id[j];
      a.top_logprobs[row * ts + j] = static_cast<float>(static_cast<double>(sm.u.l.z[j]) - lse);
    }
  }
  for (int32_t j = n_top + static_cast<int32_t>(threadIdx.x); j < ts; j += static_cast<int32_t>(blockDim.x)) {
    a.top_ids[row * ts + j] = -1;
    a.top_logprobs[row * ts + j] = 0.0f;
  }

  // Penalties and logit bias in place, then the token mask, then the max of the penalised row.
  const double rep = a.repetition_penalty[slot], pres = a.presence_penalty[slot], freq = a.frequency_penalty[slot];
  const bool pen_active = sample_penalties_active(rep, pres, freq);
  int32_t pb = 0, pe = 0;
  if (a.penalty_offsets != nullptr && (pen_active || a.penalty_bias != nullptr)) {
    pb = a.penalty_offsets[row];
    pe = a.penalty_offsets[row + 1];
  }
  const uint32_t* mask =
      a.allow_mask != nullptr && a.mask_row[row] >= 0 ? a.allow_mask + static_cast<int64_t>(a.mask_row[row]) * a.mask_words
                                                      : nullptr;
  float zmax = raw.v;
  int32_t argmax = raw.id;
  if (pe > pb || mask != nullptr) {
    __syncthreads();  // every read of the raw row (and of the top-n list) is done
    for (int32_t j = pb + static_cast<int32_t>(threadIdx.x); j < pe; j += static_cast<int32_t>(blockDim.x)) {
      const int32_t t = a.penalty_tokens[j];
      if (t < 0 || t >= V) continue;
      const float v = x[t];
      a.penalty_raw[j] = v;
      x[t] = sample_bias_and_penalize(v, a.penalty_bias != nullptr ? a.penalty_bias[j] : 0.0f, a.penalty_counts[j],
                                      pen_active, rep, pres, freq);
    }
    if (mask != nullptr) {
      __syncthreads();  // the listed tokens are written before the mask overwrites disallowed ones
      for (int32_t i = static_cast<int32_t>(threadIdx.x); i < V; i += static_cast<int32_t>(blockDim.x)) {
        if (!sample_mask_allows(mask, i)) x[i] = -INFINITY;
      }
    }
    __syncthreads();
    const ArgMax pen = row_argmax(sm, x, V);
    zmax = pen.v;
    argmax = pen.id;
    if (zmax == -INFINITY) {  // the mask left no token (uniform: a block-wide result)
      if (threadIdx.x == 0) {
        a.status[row] = kSampleMaskedOut;
        a.token[row] = -1;
        a.logprob[row] = 0.0f;
      }
      return;
    }
  }

  const double temperature = a.temperature[slot];
  const int32_t top_k = a.top_k[slot];
  int32_t token = argmax;
  if (!(temperature < kSampleGreedyTemperatureEps || top_k == 1)) {
    token = sample_filtered(sm, x, V, zmax, argmax, temperature, top_k, a.top_p[slot], a.min_p[slot],
                            sample_row_key(a.seed[slot], a.offset[row]));
  }

  // The token's raw logprob (its raw logit was saved if it was penalised).
  float tok_logprob = 0.0f;
  if (want_lse) {
    __syncthreads();
    if (threadIdx.x == 0) sm.tok_raw = x[token];
    __syncthreads();
    for (int32_t j = pb + static_cast<int32_t>(threadIdx.x); j < pe; j += static_cast<int32_t>(blockDim.x)) {
      if (a.penalty_tokens[j] == token) sm.tok_raw = a.penalty_raw[j];
    }
    __syncthreads();
    tok_logprob = static_cast<float>(static_cast<double>(sm.tok_raw) - lse);
  }
  if (threadIdx.x == 0) {
    a.token[row] = token;
    a.status[row] = kSampleOk;
    a.logprob[row] = tok_logprob;
  }
}

}  // namespace ELI_SAMPLE_KERNEL_NS
}  // namespace eli
