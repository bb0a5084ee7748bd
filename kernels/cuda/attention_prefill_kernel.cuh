// kernels/cuda/attention_prefill_kernel.cuh: FlashAttention-2-style prefill attention over the 16-bit
// (bf16 or f16) paged KV cache with tensor cores (mma.sync m16n8k16 bf16/f16 -> f32, ldmatrix,
// cp.async). The element type T is a template parameter (HalfTraits<T>, attention_bf16.cuh): both
// types run the same code, tiles and launch configurations; only the conversions and the mma
// instruction differ.
//
// One CTA of 4 warps per (q head, tile of 64 query rows of one sequence); warp w owns rows
// 16w..16w+15. The CTA walks the kv tiles (BN rows, aligned to multiples of BN in absolute
// position) that intersect the union of its rows' visible ranges:
// - Q is converted to T into shared memory once (zero rows past the sequence, zero dims past
//   head_dim); for head_dim <= 128 its mma A fragments then stay in registers.
// - K and V tiles are gathered row by row through the block table (any block_size; each row's
//   cache offset computed once, two tiles ahead) into a double-buffered ring with cp.async (16
//   bytes, zero-filled past the range or head_dim); rows are 16-byte-chunk XOR-swizzled
//   (chunk ^ (row & 7)) so ldmatrix is conflict-free. A cache that is not 16-byte loadable takes
//   a synchronous element path.
// - S = Q K^T (f32), scaled into the log2 domain, masked per element by each row's absolute
//   range [lo, hi] only on tiles that are not entirely visible to every row, online softmax per
//   row (quad shuffles), P converted to T in registers as the A operand of O += P V
//   (V fragments by ldmatrix.trans). A warp skips tiles none of its rows can see.
// - The end divides by the row sums (zero rows for empty ranges) and stores out (f32 or T).
// HDP (head_dim padded to 64 / 128 / 192 / 256) and BN are template parameters; grid is
// (n_heads, q tiles, n_seqs) with q tiles walked heaviest (last) first and grid-strided.
//
// Build layout: included only by attention_prefill_bf16.cu and attention_prefill_f16.cu, each of
// which instantiates launch_prefill for one cache type, so the two compile in parallel.
#pragma once

#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>

#include "eli/error.h"
#include "kernels/cuda/attention_bf16.cuh"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace attn {
namespace {

constexpr int kThreads = 128;
constexpr int kBM = 64;  // query rows per CTA (16 per warp)

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
template <int HDP>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * (HDP / 8) + (chunk ^ (row & 7));
}

// 8 q elements of row t, head h from dim d0 as packed T (zeros past head_dim).
template <typename T>
__device__ __forceinline__ uint4 load_q8(const Params<T>& p, int64_t t, int h, int d0) {
  using H = HalfTraits<T>;
  const int64_t i = t * p.q_stride + static_cast<int64_t>(h) * p.head_dim + d0;
  if (p.q_vec) {  // head_dim % 8 == 0 and 16-byte aligned rows: the chunk is whole
    if (p.q_half) return *reinterpret_cast<const uint4*>(static_cast<const T*>(p.q) + i);
    const float4* f = reinterpret_cast<const float4*>(static_cast<const float*>(p.q) + i);
    const float4 a = f[0], b = f[1];
    return make_uint4(H::pack2(a.x, a.y), H::pack2(a.z, a.w), H::pack2(b.x, b.y), H::pack2(b.z, b.w));
  }
  float v[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) v[e] = d0 + e < p.head_dim ? load_q<T>(p, t, h, d0 + e) : 0.f;
  return make_uint4(H::pack2(v[0], v[1]), H::pack2(v[2], v[3]), H::pack2(v[4], v[5]), H::pack2(v[6], v[7]));
}

template <typename T, int HDP, int BN>
__global__ void __launch_bounds__(kThreads) prefill_kernel(const Params<T> p) {
  using H = HalfTraits<T>;
  constexpr int KCH = HDP / 8;   // 16-byte chunks per shared row
  constexpr int NKS = HDP / 16;  // k-steps of Q K^T
  constexpr int NNT = BN / 8;    // n-tiles of S
  constexpr int NDT = HDP / 8;   // n-tiles of O
  constexpr int NKB = BN / 16;   // k-steps of P V
  constexpr bool QREG = HDP <= 128;
  static_assert(KCH % 8 == 0 && BN % 16 == 0, "swizzle and fragment shapes");

  extern __shared__ uint4 smem[];
  uint4* const sQ = smem;                 // (BM, KCH) swizzled
  uint4* const sK = sQ + kBM * KCH;       // (2, BN, KCH)
  uint4* const sV = sK + 2 * BN * KCH;    // (2, BN, KCH)
  __shared__ int s_part[4][4];            // per warp: lo_min, hi_max, lo_max, hi_min
  __shared__ int64_t s_off[2][BN];        // cache element offsets of the rows of two kv tiles

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, tg = lane & 3;
  const int h = blockIdx.x;
  const int s = blockIdx.z;
  const int kvh = h / p.group;
  const int hd = p.head_dim;
  const int64_t t0 = p.cu_seqlens[s];
  const int64_t len = static_cast<int64_t>(p.cu_seqlens[s + 1]) - t0;
  if (p.decode_q_max > 0 && len <= p.decode_q_max) return;  // the decode kernel's (a mixed batch)
  const int64_t ctx_len = p.context_lens[s];
  const int32_t* table = p.block_tables + static_cast<int64_t>(s) * p.max_blocks_per_seq;
  const T* kc = p.k_cache;
  const T* vc = p.v_cache;

  for (int64_t tile = static_cast<int64_t>(gridDim.y) - 1 - blockIdx.y; tile * kBM < len; tile += gridDim.y) {
    const int64_t row0 = tile * kBM;
    // Q tile -> shared (T).
    for (int idx = tid; idx < kBM * KCH; idx += kThreads) {
      const int row = idx / KCH, ch = idx % KCH;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (row0 + row < len && ch * 8 < hd) v = load_q8<T>(p, t0 + row0 + row, h, ch * 8);
      sQ[swz<HDP>(row, ch)] = v;
    }
    // Ranges of this thread's rows R0 = 16w + g and R1 = R0 + 8 (lo = INT_MAX, hi = -1: no row),
    // reduced per warp (union for skipping; intersection of valid rows for the no-mask test).
    int rlo[2], rhi[2];
    int lo_min = INT_MAX, hi_max = -1, lo_max = INT_MIN, hi_min = INT_MAX;
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int64_t row = row0 + warp * 16 + g + 8 * k;
      rlo[k] = INT_MAX;
      rhi[k] = -1;
      if (row < len) {
        int lo, hi;
        kv_range(p, p.positions[t0 + row], ctx_len, &lo, &hi);
        lo_max = max(lo_max, lo);
        hi_min = min(hi_min, hi);
        if (hi >= lo) {
          rlo[k] = lo;
          rhi[k] = hi;
          lo_min = min(lo_min, lo);
          hi_max = max(hi_max, hi);
        }
      }
    }
#pragma unroll
    for (int o = 4; o < 32; o <<= 1) {
      lo_min = min(lo_min, __shfl_xor_sync(0xffffffffu, lo_min, o));
      hi_max = max(hi_max, __shfl_xor_sync(0xffffffffu, hi_max, o));
      lo_max = max(lo_max, __shfl_xor_sync(0xffffffffu, lo_max, o));
      hi_min = min(hi_min, __shfl_xor_sync(0xffffffffu, hi_min, o));
    }
    const int w_lo = lo_min, w_hi = hi_max;  // this warp's union (empty: INT_MAX, -1)
    if (lane == 0) {
      s_part[warp][0] = lo_min;
      s_part[warp][1] = hi_max;
      s_part[warp][2] = lo_max;
      s_part[warp][3] = hi_min;
    }
    __syncthreads();
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      lo_min = min(lo_min, s_part[w][0]);
      hi_max = max(hi_max, s_part[w][1]);
      lo_max = max(lo_max, s_part[w][2]);
      hi_min = min(hi_min, s_part[w][3]);
    }

    float oacc[NDT][4];
#pragma unroll
    for (int i = 0; i < NDT; ++i) oacc[i][0] = oacc[i][1] = oacc[i][2] = oacc[i][3] = 0.f;
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};

    if (hi_max >= lo_min) {
      const int64_t kv_first = static_cast<int64_t>(lo_min / BN) * BN;
      const int n_tiles = static_cast<int>((hi_max - kv_first) / BN + 1);

      // Element offsets of the rows of tile i live in s_off[i & 1] (-1 past hi_max), computed
      // once per row by one thread, two tiles ahead of their use.
      auto row_offset = [&](int64_t j) -> int64_t {
        return j <= hi_max ? kv_offset(p, table, static_cast<int>(j), kvh) : -1;
      };
      if (tid < 2 * BN) {
        const int tl = tid / BN, row = tid % BN;
        if (tl < n_tiles) s_off[tl][row] = row_offset(kv_first + tl * BN + row);
      }
      __syncthreads();

      // K/V rows of the tile whose offsets are in s_off[buf] -> ring slot buf; rows past hi_max
      // and dims past head_dim are zero.
      auto load_kv = [&](int buf) {
        uint4* dk = sK + buf * BN * KCH;
        uint4* dv = sV + buf * BN * KCH;
        for (int idx = tid; idx < BN * KCH; idx += kThreads) {
          const int row = idx / KCH, ch = idx % KCH;
          const int64_t roff = s_off[buf][row];
          const bool ok = roff >= 0 && ch * 8 < hd;
          const int64_t off = ok ? roff + ch * 8 : 0;
          const int dst = swz<HDP>(row, ch);
          if (p.kv_vec) {
            cp_async16(dk + dst, kc + off, ok ? 16 : 0);
            cp_async16(dv + dst, vc + off, ok ? 16 : 0);
          } else {
            dk[dst] = ok ? load_kv8_scalar(kc + off, ch * 8, hd) : make_uint4(0, 0, 0, 0);
            dv[dst] = ok ? load_kv8_scalar(vc + off, ch * 8, hd) : make_uint4(0, 0, 0, 0);
          }
        }
      };
      load_kv(0);
      cp_async_commit();

      uint32_t qf[QREG ? NKS : 1][4];
      if (QREG) {
#pragma unroll
        for (int ks = 0; ks < NKS; ++ks) {
          ldsm_x4(qf[QREG ? ks : 0], smem_addr(sQ + swz<HDP>(warp * 16 + (lane & 15), 2 * ks + (lane >> 4))));
        }
      }

      for (int it = 0; it < n_tiles; ++it) {
        const int64_t kv0 = kv_first + static_cast<int64_t>(it) * BN;
        const int buf = it & 1;
        if (it + 1 < n_tiles) load_kv(buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        // s_off[buf] was last read by the loads of this tile, issued before the barrier above.
        if (it + 2 < n_tiles && tid < BN) s_off[buf][tid] = row_offset(kv0 + 2 * BN + tid);

        if (kv0 <= w_hi && kv0 + BN - 1 >= w_lo) {
          const uint4* tk = sK + buf * BN * KCH;
          const uint4* tv = sV + buf * BN * KCH;
          // S = Q K^T
          float sacc[NNT][4];
#pragma unroll
          for (int i = 0; i < NNT; ++i) sacc[i][0] = sacc[i][1] = sacc[i][2] = sacc[i][3] = 0.f;
#pragma unroll
          for (int ks = 0; ks < NKS; ++ks) {
            uint32_t a[4];
            if (QREG) {
#pragma unroll
              for (int e = 0; e < 4; ++e) a[e] = qf[QREG ? ks : 0][e];
            } else {
              ldsm_x4(a, smem_addr(sQ + swz<HDP>(warp * 16 + (lane & 15), 2 * ks + (lane >> 4))));
            }
#pragma unroll
            for (int np = 0; np < NNT / 2; ++np) {
              uint32_t b[4];
              ldsm_x4(b, smem_addr(tk + swz<HDP>(np * 16 + (lane & 7) + ((lane >> 4) << 3), 2 * ks + ((lane >> 3) & 1))));
              H::mma(sacc[2 * np], a, b[0], b[1]);
              H::mma(sacc[2 * np + 1], a, b[2], b[3]);
            }
          }
          // Scale, mask, online softmax.
          const bool full = kv0 >= lo_max && kv0 + BN - 1 <= hi_min;
#pragma unroll
          for (int nt = 0; nt < NNT; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              float v = sacc[nt][e] * p.scale_log2;
              if (!full) {
                const int64_t j = kv0 + nt * 8 + 2 * tg + (e & 1);
                const int k = e >> 1;
                if (j < rlo[k] || j > rhi[k]) v = -INFINITY;
              }
              sacc[nt][e] = v;
            }
          }
          float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
          for (int nt = 0; nt < NNT; ++nt) {
            mx[0] = fmaxf(mx[0], fmaxf(sacc[nt][0], sacc[nt][1]));
            mx[1] = fmaxf(mx[1], fmaxf(sacc[nt][2], sacc[nt][3]));
          }
          float base[2], alpha[2];
#pragma unroll
          for (int k = 0; k < 2; ++k) {
            mx[k] = fmaxf(mx[k], __shfl_xor_sync(0xffffffffu, mx[k], 1));
            mx[k] = fmaxf(mx[k], __shfl_xor_sync(0xffffffffu, mx[k], 2));
            const float m_new = fmaxf(m_run[k], mx[k]);
            base[k] = m_new == -INFINITY ? 0.f : m_new;
            alpha[k] = fast_exp2(m_run[k] - base[k]);
            m_run[k] = m_new;
          }
          float rs[2] = {0.f, 0.f};
#pragma unroll
          for (int nt = 0; nt < NNT; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const float pv = fast_exp2(sacc[nt][e] - base[e >> 1]);
              sacc[nt][e] = pv;
              rs[e >> 1] += pv;
            }
          }
#pragma unroll
          for (int k = 0; k < 2; ++k) l_run[k] = l_run[k] * alpha[k] + rs[k];
#pragma unroll
          for (int i = 0; i < NDT; ++i) {
            oacc[i][0] *= alpha[0];
            oacc[i][1] *= alpha[0];
            oacc[i][2] *= alpha[1];
            oacc[i][3] *= alpha[1];
          }
          // O += P V
#pragma unroll
          for (int kb = 0; kb < NKB; ++kb) {
            const uint32_t a[4] = {H::pack2(sacc[2 * kb][0], sacc[2 * kb][1]),
                                   H::pack2(sacc[2 * kb][2], sacc[2 * kb][3]),
                                   H::pack2(sacc[2 * kb + 1][0], sacc[2 * kb + 1][1]),
                                   H::pack2(sacc[2 * kb + 1][2], sacc[2 * kb + 1][3])};
#pragma unroll
            for (int dp = 0; dp < NDT / 2; ++dp) {
              uint32_t b[4];
              const int vrow = kb * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
              ldsm_x4_trans(b, smem_addr(tv + swz<HDP>(vrow, 2 * dp + (lane >> 4))));
              H::mma(oacc[2 * dp], a, b[0], b[1]);
              H::mma(oacc[2 * dp + 1], a, b[2], b[3]);
            }
          }
        }
        __syncthreads();  // ring slot `buf` is refilled by the next iteration's loads
      }
    }

    // out = O / l (row sums are spread over the quad); empty rows give zeros.
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      l_run[k] += __shfl_xor_sync(0xffffffffu, l_run[k], 1);
      l_run[k] += __shfl_xor_sync(0xffffffffu, l_run[k], 2);
    }
    const float inv[2] = {l_run[0] > 0.f ? 1.f / l_run[0] : 0.f, l_run[1] > 0.f ? 1.f / l_run[1] : 0.f};
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int64_t row = row0 + warp * 16 + g + 8 * k;
      if (row >= len) continue;
#pragma unroll
      for (int dt = 0; dt < NDT; ++dt) {
        const int d = dt * 8 + 2 * tg;
        if (d < hd) store_out2<T>(p, t0 + row, h, d, oacc[dt][2 * k] * inv[k], oacc[dt][2 * k + 1] * inv[k]);
      }
    }
    __syncthreads();  // sQ and s_part are rewritten by the next tile of this CTA
  }
}

template <typename T, int HDP, int BN>
void launch_prefill_t(const Params<T>& p, dim3 grid, cudaStream_t stream) {
  static_assert(sizeof(T) == 2, "16-bit cache elements");
  constexpr size_t kSmem = static_cast<size_t>(kBM + 4 * BN) * HDP * 2;
  static std::atomic<uint64_t> opted{0};
  allow_dynamic_smem(reinterpret_cast<const void*>(prefill_kernel<T, HDP, BN>), kSmem, &opted);
  prefill_kernel<T, HDP, BN><<<grid, kThreads, kSmem, stream>>>(p);
}

}  // namespace

template <typename T>
void launch_prefill(const Params<T>& p, int64_t q_tiles, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.n_heads), static_cast<unsigned>(q_tiles), static_cast<unsigned>(p.n_seqs));
  if (p.head_dim <= 64) {
    launch_prefill_t<T, 64, 64>(p, grid, stream);
  } else if (p.head_dim <= 128) {
    launch_prefill_t<T, 128, 64>(p, grid, stream);
  } else if (p.head_dim <= 192) {
    launch_prefill_t<T, 192, 32>(p, grid, stream);
  } else {
    launch_prefill_t<T, 256, 32>(p, grid, stream);
  }
  ELI_CUDA_CHECK_LAUNCH();
}

}  // namespace attn
}  // namespace eli
