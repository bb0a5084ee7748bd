// kernels/cuda/attention_decode.cu: split-K ("flash-decoding") attention for decode-like batches
// (few queries per sequence) over the bf16 paged KV cache, and the kernel that combines splits.
//
// One CTA of 128 threads per (split, kv head, query chunk, sequence): the chunk holds up to QMAX
// queries = (token, q head) pairs of that kv head's group in that sequence, so each K/V row is
// read from memory once for all of them. The CTA's kv range is the union of its queries' visible
// ranges, cut into n_splits equal contiguous pieces (blockIdx.x picks one).
// - Thread layout: TPR threads per kv row, each owning 8 dims (16 bytes of bf16); a pass covers
//   RP = 128 / TPR rows; a tile is LPT passes (TK = RP * LPT rows). K and V stream through a
//   two-stage shared-memory ring with cp.async (16-byte copies, zero-filled past the piece or
//   head_dim): while a tile is computed the next one is in flight, and registers stay free for
//   the queries and accumulators. Each thread reads back only the chunks it copied itself.
// - Scores: per row and query, 8 FMAs then a TPR-lane xor-shuffle sum; one lane writes the score
//   (log2 domain, -inf where masked) to shared memory. One warp per query then runs the online
//   softmax over the tile (running max m and sum l in shared memory) and writes p and the
//   rescale factor alpha. Finally each thread accumulates p * V into QMAX x 8 f32 registers.
//   A tile costs three __syncthreads (scores, softmax, end of tile before its stage is refilled).
// - The end reduces the RP row-lanes' accumulators through shared memory and writes either the
//   output (n_splits == 1: acc / l, zero when l == 0) or the split's (acc, m, l) to the workspace.
// - Rows past the range, masked queries and dims >= head_dim contribute exact zeros (their ring
//   slots are zero-filled, never loaded), so no NaN from uninitialised memory can leak in.
// TPR = 8 / 16 / 32 serve head_dim <= 64 / 128 / 256 with 16-byte loads (hd % 8 == 0 and an
// aligned cache); anything else runs TPR = 32 with element loads (slow but correct).
#include <atomic>
#include <cmath>
#include <cstdint>

#include "eli/error.h"
#include "kernels/cuda/attention_bf16.cuh"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace attn {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;

// 8 elements from dim d0 (elements >= head_dim read as zero) as packed bf16.
__device__ __forceinline__ uint4 ld_kv_scalar(const __nv_bfloat16* p, int d0, int hd) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int d = d0 + 2 * i;
    const uint32_t lo = d < hd ? __bfloat16_as_ushort(p[2 * i]) : 0u;
    const uint32_t hi = d + 1 < hd ? __bfloat16_as_ushort(p[2 * i + 1]) : 0u;
    w[i] = lo | (hi << 16);
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

template <int QMAX>
struct DecodeShape {
  static constexpr int kLpt = 8;      // passes per tile: K (and V) chunks per thread per tile
  static constexpr int kStages = 2;   // tiles in the shared-memory ring
  // Dynamic shared memory: the K and V ring; reused for the final row-lane reduction.
  static constexpr size_t kSmem = static_cast<size_t>(2) * kStages * kLpt * kThreads * 16;
};

template <int TPR, bool VEC, int QMAX>
__global__ void __launch_bounds__(kThreads) decode_kernel(const Params p) {
  constexpr int RP = kThreads / TPR;             // kv rows per pass
  constexpr int LPT = DecodeShape<QMAX>::kLpt;   // passes per tile
  constexpr int STAGES = DecodeShape<QMAX>::kStages;
  constexpr int TK = RP * LPT;                   // kv rows per tile
  constexpr int DW = TPR * 8;                    // dims covered by a row's threads (>= head_dim)
  static_assert(32 % TPR == 0 && QMAX % kWarps == 0, "layout");
  static_assert(sizeof(float) * RP * QMAX * DW <= DecodeShape<QMAX>::kSmem, "reduction fits the ring");

  // Ring slot (stage, pass i) of thread tid: sK[(stage * LPT + i) * kThreads + tid]. Each thread
  // reads back only what it copied itself, so the data needs no barrier, only cp.async waits.
  extern __shared__ uint4 ring[];
  uint4* const sK = ring;
  uint4* const sV = ring + STAGES * LPT * kThreads;
  float* const s_red = reinterpret_cast<float*>(ring);  // (RP, QMAX, DW) after the last tile
  __shared__ __align__(16) float s_q[QMAX][DW];
  __shared__ float s_sc[2][QMAX][TK];
  __shared__ float s_alpha[2][QMAX];
  __shared__ float s_m[QMAX], s_l[QMAX];
  __shared__ int s_lo[QMAX], s_hi[QMAX];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int r = tid / TPR, c = tid % TPR;
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

  for (int64_t qc = qc0; qc * QMAX < n_q; qc += p.n_qchunks) {
    // The chunk's queries (f32, zero-padded to DW dims) and visible ranges.
    for (int i = tid; i < QMAX * DW; i += kThreads) {
      const int qi = i / DW, d = i % DW;
      const int64_t gq = qc * QMAX + qi;
      float v = 0.f;
      if (gq < n_q && d < hd) v = load_q(p, t0 + gq / p.group, kvh * p.group + static_cast<int>(gq % p.group), d);
      s_q[qi][d] = v;
    }
    if (tid < QMAX) {
      const int64_t gq = qc * QMAX + tid;
      int lo = 0, hi = -1;
      if (gq < n_q) kv_range(p, p.positions[t0 + gq / p.group], ctx_len, &lo, &hi);
      s_lo[tid] = lo;
      s_hi[tid] = hi;
      s_m[tid] = -INFINITY;
      s_l[tid] = 0.f;
    }
    __syncthreads();

    // This split's piece [beg, end) of the union of the queries' ranges.
    int64_t ulo = INT64_MAX, uhi = -1;
#pragma unroll
    for (int qi = 0; qi < QMAX; ++qi) {
      if (s_hi[qi] >= s_lo[qi]) {
        ulo = min(ulo, static_cast<int64_t>(s_lo[qi]));
        uhi = max(uhi, static_cast<int64_t>(s_hi[qi]));
      }
    }
    int64_t beg = 0, end = 0;
    if (uhi >= ulo) {
      const int64_t piece = (uhi - ulo + 1 + p.n_splits - 1) / p.n_splits;
      beg = ulo + split * piece;
      end = min(beg + piece, uhi + 1);
    }
    const int n_tiles = end > beg ? static_cast<int>((end - beg + TK - 1) / TK) : 0;

    float qr[QMAX][8], acc[QMAX][8];
#pragma unroll
    for (int qi = 0; qi < QMAX; ++qi) {
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        qr[qi][e] = s_q[qi][c * 8 + e] * p.scale_log2;
        acc[qi][e] = 0.f;
      }
    }

    // This thread's chunk of each row of tile `it` -> ring stage `stage` (zeros past the piece
    // or past head_dim).
    auto issue_tile = [&](int it, int stage) {
#pragma unroll
      for (int i = 0; i < LPT; ++i) {
        const int64_t j = beg + static_cast<int64_t>(it) * TK + i * RP + r;
        const bool ok = j < end && chunk_live;
        const int64_t off = ok ? kv_offset(p, table, static_cast<int>(j), kvh) + c * 8 : 0;
        const int slot = (stage * LPT + i) * kThreads + tid;
        if (VEC) {
          cp_async16(sK + slot, p.k_cache + off, ok ? 16 : 0);
          cp_async16(sV + slot, p.v_cache + off, ok ? 16 : 0);
        } else {
          sK[slot] = ok ? ld_kv_scalar(p.k_cache + off, c * 8, hd) : make_uint4(0, 0, 0, 0);
          sV[slot] = ok ? ld_kv_scalar(p.v_cache + off, c * 8, hd) : make_uint4(0, 0, 0, 0);
        }
      }
    };
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
      if (st < n_tiles) issue_tile(st, st);
      cp_async_commit();
    }

    for (int it = 0; it < n_tiles; ++it) {
      const int buf = it & 1;
      const int stage = it % STAGES;
      const int64_t kv0 = beg + static_cast<int64_t>(it) * TK;
      // Refill the stage consumed by the previous tile (its readers passed the barrier that ends
      // every tile), then wait for this tile's group.
      if (it + STAGES - 1 < n_tiles) issue_tile(it + STAGES - 1, (it + STAGES - 1) % STAGES);
      cp_async_commit();
      cp_async_wait<STAGES - 1>();

      // Scores of the tile's rows for every query.
#pragma unroll
      for (int i = 0; i < LPT; ++i) {
        float kf[8];
        unpack8(sK[(stage * LPT + i) * kThreads + tid], kf);
        const int64_t j = kv0 + i * RP + r;
#pragma unroll
        for (int qi = 0; qi < QMAX; ++qi) {
          float dot = 0.f;
#pragma unroll
          for (int e = 0; e < 8; ++e) dot = fmaf(qr[qi][e], kf[e], dot);
#pragma unroll
          for (int o = TPR / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
          if (c == 0) {
            const bool ok = j < end && j >= s_lo[qi] && j <= s_hi[qi];
            s_sc[buf][qi][i * RP + r] = ok ? dot : -INFINITY;
          }
        }
      }
      __syncthreads();

      // Online softmax, one warp per query.
      for (int qi = warp; qi < QMAX; qi += kWarps) {
        float mx = -INFINITY;
        for (int k = lane; k < TK; k += 32) mx = fmaxf(mx, s_sc[buf][qi][k]);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        const float m_old = s_m[qi];
        const float m_new = fmaxf(m_old, mx);
        const float base = m_new == -INFINITY ? 0.f : m_new;
        float sum = 0.f;
        for (int k = lane; k < TK; k += 32) {
          const float pv = fast_exp2(s_sc[buf][qi][k] - base);
          s_sc[buf][qi][k] = pv;
          sum += pv;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        const float alpha = fast_exp2(m_old - base);
        __syncwarp();
        if (lane == 0) {
          s_m[qi] = m_new;
          s_l[qi] = s_l[qi] * alpha + sum;
          s_alpha[buf][qi] = alpha;
        }
      }
      __syncthreads();

      // acc = acc * alpha + p . V (rows past the piece are zero in the ring, with p = 0).
#pragma unroll
      for (int qi = 0; qi < QMAX; ++qi) {
        const float a = s_alpha[buf][qi];
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[qi][e] *= a;
      }
#pragma unroll
      for (int i = 0; i < LPT; ++i) {
        float vf[8];
        unpack8(sV[(stage * LPT + i) * kThreads + tid], vf);
#pragma unroll
        for (int qi = 0; qi < QMAX; ++qi) {
          const float pv = s_sc[buf][qi][i * RP + r];
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[qi][e] = fmaf(pv, vf[e], acc[qi][e]);
        }
      }
      __syncthreads();  // the ring stage and the score buffer are rewritten after this
    }

    // Sum the RP row-lanes (through the ring's memory, free now: every real cp.async group was
    // waited for and the last tile ended with a barrier), then write the output or this split's
    // partial result.
#pragma unroll
    for (int qi = 0; qi < QMAX; ++qi) {
      float4* dst = reinterpret_cast<float4*>(s_red + (r * QMAX + qi) * DW + c * 8);
      dst[0] = make_float4(acc[qi][0], acc[qi][1], acc[qi][2], acc[qi][3]);
      dst[1] = make_float4(acc[qi][4], acc[qi][5], acc[qi][6], acc[qi][7]);
    }
    __syncthreads();
    for (int i = tid; i < QMAX * hd; i += kThreads) {
      const int qi = i / hd, d = i % hd;
      const int64_t gq = qc * QMAX + qi;
      if (gq >= n_q) continue;
      float o = 0.f;
#pragma unroll
      for (int rr = 0; rr < RP; ++rr) o += s_red[(rr * QMAX + qi) * DW + d];
      const int64_t t = t0 + gq / p.group;
      const int h = kvh * p.group + static_cast<int>(gq % p.group);
      if (p.n_splits == 1) {
        const float l = s_l[qi];
        store_out(p, t, h, d, l > 0.f ? o / l : 0.f);
      } else if (t < p.ws_tokens) {
        const int64_t idx = (t * p.n_heads + h) * p.n_splits + split;
        p.ws_o[idx * hd + d] = o;
        if (d == 0) {
          p.ws_m[idx] = s_m[qi];
          p.ws_l[idx] = s_l[qi];
        }
      }
    }
    __syncthreads();  // shared state (and the ring) is reused by the next query chunk
  }
}

// out[t, h] = sum_s 2^(m_s - M) acc_s / sum_s 2^(m_s - M) l_s over the splits with l_s > 0.
__global__ void combine_kernel(const Params p) {
  const int64_t t = blockIdx.x;
  const int h = blockIdx.y;
  if (t >= p.cu_seqlens[p.n_seqs] || t >= p.ws_tokens) return;
  const int64_t base = (t * p.n_heads + h) * p.n_splits;
  float mx = -INFINITY;
  for (int sp = 0; sp < p.n_splits; ++sp) {
    if (p.ws_l[base + sp] > 0.f) mx = fmaxf(mx, p.ws_m[base + sp]);
  }
  float den = 0.f;
  for (int sp = 0; sp < p.n_splits; ++sp) {
    const float l = p.ws_l[base + sp];
    if (l > 0.f) den += l * fast_exp2(p.ws_m[base + sp] - mx);
  }
  for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
    float num = 0.f;
    for (int sp = 0; sp < p.n_splits; ++sp) {
      if (p.ws_l[base + sp] > 0.f) num += fast_exp2(p.ws_m[base + sp] - mx) * p.ws_o[(base + sp) * p.head_dim + d];
    }
    store_out(p, t, h, d, den > 0.f ? num / den : 0.f);
  }
}

template <int TPR, bool VEC, int QMAX>
void launch_decode_t(const Params& p, dim3 grid, cudaStream_t stream) {
  constexpr size_t kSmem = DecodeShape<QMAX>::kSmem;
  static std::atomic<uint64_t> opted{0};
  allow_dynamic_smem(reinterpret_cast<const void*>(decode_kernel<TPR, VEC, QMAX>), kSmem, &opted);
  decode_kernel<TPR, VEC, QMAX><<<grid, kThreads, kSmem, stream>>>(p);
}

// Resident CTAs per SM of an instantiation on the current device (cached per device).
template <int TPR, bool VEC, int QMAX>
int occupancy_t() {
  static std::atomic<int> cached[64] = {};
  static std::atomic<uint64_t> opted{0};
  int dev = 0;
  ELI_CUDA_CHECK(cudaGetDevice(&dev));
  const bool cacheable = dev >= 0 && dev < 64;
  if (cacheable && cached[dev].load(std::memory_order_relaxed) > 0) return cached[dev].load(std::memory_order_relaxed);
  allow_dynamic_smem(reinterpret_cast<const void*>(decode_kernel<TPR, VEC, QMAX>), DecodeShape<QMAX>::kSmem, &opted);
  int n = 0;
  ELI_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, decode_kernel<TPR, VEC, QMAX>, kThreads,
                                                               DecodeShape<QMAX>::kSmem));
  n = n > 0 ? n : 1;
  if (cacheable) cached[dev].store(n, std::memory_order_relaxed);
  return n;
}

// The one place that maps (kv_vec, head_dim) to an instantiation: calls f.template
// operator()<TPR, VEC>().
template <typename F>
void with_layout(const Params& p, F&& f) {
  if (p.kv_vec && p.head_dim <= 64) {
    f.template operator()<8, true>();
  } else if (p.kv_vec && p.head_dim <= 128) {
    f.template operator()<16, true>();
  } else if (p.kv_vec) {
    f.template operator()<32, true>();
  } else {
    f.template operator()<32, false>();
  }
}

template <int QMAX>
struct LaunchQ {
  const Params& p;
  dim3 grid;
  cudaStream_t stream;
  template <int TPR, bool VEC>
  void operator()() const {
    launch_decode_t<TPR, VEC, QMAX>(p, grid, stream);
  }
};

template <int QMAX>
struct OccupancyQ {
  int* out;
  template <int TPR, bool VEC>
  void operator()() const {
    *out = occupancy_t<TPR, VEC, QMAX>();
  }
};

}  // namespace

void launch_decode(const Params& p, int qmax, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.n_splits), static_cast<unsigned>(p.n_kv_heads * p.n_qchunks),
                  static_cast<unsigned>(p.n_seqs));
  if (qmax == 4) {
    with_layout(p, LaunchQ<4>{p, grid, stream});
  } else {
    with_layout(p, LaunchQ<8>{p, grid, stream});
  }
  ELI_CUDA_CHECK_LAUNCH();
}

int decode_ctas_per_sm(const Params& p, int qmax) {
  int n = 1;
  if (qmax == 4) {
    with_layout(p, OccupancyQ<4>{&n});
  } else {
    with_layout(p, OccupancyQ<8>{&n});
  }
  return n;
}

void launch_combine(const Params& p, cudaStream_t stream) {
  const int threads = p.head_dim <= 64 ? 64 : p.head_dim <= 128 ? 128 : 256;
  combine_kernel<<<dim3(static_cast<unsigned>(p.ws_tokens), static_cast<unsigned>(p.n_heads)), threads, 0, stream>>>(p);
  ELI_CUDA_CHECK_LAUNCH();
}

}  // namespace attn
}  // namespace eli
