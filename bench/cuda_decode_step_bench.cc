// bench/cuda_decode_step_bench.cc: where the GPU time of one batch-1 bf16 decode step goes. It
// replays the kernel sequence of Transformer::enqueue_mixed's decode route (embedding; per layer
// fused-norm GEMV qkv, RoPE + KV write, split-K paged attention, GEMV o (+= residual), GEMV
// gate/up + SwiGLU, GEMV down (+= residual); row gather, fused-norm GEMV lm_head; greedy sampling)
// through the kernel registry, i.e. the production kernels, on random weights of a model shape
// (Llama-3.2-1B, Llama-3.1-8B) at a context length, captured as one CUDA graph per step the way
// the engine runs decode.
//
// It prints the step time of the full sequence and of variants that leave one kind of kernel out;
// the difference is that kind's marginal cost inside the chain (its own time plus the gap it adds),
// which is what a fusion or a launch-latency fix can win. Also: the same with programmatic
// dependent launch off (ELI_GEMV_PDL=0 and ELI_PDL=0 at capture time), the weight bytes a step
// reads, and a read-only bandwidth ceiling measured in the same run, so the step's fraction of the
// memory limit is known. The outputs' values are not checked here (tests/cpp covers the kernels);
// variants that skip kernels compute garbage on purpose.
//
// Build by hand on the GPU machine (not part of CMake), against a CUDA build of eli_engine:
//   nvcc -x cu -O2 -std=c++17 -arch=sm_90 -I include -I . bench/cuda_decode_step_bench.cc \
//     build/device/libeli_engine.a -lcublasLt -o /tmp/step_bench && /tmp/step_bench [out.json]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "kernels/ops.h"
#include "kernels/registry.h"

using namespace eli;

#define CHECK_CUDA(x)                                                                        \
  do {                                                                                       \
    cudaError_t e_ = (x);                                                                    \
    if (e_ != cudaSuccess) {                                                                 \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)

namespace {

struct Shape {
  const char* name;
  int64_t hidden, inter, layers, n_heads, n_kv_heads, head_dim, vocab;
};

// Which kernels a variant enqueues.
struct Parts {
  bool embed = true, qkv = true, rope = true, attn = true, o = true, mlp = true, head = true, sample = true;
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

void* dmalloc(size_t bytes) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, std::max<size_t>(bytes, 16)));
  return p;
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

struct Layer {
  uint16_t *qkv, *o, *gate_up, *down;
  float *attn_norm, *mlp_norm;
};

struct Model {
  Shape s;
  int64_t ctx = 0, qkv_dim = 0, block_size = 16, n_blocks = 0;
  std::vector<Layer> layers;
  std::vector<uint16_t*> k_cache, v_cache;
  uint16_t *embed = nullptr, *lm_head = nullptr;
  float *final_norm = nullptr, *inv_freq = nullptr;
  // activations
  float *x, *qkv, *attn_out, *act, *sel, *logits;
  uint16_t* qb;
  void* attn_ws;
  size_t attn_ws_bytes;
  // batch (one sequence, one new token at position ctx - 1)
  int32_t *ids, *positions, *cu_seqlens, *context_lens, *block_tables, *slots, *logits_idx;
  // sampling
  int32_t *tok, *status, *n_logprobs, *top_k;
  float* logprob;
  double *temperature, *top_p, *min_p, *rep, *pres, *freq;
  uint64_t *seed, *offset;

  size_t weight_bytes_per_step() const {
    const int64_t H = s.hidden, I = s.inter, hd = s.head_dim;
    const int64_t per_layer = H * qkv_dim + H * s.n_heads * hd + 2 * I * H + H * I;
    return static_cast<size_t>(per_layer * s.layers + s.vocab * H) * 2;
  }
};

Model make_model(const Shape& s, int64_t ctx) {
  Model m;
  m.s = s;
  m.ctx = ctx;
  const int64_t H = s.hidden, I = s.inter, hd = s.head_dim;
  m.qkv_dim = (s.n_heads + 2 * s.n_kv_heads) * hd;
  m.n_blocks = (ctx + m.block_size - 1) / m.block_size + 1;
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
    const size_t kv = static_cast<size_t>(m.n_blocks * m.block_size * s.n_kv_heads * hd);
    m.k_cache.push_back(random_bf16(kv, seed++));
    m.v_cache.push_back(random_bf16(kv, seed++));
  }
  m.embed = random_bf16(static_cast<size_t>(s.vocab * H), seed++);
  m.lm_head = random_bf16(static_cast<size_t>(s.vocab * H), seed++);
  m.final_norm = const_f32(static_cast<size_t>(H), 1.0f);
  std::vector<float> inv(static_cast<size_t>(hd / 2));
  for (int64_t i = 0; i < hd / 2; ++i) inv[static_cast<size_t>(i)] = std::pow(500000.0f, -2.0f * i / hd);
  m.inv_freq = upload(inv);
  m.x = const_f32(static_cast<size_t>(H), 0.5f);
  m.qkv = const_f32(static_cast<size_t>(m.qkv_dim), 0.f);
  m.attn_out = const_f32(static_cast<size_t>(s.n_heads * hd), 0.f);
  m.act = const_f32(static_cast<size_t>(I), 0.f);
  m.sel = const_f32(static_cast<size_t>(H), 0.f);
  m.logits = const_f32(static_cast<size_t>(s.vocab), 0.f);
  m.qb = random_bf16(static_cast<size_t>(s.n_heads * hd), seed++);
  m.attn_ws_bytes = static_cast<size_t>(kAttentionMaxSplits) * s.n_heads * (hd + 2) * sizeof(float);
  m.attn_ws = dmalloc(m.attn_ws_bytes);
  std::vector<int32_t> table(static_cast<size_t>(m.n_blocks));
  for (int64_t b = 0; b < m.n_blocks; ++b) table[static_cast<size_t>(b)] = static_cast<int32_t>(b);
  m.ids = upload(std::vector<int32_t>{7});
  m.positions = upload(std::vector<int32_t>{static_cast<int32_t>(ctx - 1)});
  m.cu_seqlens = upload(std::vector<int32_t>{0, 1});
  m.context_lens = upload(std::vector<int32_t>{static_cast<int32_t>(ctx)});
  m.block_tables = upload(table);
  m.slots = upload(std::vector<int32_t>{static_cast<int32_t>(ctx - 1)});
  m.logits_idx = upload(std::vector<int32_t>{0});
  m.tok = upload(std::vector<int32_t>{0});
  m.status = upload(std::vector<int32_t>{0});
  m.n_logprobs = upload(std::vector<int32_t>{-1});
  m.top_k = upload(std::vector<int32_t>{0});
  m.logprob = const_f32(1, 0.f);
  m.temperature = upload(std::vector<double>{0.0});
  m.top_p = upload(std::vector<double>{1.0});
  m.min_p = upload(std::vector<double>{0.0});
  m.rep = upload(std::vector<double>{1.0});
  m.pres = upload(std::vector<double>{0.0});
  m.freq = upload(std::vector<double>{0.0});
  m.seed = upload(std::vector<uint64_t>{1});
  m.offset = upload(std::vector<uint64_t>{0});
  CHECK_CUDA(cudaDeviceSynchronize());
  return m;
}

// The decode route of Transformer::enqueue_mixed for one sequence (keep in step with it).
void enqueue_step(const Model& m, const Parts& parts, cudaStream_t stream) {
  const Shape& s = m.s;
  const int64_t H = s.hidden, I = s.inter, nh = s.n_heads, nkv = s.n_kv_heads, hd = s.head_dim;
  const ExecContext ctx{nullptr, stream};
  const KernelEntry& k_gemv = get_kernel(Op::kGemv, DeviceKind::kCUDA, DType::kBF16);
  auto gemv = [&](float* out, const float* x, const void* w, const float* norm_w, int64_t n, int64_t k, bool swiglu,
                  bool accumulate) {
    GemvArgs a{};
    a.out = out;
    a.x = x;
    a.w = w;
    a.norm_weight = norm_w;
    a.m = 1;
    a.n = n;
    a.k = k;
    a.out_stride = swiglu ? n / 2 : n;
    a.x_stride = k;
    a.norm_eps = 1e-5f;
    a.swiglu = swiglu;
    a.accumulate = accumulate;
    k_gemv.fn(&a, ctx);
  };
  if (parts.embed) {
    EmbeddingArgs ea{m.x, m.embed, m.ids, 1, H, s.vocab};
    get_kernel(Op::kEmbedding, DeviceKind::kCUDA, DType::kBF16).fn(&ea, ctx);
  }
  for (int64_t l = 0; l < s.layers; ++l) {
    const Layer& L = m.layers[static_cast<size_t>(l)];
    if (parts.qkv) gemv(m.qkv, m.x, L.qkv, L.attn_norm, m.qkv_dim, H, false, false);
    if (parts.rope) {
      RopeKvWriteArgs rk{};
      rk.q_out = m.qb;
      rk.k_cache = m.k_cache[static_cast<size_t>(l)];
      rk.v_cache = m.v_cache[static_cast<size_t>(l)];
      rk.qkv = m.qkv;
      rk.positions = m.positions;
      rk.slot_mapping = m.slots;
      rk.inv_freq = m.inv_freq;
      rk.n_tokens = 1;
      rk.n_heads = nh;
      rk.n_kv_heads = nkv;
      rk.head_dim = hd;
      rk.rot_dim = hd;
      rk.qkv_stride = m.qkv_dim;
      rk.n_slots = m.n_blocks * m.block_size;
      rk.attention_scaling = 1.0f;
      rk.norm_eps = 1e-5f;
      rk.q_dtype = DType::kBF16;
      get_kernel(Op::kRopeKvWrite, DeviceKind::kCUDA, DType::kBF16).fn(&rk, ctx);
    }
    if (parts.attn) {
      // As the engine's graphs do: the context bound is the block-table width's capacity.
      int64_t width = 1;
      while (width < m.n_blocks) width *= 2;
      AttentionArgs aa{};
      aa.out = m.attn_out;
      aa.q = m.qb;
      aa.k_cache = m.k_cache[static_cast<size_t>(l)];
      aa.v_cache = m.v_cache[static_cast<size_t>(l)];
      aa.cu_seqlens = m.cu_seqlens;
      aa.positions = m.positions;
      aa.context_lens = m.context_lens;
      aa.block_tables = m.block_tables;
      aa.n_seqs = 1;
      aa.n_heads = nh;
      aa.n_kv_heads = nkv;
      aa.head_dim = hd;
      aa.block_size = m.block_size;
      aa.max_blocks_per_seq = m.n_blocks;
      aa.q_stride = nh * hd;
      aa.out_stride = nh * hd;
      aa.scale = 1.0f / std::sqrt(static_cast<float>(hd));
      aa.q_dtype = DType::kBF16;
      aa.out_dtype = DType::kF32;
      aa.max_query_len = 1;
      aa.max_context_len = std::min(width, m.n_blocks) * m.block_size;
      aa.workspace = m.attn_ws;
      aa.workspace_bytes = m.attn_ws_bytes;
      get_kernel(Op::kAttention, DeviceKind::kCUDA, DType::kBF16).fn(&aa, ctx);
    }
    if (parts.o) gemv(m.x, m.attn_out, L.o, nullptr, H, nh * hd, false, true);
    if (parts.mlp) {
      gemv(m.act, m.x, L.gate_up, L.mlp_norm, 2 * I, H, true, false);
      gemv(m.x, m.act, L.down, nullptr, H, I, false, true);
    }
  }
  if (parts.head) {
    EmbeddingArgs ga{m.sel, m.x, m.logits_idx, 1, H, 1};
    get_kernel(Op::kEmbedding, DeviceKind::kCUDA, DType::kF32).fn(&ga, ctx);
    gemv(m.logits, m.sel, m.lm_head, m.final_norm, s.vocab, H, false, false);
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
    sa.n_rows = 1;
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
  cudaGraph_t graph = nullptr;
  CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  enqueue_step(m, parts, stream);
  CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  CHECK_CUDA(cudaGraphDestroy(graph));
  for (int i = 0; i < 5; ++i) CHECK_CUDA(cudaGraphLaunch(exec, stream));
  CHECK_CUDA(cudaStreamSynchronize(stream));
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  std::vector<double> t;
  constexpr int kInner = 20;
  for (int r = 0; r < 15; ++r) {
    CHECK_CUDA(cudaEventRecord(a, stream));
    for (int i = 0; i < kInner; ++i) CHECK_CUDA(cudaGraphLaunch(exec, stream));
    CHECK_CUDA(cudaEventRecord(b, stream));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1e3 / kInner);
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  CHECK_CUDA(cudaGraphExecDestroy(exec));
  return median(t);
}

// Read-only bandwidth ceiling in bytes/s over a 4 GiB buffer.
double read_ceiling(cudaStream_t stream) {
  const size_t bytes = size_t{4} << 30;
  auto* buf = static_cast<uint4*>(dmalloc(bytes));
  CHECK_CUDA(cudaMemsetAsync(buf, 1, bytes, stream));
  auto* sink = static_cast<unsigned*>(dmalloc(4));
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

void set_pdl(bool on) {
  setenv("ELI_GEMV_PDL", on ? "1" : "0", 1);
  setenv("ELI_PDL", on ? "1" : "0", 1);
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
  std::string json = "{\"card\": \"" + std::string(prop.name) + "\", \"read_ceiling_gbs\": " +
                     std::to_string(read_bw * 1e-9) + ", \"rows\": [";
  bool first_row = true;
  for (const Shape& s : shapes) {
    if (only != nullptr && std::string(only).find(s.name) == std::string::npos) continue;
    for (int64_t ctx : {int64_t{128}, int64_t{4096}}) {
      Model m = make_model(s, ctx);
      const double limit_us = static_cast<double>(m.weight_bytes_per_step()) / read_bw * 1e6;
      struct Variant {
        const char* name;
        Parts parts;
        bool pdl;
        std::vector<std::pair<const char*, const char*>> env;  // knobs read at capture time
      };
      // The production settings (every tuning knob at its default; carveouts are explicit because a
      // kernel's carveout attribute outlives the variant that set it).
      const std::vector<std::pair<const char*, const char*>> base = {
          {"ELI_ATTN_CARVEOUT", "-1"}, {"ELI_GEMV_CARVEOUT", "-1"}, {"ELI_ROPE_CARVEOUT", "-1"},
          {"ELI_ATTN_TRIGGER", "0"}, {"ELI_ATTN_MIN_SPLIT", "0"}};
      auto with = [&](std::vector<std::pair<const char*, const char*>> extra) {
        std::vector<std::pair<const char*, const char*>> e = base;
        for (const auto& kv : extra) {
          for (auto& b : e)
            if (std::string(b.first) == kv.first) b.second = kv.second;
        }
        return e;
      };
      std::vector<Variant> variants;
      variants.push_back({"full", Parts{}, true, base});
      variants.push_back({"full, no PDL", Parts{}, false, base});
      Parts p = Parts{};
      p.rope = false;
      variants.push_back({"- rope/kv write", p, true, base});
      p = Parts{};
      p.attn = false;
      variants.push_back({"- attention", p, true, base});
      p = Parts{};
      p.sample = false;
      variants.push_back({"- sampling", p, true, base});
      p = Parts{};
      p.embed = p.rope = p.attn = p.sample = false;
      variants.push_back({"GEMVs only", p, true, base});
      // Tuning alternatives (the knobs of kernels/cuda/attention_*.cu, gemv.cu, mixed_elementwise.cu).
      variants.push_back({"attn trigger early", Parts{}, true, with({{"ELI_ATTN_TRIGGER", "1"}})});
      variants.push_back({"attn carveout max", Parts{}, true, with({{"ELI_ATTN_CARVEOUT", "100"}})});
      variants.push_back({"all carveout max", Parts{}, true,
                          with({{"ELI_ATTN_CARVEOUT", "100"}, {"ELI_GEMV_CARVEOUT", "100"}, {"ELI_ROPE_CARVEOUT", "100"}})});
      variants.push_back({"min split 128", Parts{}, true, with({{"ELI_ATTN_MIN_SPLIT", "128"}})});
      variants.push_back({"min split 1024", Parts{}, true, with({{"ELI_ATTN_MIN_SPLIT", "1024"}})});
      std::printf("\n%s, context %lld: weights %.3f GB/step, read limit %.1f us/step (%.0f tok/s)\n", s.name,
                  static_cast<long long>(ctx), m.weight_bytes_per_step() * 1e-9, limit_us, 1e6 / limit_us);
      std::printf("  %-24s %10s %9s %10s %11s\n", "variant", "us/step", "tok/s", "of limit", "vs full us");
      double full = 0;
      for (const Variant& v : variants) {
        set_pdl(v.pdl);
        for (const auto& kv : v.env) setenv(kv.first, kv.second, 1);
        const double us = step_us(m, v.parts, stream);
        if (full == 0) full = us;
        std::printf("  %-24s %10.1f %9.0f %9.1f%% %+11.1f\n", v.name, us, 1e6 / us, 100.0 * limit_us / us, us - full);
        std::fflush(stdout);
        json += std::string(first_row ? "" : ",") + "\n  {\"shape\": \"" + s.name + "\", \"context\": " +
                std::to_string(ctx) + ", \"variant\": \"" + v.name + "\", \"us_per_step\": " + std::to_string(us) +
                ", \"limit_us\": " + std::to_string(limit_us) + "}";
        first_row = false;
      }
      for (const auto& kv : base) setenv(kv.first, kv.second, 1);
      set_pdl(true);
      CHECK_CUDA(cudaDeviceSynchronize());
      // Free this model before the next (the 8B needs 16 GB).
      for (const Layer& L : m.layers) {
        for (void* q : {static_cast<void*>(L.qkv), static_cast<void*>(L.o), static_cast<void*>(L.gate_up),
                        static_cast<void*>(L.down), static_cast<void*>(L.attn_norm), static_cast<void*>(L.mlp_norm)})
          CHECK_CUDA(cudaFree(q));
      }
      for (size_t l = 0; l < m.k_cache.size(); ++l) {
        CHECK_CUDA(cudaFree(m.k_cache[l]));
        CHECK_CUDA(cudaFree(m.v_cache[l]));
      }
      CHECK_CUDA(cudaFree(m.embed));
      CHECK_CUDA(cudaFree(m.lm_head));
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
