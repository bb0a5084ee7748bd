// bench/cuda_decode_step_bench.cc: where the GPU time of one bf16 decode step goes. It replays the
// kernel sequence of the Llama forward (runtime/model/blocks.cc on a 16-bit CUDA model) through the
// kernel registry, i.e. the production
// kernels, on random weights of a model shape (Llama-3.2-1B, Llama-3.1-8B), for B sequences at a
// context length each, captured as one CUDA graph per step the way the engine runs decode:
// - B <= kGemvMaxRows (the GEMV route): embedding; per layer fused-norm GEMV qkv, RoPE + KV write,
//   split-K paged attention, GEMV o (+= residual), GEMV gate/up + SwiGLU, GEMV down (+= residual);
//   row gather, fused-norm GEMV lm_head; sampling (greedy);
// - larger B (the GEMM route, offline throughput): NormCast + cuBLASLt GEMM for qkv, RoPE + KV
//   write, attention, GEMM o (beta 1), NormCast + GEMM gate/up (bf16 out) + GatedAct + GEMM down
//   (beta 1); row gather, NormCast + GEMM lm_head; sampling.
//
// It prints the step time of the full sequence and of variants that leave one kind of kernel out;
// the difference is that kind's marginal cost inside the chain (its own time plus the gap it adds),
// which is what a fusion or a launch-latency fix can win. Also: the same with programmatic
// dependent launch off and the other launch settings' alternatives (kernels/cuda_tuning_knobs.h,
// set before each capture), the weight bytes a step
// reads, and a read-only bandwidth ceiling measured in the same run, so the step's fraction of the
// memory limit is known (weights plus, for batches, the K/V the attention reads). The outputs' values
// are not checked here (tests/cpp covers the kernels); variants that skip kernels compute garbage on
// purpose. Environment: ELI_STEP_BENCH_SHAPES (substring filter, e.g. llama-3.2-1b),
// ELI_STEP_BENCH_BATCHES (default "1"; e.g. "1,64,256"), ELI_STEP_BENCH_CONTEXTS (default
// "128,4096"), ELI_STEP_BENCH_KV_DTYPES (default "bf16"; "bf16,int8,fp8" runs each shape with a
// bf16, an int8 and an fp8 e4m3 KV cache: kv_cache_dtype's compressed caches, one byte per value
// plus an f32 scale per (token, kv head); e.g. the issue-14 figure: ELI_STEP_BENCH_SHAPES=llama-3.1-8b
// ELI_STEP_BENCH_BATCHES=64 ELI_STEP_BENCH_CONTEXTS=8192 ELI_STEP_BENCH_KV_DTYPES=bf16,int8,fp8).
//
// Build by hand on the GPU machine (not part of CMake), against a CUDA build of eli_engine:
//   nvcc -x cu -O2 -std=c++17 -arch=sm_90 -I include -I . bench/cuda_decode_step_bench.cc \
//     -L build/device -leli_engine -lcublasLt -o /tmp/step_bench && /tmp/step_bench [out.json]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "bench/cuda_bench_check.h"
#include "kernels/cuda_tuning_knobs.h"
#include "kernels/ops.h"
#include "kernels/registry.h"

using namespace eli;

namespace {

struct Shape {
  const char* name;
  int64_t hidden, inter, layers, n_heads, n_kv_heads, head_dim, vocab;
};

// Which kernels a variant enqueues.
struct Parts {
  bool embed = true, qkv = true, rope = true, attn = true, o = true, mlp = true, head = true, sample = true;
  bool casts = true;  // GEMM route: NormCast and GatedAct
};

__global__ void fill_bf16_kernel(uint16_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    const float f = (static_cast<float>(x >> 8) / 16777216.0f - 0.5f) * 0.05f;  // small: no inf in f32
    uint32_t bits;
    memcpy(&bits, &f, 4);
    p[i] = static_cast<uint16_t>(bits >> 16);
  }
}

// Bytes of an int8 / fp8 cache: x & 0x77 is never an e4m3 NaN (0x7f / 0xff) and a modest int8.
__global__ void fill_u8_kernel(uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    p[i] = static_cast<uint8_t>((x >> 16) & 0x77u);
  }
}

__global__ void fill_f32_kernel(float* p, size_t n, float v) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    p[i] = v;
}

// Read-only ceiling: every byte of buf read once with 16-byte loads; the xor keeps the loads live.
__global__ void read_kernel(const uint4* __restrict__ buf, size_t n, unsigned* sink) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint4 v = __ldg(buf + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;
}

std::vector<void*> g_allocs;  // everything of the current model (free_all releases it)
void* dmalloc(size_t bytes) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, std::max<size_t>(bytes, 16)));
  g_allocs.push_back(p);
  return p;
}
void free_all() {
  CHECK_CUDA(cudaDeviceSynchronize());
  for (void* p : g_allocs) CHECK_CUDA(cudaFree(p));
  g_allocs.clear();
}
uint16_t* random_bf16(size_t n, uint32_t seed) {
  auto* p = static_cast<uint16_t*>(dmalloc(n * 2));
  fill_bf16_kernel<<<1024, 256>>>(p, n, seed);
  CHECK_CUDA(cudaGetLastError());
  return p;
}
float* const_f32(size_t n, float v) {
  auto* p = static_cast<float*>(dmalloc(n * 4));
  fill_f32_kernel<<<256, 256>>>(p, n, v);
  CHECK_CUDA(cudaGetLastError());
  return p;
}
template <typename T>
T* upload(const std::vector<T>& h) {
  auto* d = static_cast<T*>(dmalloc(h.size() * sizeof(T)));
  CHECK_CUDA(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

constexpr int64_t kBlockSize = 16;

// Blocks of a sequence's paged K/V: its context plus a spare block.
int64_t blocks_per_seq(int64_t ctx) { return (ctx + kBlockSize - 1) / kBlockSize + 1; }

// bf16 weights one decode step reads: every layer's matrices and the lm_head.
size_t step_weight_bytes(const Shape& s) {
  const int64_t H = s.hidden, I = s.inter, hd = s.head_dim;
  const int64_t per_layer = H * (s.n_heads + 2 * s.n_kv_heads) * hd + H * s.n_heads * hd + 3 * I * H;
  return static_cast<size_t>(per_layer * s.layers + s.vocab * H) * 2;
}

// Bytes of one cached (token, kv head) row of K (or V): 2 per value for bf16; 1 per value plus
// the f32 scale for int8 / fp8.
size_t kv_row_bytes(const Shape& s, DType kv) {
  return kv == DType::kBF16 ? static_cast<size_t>(s.head_dim) * 2 : static_cast<size_t>(s.head_dim) + 4;
}

// The K and V caches make_model allocates (every layer, batch sequences).
size_t kv_cache_bytes(const Shape& s, int64_t batch, int64_t ctx, DType kv) {
  return static_cast<size_t>(batch * blocks_per_seq(ctx) * kBlockSize * s.layers * s.n_kv_heads) * kv_row_bytes(s, kv) * 2;
}

struct Layer {
  uint16_t *qkv, *o, *gate_up, *down;
  float *attn_norm, *mlp_norm;
};

struct Model {
  Shape s;
  int64_t batch = 1, ctx = 0, qkv_dim = 0, block_size = kBlockSize, n_blocks = 0;  // n_blocks per sequence
  std::vector<Layer> layers;
  DType kv_dtype = DType::kBF16;   // bf16, or kI8 / kF8E4M3 (then the scales below)
  std::vector<void*> k_cache, v_cache;
  std::vector<float*> k_scale, v_scale;
  uint16_t *embed = nullptr, *lm_head = nullptr;
  float *final_norm = nullptr, *inv_freq = nullptr;
  // activations
  float *x, *qkv, *attn_out, *act, *sel, *logits;
  uint16_t *qb, *hb, *gate_up, *act_bf16, *attn_bf16;  // bf16 activations of the GEMM route
  void* blas_ws;
  size_t blas_ws_bytes;
  void* attn_ws;
  size_t attn_ws_bytes;
  // batch (one sequence, one new token at position ctx - 1)
  int32_t *ids, *positions, *cu_seqlens, *context_lens, *block_tables, *slots, *logits_idx;
  // sampling
  int32_t *tok, *status, *n_logprobs, *top_k;
  float* logprob;
  bool gemv_route() const { return batch <= kGemvMaxRows; }
  double *temperature, *top_p, *min_p, *rep, *pres, *freq;
  uint64_t *seed, *offset;

  size_t weight_bytes_per_step() const { return step_weight_bytes(s); }
  // K and V the attention reads in one step (every sequence's whole context, every layer).
  size_t kv_bytes_per_step() const {
    return static_cast<size_t>(batch * ctx * s.layers * s.n_kv_heads) * kv_row_bytes(s, kv_dtype) * 2;
  }
  double flops_per_step() const {
    const int64_t H = s.hidden, I = s.inter, hd = s.head_dim;
    const double per_layer = static_cast<double>(H * qkv_dim + H * s.n_heads * hd + 3 * I * H);
    return 2.0 * batch * (per_layer * s.layers + static_cast<double>(s.vocab * H)) +
           4.0 * batch * ctx * s.layers * s.n_heads * hd;  // q.k and p.v
  }
};

Model make_model(const Shape& s, int64_t batch, int64_t ctx, DType kv_dtype) {
  Model m;
  m.s = s;
  m.kv_dtype = kv_dtype;
  m.batch = batch;
  m.ctx = ctx;
  const int64_t B = batch;
  const int64_t H = s.hidden, I = s.inter, hd = s.head_dim;
  m.qkv_dim = (s.n_heads + 2 * s.n_kv_heads) * hd;
  m.n_blocks = blocks_per_seq(ctx);
  uint32_t seed = 1;
  for (int64_t l = 0; l < s.layers; ++l) {
    Layer L{};
    L.qkv = random_bf16(static_cast<size_t>(m.qkv_dim * H), seed++);
    L.o = random_bf16(static_cast<size_t>(H * s.n_heads * hd), seed++);
    L.gate_up = random_bf16(static_cast<size_t>(2 * I * H), seed++);
    L.down = random_bf16(static_cast<size_t>(H * I), seed++);
    L.attn_norm = const_f32(static_cast<size_t>(H), 1.0f);
    L.mlp_norm = const_f32(static_cast<size_t>(H), 1.0f);
    m.layers.push_back(L);
    const size_t kv = static_cast<size_t>(B * m.n_blocks * m.block_size * s.n_kv_heads * hd);
    if (kv_dtype == DType::kBF16) {
      m.k_cache.push_back(random_bf16(kv, seed++));
      m.v_cache.push_back(random_bf16(kv, seed++));
      continue;
    }
    for (auto* cache : {&m.k_cache, &m.v_cache}) {
      auto* p = static_cast<uint8_t*>(dmalloc(kv));
      fill_u8_kernel<<<1024, 256>>>(p, kv, seed++);
      CHECK_CUDA(cudaGetLastError());
      cache->push_back(p);
    }
    m.k_scale.push_back(const_f32(kv / static_cast<size_t>(hd), 0.01f));
    m.v_scale.push_back(const_f32(kv / static_cast<size_t>(hd), 0.01f));
  }
  m.embed = random_bf16(static_cast<size_t>(s.vocab * H), seed++);
  m.lm_head = random_bf16(static_cast<size_t>(s.vocab * H), seed++);
  m.final_norm = const_f32(static_cast<size_t>(H), 1.0f);
  std::vector<float> inv(static_cast<size_t>(hd / 2));
  for (int64_t i = 0; i < hd / 2; ++i) inv[static_cast<size_t>(i)] = std::pow(500000.0f, -2.0f * i / hd);
  m.inv_freq = upload(inv);
  m.x = const_f32(static_cast<size_t>(B * H), 0.5f);
  m.qkv = const_f32(static_cast<size_t>(B * m.qkv_dim), 0.f);
  m.attn_out = const_f32(static_cast<size_t>(B * s.n_heads * hd), 0.f);
  m.act = const_f32(static_cast<size_t>(B * I), 0.f);
  m.sel = const_f32(static_cast<size_t>(B * H), 0.f);
  m.logits = const_f32(static_cast<size_t>(B * s.vocab), 0.f);
  m.qb = random_bf16(static_cast<size_t>(B * s.n_heads * hd), seed++);
  m.hb = random_bf16(static_cast<size_t>(B * std::max(H, I)), seed++);
  m.gate_up = random_bf16(static_cast<size_t>(B * 2 * I), seed++);
  m.act_bf16 = random_bf16(static_cast<size_t>(B * I), seed++);
  m.attn_bf16 = random_bf16(static_cast<size_t>(B * s.n_heads * hd), seed++);
  m.blas_ws_bytes = size_t{64} << 20;
  m.blas_ws = dmalloc(m.blas_ws_bytes);
  m.attn_ws_bytes = attention_workspace_bytes(B, s.n_heads, hd);
  m.attn_ws = dmalloc(m.attn_ws_bytes);
  std::vector<int32_t> ids, pos, cu{0}, ctxs, table, slots, lidx;
  for (int64_t b = 0; b < B; ++b) {
    ids.push_back(static_cast<int32_t>(7 + b));
    pos.push_back(static_cast<int32_t>(ctx - 1));
    cu.push_back(static_cast<int32_t>(b + 1));
    ctxs.push_back(static_cast<int32_t>(ctx));
    for (int64_t i = 0; i < m.n_blocks; ++i) table.push_back(static_cast<int32_t>(b * m.n_blocks + i));
    slots.push_back(static_cast<int32_t>((b * m.n_blocks) * m.block_size + ctx - 1));
    lidx.push_back(static_cast<int32_t>(b));
  }
  m.ids = upload(ids);
  m.positions = upload(pos);
  m.cu_seqlens = upload(cu);
  m.context_lens = upload(ctxs);
  m.block_tables = upload(table);
  m.slots = upload(slots);
  m.logits_idx = upload(lidx);
  auto i32 = [&](int32_t v) { return upload(std::vector<int32_t>(static_cast<size_t>(B), v)); };
  auto f64 = [&](double v) { return upload(std::vector<double>(static_cast<size_t>(B), v)); };
  m.tok = i32(0);
  m.status = i32(0);
  m.n_logprobs = i32(-1);
  m.top_k = i32(0);
  m.logprob = const_f32(static_cast<size_t>(B), 0.f);
  m.temperature = f64(0.0);
  m.top_p = f64(1.0);
  m.min_p = f64(0.0);
  m.rep = f64(1.0);
  m.pres = f64(0.0);
  m.freq = f64(0.0);
  m.seed = upload(std::vector<uint64_t>(static_cast<size_t>(B), 1));
  m.offset = upload(std::vector<uint64_t>(static_cast<size_t>(B), 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  return m;
}

// the Llama forward (runtime/model/blocks.cc) for a pure decode step of m.batch sequences (keep in
// step with it; driving the ModelRunner itself is the next step for this bench).
void enqueue_step(const Model& m, const Parts& parts, cudaStream_t stream) {
  const Shape& s = m.s;
  const int64_t H = s.hidden, I = s.inter, nh = s.n_heads, nkv = s.n_kv_heads, hd = s.head_dim, B = m.batch;
  const bool gemv_route = m.gemv_route();
  const ExecContext ctx{nullptr, stream};
  const KernelEntry& k_gemv = get_kernel(Op::kGemv, DeviceKind::kCUDA, DType::kBF16);
  const KernelEntry& k_gemm = get_kernel(Op::kGemm, DeviceKind::kCUDA, DType::kBF16);
  auto gemv = [&](float* out, const float* x, const void* w, const float* norm_w, int64_t n, int64_t k, bool swiglu,
                  bool accumulate) {
    GemvArgs a{};
    a.out = out;
    a.x = x;
    a.w = w;
    a.norm_weight = norm_w;
    a.m = B;
    a.n = n;
    a.k = k;
    a.out_stride = swiglu ? n / 2 : n;
    a.x_stride = k;
    a.norm_eps = 1e-5f;
    a.gated = swiglu ? GatedAct::kSilu : GatedAct::kNone;
    a.accumulate = accumulate;
    k_gemv.fn(&a, ctx);
  };
  auto gemm = [&](void* out, DType out_dtype, const void* x, const void* w, int64_t n, int64_t k, bool accumulate) {
    GemmArgs a{};
    a.out = out;
    a.x = x;
    a.w = w;
    a.m = B;
    a.n = n;
    a.k = k;
    a.out_stride = n;
    a.x_stride = k;
    a.x_dtype = DType::kBF16;
    a.out_dtype = out_dtype;
    a.accumulate = accumulate;
    a.workspace = m.blas_ws;
    a.workspace_bytes = m.blas_ws_bytes;
    k_gemm.fn(&a, ctx);
  };
  auto norm_cast = [&](const float* x, const float* w) {
    if (!parts.casts) return;
    NormCastArgs a{};
    a.out = m.hb;
    a.x = x;
    a.weight = w;
    a.rows = B;
    a.hidden = H;
    a.out_stride = H;
    a.x_stride = H;
    a.eps = 1e-5f;
    a.out_dtype = DType::kBF16;
    get_kernel(Op::kNormCast, DeviceKind::kCUDA, DType::kF32).fn(&a, ctx);
  };
  if (parts.embed) {
    EmbeddingArgs ea{m.x, m.embed, m.ids, B, H, s.vocab};
    get_kernel(Op::kEmbedding, DeviceKind::kCUDA, DType::kBF16).fn(&ea, ctx);
  }
  for (int64_t l = 0; l < s.layers; ++l) {
    const Layer& L = m.layers[static_cast<size_t>(l)];
    if (parts.qkv) {
      if (gemv_route) {
        gemv(m.qkv, m.x, L.qkv, L.attn_norm, m.qkv_dim, H, false, false);
      } else {
        norm_cast(m.x, L.attn_norm);
        gemm(m.qkv, DType::kF32, m.hb, L.qkv, m.qkv_dim, H, false);
      }
    }
    if (parts.rope) {
      RopeKvWriteArgs rk{};
      rk.q_out = m.qb;
      rk.k_cache = m.k_cache[static_cast<size_t>(l)];
      rk.v_cache = m.v_cache[static_cast<size_t>(l)];
      rk.qkv = m.qkv;
      rk.positions = m.positions;
      rk.slot_mapping = m.slots;
      rk.inv_freq = m.inv_freq;
      rk.n_tokens = B;
      rk.n_heads = nh;
      rk.n_kv_heads = nkv;
      rk.head_dim = hd;
      rk.rot_dim = hd;
      rk.qkv_stride = m.qkv_dim;
      rk.n_slots = B * m.n_blocks * m.block_size;
      rk.attention_scaling = 1.0f;
      rk.norm_eps = 1e-5f;
      rk.q_dtype = DType::kBF16;
      if (!m.k_scale.empty()) {
        rk.k_scale = m.k_scale[static_cast<size_t>(l)];
        rk.v_scale = m.v_scale[static_cast<size_t>(l)];
      }
      get_kernel(Op::kRopeKvWrite, DeviceKind::kCUDA, m.kv_dtype).fn(&rk, ctx);
    }
    if (parts.attn) {
      // As the engine's graphs do: the context bound is the block-table width's capacity.
      int64_t width = 1;
      while (width < m.n_blocks) width *= 2;
      AttentionArgs aa{};
      aa.out = gemv_route ? static_cast<void*>(m.attn_out) : static_cast<void*>(m.attn_bf16);
      aa.q = m.qb;
      aa.k_cache = m.k_cache[static_cast<size_t>(l)];
      aa.v_cache = m.v_cache[static_cast<size_t>(l)];
      aa.cu_seqlens = m.cu_seqlens;
      aa.positions = m.positions;
      aa.context_lens = m.context_lens;
      aa.block_tables = m.block_tables;
      aa.n_seqs = B;
      aa.n_heads = nh;
      aa.n_kv_heads = nkv;
      aa.head_dim = hd;
      aa.block_size = m.block_size;
      aa.max_blocks_per_seq = m.n_blocks;
      aa.q_stride = nh * hd;
      aa.out_stride = nh * hd;
      aa.scale = 1.0f / std::sqrt(static_cast<float>(hd));
      aa.q_dtype = DType::kBF16;
      aa.out_dtype = gemv_route ? DType::kF32 : DType::kBF16;
      aa.max_query_len = 1;
      aa.max_context_len = std::min(width, m.n_blocks) * m.block_size;
      aa.workspace = m.attn_ws;
      aa.workspace_bytes = m.attn_ws_bytes;
      if (!m.k_scale.empty()) {
        aa.k_scale = m.k_scale[static_cast<size_t>(l)];
        aa.v_scale = m.v_scale[static_cast<size_t>(l)];
      }
      get_kernel(Op::kAttention, DeviceKind::kCUDA, m.kv_dtype).fn(&aa, ctx);
    }
    if (parts.o) {
      if (gemv_route) {
        gemv(m.x, m.attn_out, L.o, nullptr, H, nh * hd, false, true);
      } else {
        gemm(m.x, DType::kF32, m.attn_bf16, L.o, H, nh * hd, true);
      }
    }
    if (parts.mlp) {
      if (gemv_route) {
        gemv(m.act, m.x, L.gate_up, L.mlp_norm, 2 * I, H, true, false);
        gemv(m.x, m.act, L.down, nullptr, H, I, false, true);
      } else {
        norm_cast(m.x, L.mlp_norm);
        gemm(m.gate_up, DType::kBF16, m.hb, L.gate_up, 2 * I, H, false);
        if (parts.casts) {
          GatedActArgs sa{m.act_bf16, m.gate_up, B, I, I, 2 * I, DType::kBF16, GatedAct::kSilu};
          get_kernel(Op::kGatedAct, DeviceKind::kCUDA, DType::kF32).fn(&sa, ctx);
        }
        gemm(m.x, DType::kF32, m.act_bf16, L.down, H, I, true);
      }
    }
  }
  if (parts.head) {
    EmbeddingArgs ga{m.sel, m.x, m.logits_idx, B, H, B};
    get_kernel(Op::kEmbedding, DeviceKind::kCUDA, DType::kF32).fn(&ga, ctx);
    if (gemv_route) {
      gemv(m.logits, m.sel, m.lm_head, m.final_norm, s.vocab, H, false, false);
    } else {
      norm_cast(m.sel, m.final_norm);
      gemm(m.logits, DType::kF32, m.hb, m.lm_head, s.vocab, H, false);
    }
  }
  if (parts.sample) {
    SampleArgs sa{};
    sa.token = m.tok;
    sa.logprob = m.logprob;
    sa.status = m.status;
    sa.logits = m.logits;
    sa.temperature = m.temperature;
    sa.top_k = m.top_k;
    sa.top_p = m.top_p;
    sa.min_p = m.min_p;
    sa.repetition_penalty = m.rep;
    sa.presence_penalty = m.pres;
    sa.frequency_penalty = m.freq;
    sa.seed = m.seed;
    sa.offset = m.offset;
    sa.n_logprobs = m.n_logprobs;
    sa.n_rows = B;
    sa.vocab = s.vocab;
    sa.logits_stride = s.vocab;
    sa.top_stride = 0;
    get_kernel(Op::kSample, DeviceKind::kCUDA, DType::kF32).fn(&sa, ctx);
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Microseconds per step: the step captured as one graph, replayed back to back (as the engine
// replays one graph per decode step), median over groups.
double step_us(const Model& m, const Parts& parts, cudaStream_t stream) {
  enqueue_step(m, parts, stream);  // eagerly first, as the engine does (warms cuBLASLt's plans)
  CHECK_CUDA(cudaStreamSynchronize(stream));
  cudaGraph_t graph = nullptr;
  CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  enqueue_step(m, parts, stream);
  CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  CHECK_CUDA(cudaGraphDestroy(graph));
  for (int i = 0; i < 3; ++i) CHECK_CUDA(cudaGraphLaunch(exec, stream));
  CHECK_CUDA(cudaStreamSynchronize(stream));
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  // Groups of >= ~20 ms (at least one replay), 15 groups for short steps, 5 for long ones.
  CHECK_CUDA(cudaEventRecord(a, stream));
  CHECK_CUDA(cudaGraphLaunch(exec, stream));
  CHECK_CUDA(cudaEventRecord(b, stream));
  CHECK_CUDA(cudaEventSynchronize(b));
  float once_ms = 0;
  CHECK_CUDA(cudaEventElapsedTime(&once_ms, a, b));
  const int inner = std::clamp(static_cast<int>(20.0f / std::max(once_ms, 1e-3f)), 1, 20);
  const int groups = once_ms > 10.0f ? 5 : 15;
  std::vector<double> t;
  for (int r = 0; r < groups; ++r) {
    CHECK_CUDA(cudaEventRecord(a, stream));
    for (int i = 0; i < inner; ++i) CHECK_CUDA(cudaGraphLaunch(exec, stream));
    CHECK_CUDA(cudaEventRecord(b, stream));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1e3 / inner);
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  CHECK_CUDA(cudaGraphExecDestroy(exec));
  return median(t);
}

// Read-only bandwidth ceiling in bytes/s over a 4 GiB buffer.
double read_ceiling(cudaStream_t stream) {
  const size_t bytes = size_t{4} << 30;
  uint4* buf = nullptr;
  unsigned* sink = nullptr;
  CHECK_CUDA(cudaMalloc(&buf, bytes));
  CHECK_CUDA(cudaMalloc(&sink, 4));
  CHECK_CUDA(cudaMemsetAsync(buf, 1, bytes, stream));
  int sms = 0;
  CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  std::vector<double> t;
  for (int r = 0; r < 12; ++r) {
    CHECK_CUDA(cudaEventRecord(a, stream));
    read_kernel<<<sms * 8, 512, 0, stream>>>(buf, bytes / 16, sink);
    CHECK_CUDA(cudaEventRecord(b, stream));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    if (r >= 2) t.push_back(ms * 1e-3);
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  CHECK_CUDA(cudaFree(buf));
  CHECK_CUDA(cudaFree(sink));
  return static_cast<double>(bytes) / median(t);
}

using cuda::Knob;
using KnobList = std::vector<std::pair<Knob, int>>;

struct Variant {
  const char* name;
  Parts parts;
  KnobList knobs;  // kernels/cuda_tuning_knobs.h; in force when the step is captured
};

// The production settings: every tuning knob at its default (carveouts at -1, the driver's
// default, rather than unset, because a kernel's carveout attribute outlives the variant that set it).
KnobList base_knobs() {
  return {{Knob::kPdl, 1},          {Knob::kGemvPdl, 1},      {Knob::kAttnTriggerEarly, 0}, {Knob::kAttnMinSplit, 0},
          {Knob::kAttnCarveout, -1}, {Knob::kGemvCarveout, -1}, {Knob::kRopeCarveout, -1},
          {Knob::kAttnStages, 0}};
}
KnobList with(const KnobList& changed) {
  KnobList k = base_knobs();
  for (const auto& c : changed) {
    for (auto& b : k)
      if (b.first == c.first) b.second = c.second;
  }
  return k;
}
void apply(const KnobList& knobs) {
  for (const auto& k : knobs) cuda::set_knob(k.first, k.second);
}

std::vector<Variant> variants_for(bool gemv_route) {
  const KnobList base = base_knobs();
  std::vector<Variant> v;
  v.push_back({"full", Parts{}, base});
  v.push_back({"full, no PDL", Parts{}, with({{Knob::kPdl, 0}})});
  Parts p = Parts{};
  p.rope = false;
  v.push_back({"- rope/kv write", p, base});
  p = Parts{};
  p.attn = false;
  v.push_back({"- attention", p, base});
  p = Parts{};
  p.sample = false;
  v.push_back({"- sampling", p, base});
  if (!gemv_route) {
    p = Parts{};
    p.casts = false;
    v.push_back({"- norm/swiglu casts", p, base});
  }
  p = Parts{};
  p.embed = p.rope = p.attn = p.sample = p.casts = false;
  v.push_back({gemv_route ? "GEMVs only" : "GEMMs only", p, base});
  v.push_back({"attn ring 2 stages", Parts{}, with({{Knob::kAttnStages, 2}})});
  v.push_back({"attn ring 3 stages", Parts{}, with({{Knob::kAttnStages, 3}})});
  if (gemv_route) {  // the alternatives the defaults were chosen against
    v.push_back({"attn trigger early", Parts{}, with({{Knob::kAttnTriggerEarly, 1}})});
    v.push_back({"attn carveout max", Parts{}, with({{Knob::kAttnCarveout, 100}})});
    v.push_back({"all carveout max", Parts{},
                 with({{Knob::kAttnCarveout, 100}, {Knob::kGemvCarveout, 100}, {Knob::kRopeCarveout, 100}})});
    v.push_back({"min split 128", Parts{}, with({{Knob::kAttnMinSplit, 128}})});
    v.push_back({"min split 1024", Parts{}, with({{Knob::kAttnMinSplit, 1024}})});
  }
  return v;
}

// "1,64,256" -> {1, 64, 256}; fallback when unset or empty.
std::vector<int64_t> int_list(const char* text, std::vector<int64_t> fallback) {
  if (text == nullptr || *text == '\0') return fallback;
  std::vector<int64_t> out;
  for (const char* c = text; *c != '\0';) {
    char* end = nullptr;
    const long long v = std::strtoll(c, &end, 10);
    if (end == c) break;
    if (v > 0) out.push_back(v);
    c = *end == ',' ? end + 1 : end;
  }
  return out.empty() ? fallback : out;
}

}  // namespace

int main(int argc, char** argv) {
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t stream = nullptr;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const double read_bw = read_ceiling(stream);
  std::printf("card: %s; read-only ceiling %.0f GB/s\n", prop.name, read_bw * 1e-9);
  const Shape shapes[] = {{"llama-3.2-1b", 2048, 8192, 16, 32, 8, 64, 128256},
                          {"llama-3.1-8b", 4096, 14336, 32, 32, 8, 128, 128256}};
  const char* only = std::getenv("ELI_STEP_BENCH_SHAPES");  // e.g. "llama-3.2-1b"
  const std::vector<int64_t> batches = int_list(std::getenv("ELI_STEP_BENCH_BATCHES"), {1});
  const std::vector<int64_t> contexts = int_list(std::getenv("ELI_STEP_BENCH_CONTEXTS"), {128, 4096});
  std::vector<DType> kv_dtypes;
  {
    const char* e = std::getenv("ELI_STEP_BENCH_KV_DTYPES");
    const std::string list = e != nullptr && *e != '\0' ? e : "bf16";
    if (list.find("bf16") != std::string::npos) kv_dtypes.push_back(DType::kBF16);
    if (list.find("int8") != std::string::npos) kv_dtypes.push_back(DType::kI8);
    if (list.find("fp8") != std::string::npos) kv_dtypes.push_back(DType::kF8E4M3);
    if (kv_dtypes.empty()) kv_dtypes.push_back(DType::kBF16);
  }
  std::string json = "{\"card\": \"" + std::string(prop.name) + "\", \"read_ceiling_gbs\": " +
                     std::to_string(read_bw * 1e-9) + ", \"rows\": [";
  bool first_row = true;
  for (const Shape& s : shapes) {
    if (only != nullptr && std::string(only).find(s.name) == std::string::npos) continue;
    for (int64_t batch : batches) {
      for (int64_t ctx : contexts)
      for (DType kvd : kv_dtypes) {
        {  // the weights and the paged K/V of every layer must fit
          size_t free_b = 0, total_b = 0;
          CHECK_CUDA(cudaMemGetInfo(&free_b, &total_b));
          // The step's weights, the embedding table and the K/V caches.
          const double need = static_cast<double>(step_weight_bytes(s) + static_cast<size_t>(s.vocab * s.hidden) * 2 +
                                                  kv_cache_bytes(s, batch, ctx, kvd));
          if (need > 0.9 * static_cast<double>(free_b)) {
            std::printf("\n%s, batch %lld, context %lld: skipped (%.1f GB of weights and K/V, %.1f GB free)\n", s.name,
                        static_cast<long long>(batch), static_cast<long long>(ctx), need * 1e-9, free_b * 1e-9);
            continue;
          }
        }
        Model m = make_model(s, batch, ctx, kvd);
        const char* kv_name = kvd == DType::kBF16 ? "bf16" : (kvd == DType::kI8 ? "int8" : "fp8");
        const double limit_us = static_cast<double>(m.weight_bytes_per_step() + m.kv_bytes_per_step()) / read_bw * 1e6;
        std::printf("\n%s, batch %lld, context %lld, KV %s (%s route): weights %.3f GB + K/V %.3f GB a step, read limit "
                    "%.1f us/step (%.0f tok/s); %.2f TFLOP a step\n",
                    s.name, static_cast<long long>(batch), static_cast<long long>(ctx), kv_name,
                    m.gemv_route() ? "GEMV" : "GEMM", m.weight_bytes_per_step() * 1e-9, m.kv_bytes_per_step() * 1e-9,
                    limit_us, 1e6 * batch / limit_us, m.flops_per_step() * 1e-12);
        std::printf("  %-24s %10s %9s %10s %11s\n", "variant", "us/step", "tok/s", "of limit", "vs full us");
        double full = 0;
        for (const Variant& v : variants_for(m.gemv_route())) {
          apply(v.knobs);
          const double us = step_us(m, v.parts, stream);
          if (full == 0) full = us;
          std::printf("  %-24s %10.1f %9.0f %9.1f%% %+11.1f\n", v.name, us, 1e6 * batch / us, 100.0 * limit_us / us,
                      us - full);
          std::fflush(stdout);
          json += std::string(first_row ? "" : ",") + "\n  {\"shape\": \"" + s.name +
                  "\", \"batch\": " + std::to_string(batch) + ", \"context\": " + std::to_string(ctx) +
                  ", \"kv_dtype\": \"" + kv_name + "\"" +
                  ", \"variant\": \"" + v.name + "\", \"us_per_step\": " + std::to_string(us) +
                  ", \"limit_us\": " + std::to_string(limit_us) + "}";
          first_row = false;
        }
        apply(base_knobs());
        free_all();
      }
    }
  }
  json += "\n]}\n";
  if (argc > 1) {
    FILE* f = std::fopen(argv[1], "w");
    if (f != nullptr) {
      std::fputs(json.c_str(), f);
      std::fclose(f);
    }
  }
  return 0;
}
