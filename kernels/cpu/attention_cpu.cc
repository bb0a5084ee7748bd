// kernels/cpu/attention_cpu.cc: threaded CPU paged attention driver. Work items are
// (query token, head) pairs, run in parallel; each computes its scores into a thread-local
// scratch row, softmax (max-subtracted, f32), then the weighted sum of V (cpu_isa.h
// attention_row). Masking is attention_kv_range() from the reference, so all CPU kernels agree.
// An int8 / fp8 e4m3 cache (kernels/ref/kv_quant.h) is dequantized inside the row loop: the dot of
// q with a stored row is taken on the unscaled values and multiplied by the row's scale once, and
// V rows are added with weight p_j * scale_j; no dequantized copy of the cache is ever made.
#include <cmath>
#include <vector>

#include "eli/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ref/kv_quant.h"
#include "kernels/ref/ref_kernels.h"
#include "runtime/core/thread_pool.h"

namespace eli {

namespace {

// The 256 values of an e4m3 byte (built once, thread-safe static init).
const float* e4m3_table() {
  static const struct Table {
    float v[256];
    Table() {
      for (int i = 0; i < 256; ++i) v[i] = e4m3_to_f32(static_cast<uint8_t>(i));
    }
  } table;
  return table.v;
}

inline float kv_value(int8_t x, const float*) { return static_cast<float>(x); }
inline float kv_value(uint8_t x, const float* lut) { return lut[x]; }

// attention_row (cpu_isa.h) for a quantized cache of element type S (int8_t: int8, uint8_t: e4m3).
template <typename S>
void attention_row_quant(const AttentionArgs& a, const int32_t* blocks, int64_t kv_head, const float* q,
                         float* out, int64_t lo, int64_t hi, float* scratch) {
  const int64_t hd = a.head_dim, bs = a.block_size;
  const float* lut = e4m3_table();
  auto row_of = [&](int64_t j) {  // (slot, kv head) row index of kv position j
    return (static_cast<int64_t>(blocks[j / bs]) * bs + j % bs) * a.n_kv_heads + kv_head;
  };
  const S* kc = static_cast<const S*>(a.k_cache);
  const S* vc = static_cast<const S*>(a.v_cache);
  const int64_t n = hi - lo + 1;
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t r = row_of(lo + j);
    const S* k = kc + r * hd;
    float s = 0.0f;
    for (int64_t d = 0; d < hd; ++d) s += q[d] * kv_value(k[d], lut);
    scratch[j] = s * a.k_scale[r] * a.scale;
    mx = scratch[j] > mx ? scratch[j] : mx;
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    scratch[j] = std::exp(scratch[j] - mx);
    sum += scratch[j];
  }
  for (int64_t d = 0; d < hd; ++d) out[d] = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t r = row_of(lo + j);
    const S* v = vc + r * hd;
    const float w = scratch[j] * a.v_scale[r];
    for (int64_t d = 0; d < hd; ++d) out[d] += w * kv_value(v[d], lut);
  }
  const float inv = 1.0f / sum;
  for (int64_t d = 0; d < hd; ++d) out[d] *= inv;
}

using AttentionRowFn = void (*)(const AttentionArgs&, const int32_t*, int64_t, const float*, float*, int64_t,
                                int64_t, float*);

void attention_cpu_run(const AttentionArgs& a, DType cache, const CpuIsa& isa, ThreadPool* pool) {
  ELI_CHECK(a.n_kv_heads > 0 && a.n_heads > 0 && a.n_heads % a.n_kv_heads == 0, "attention: n_heads ",
            a.n_heads, " not a multiple of n_kv_heads ", a.n_kv_heads);
  ELI_CHECK(a.block_size > 0 && a.head_dim > 0 && a.n_seqs >= 0, "attention: bad sizes");
  ELI_CHECK_KIND(kUnsupported, a.q_dtype == DType::kF32 && a.out_dtype == DType::kF32,
                 "CPU attention takes f32 queries and outputs");
  const bool quant = kv_dtype_quantized(cache);
  ELI_CHECK(!quant || (a.k_scale != nullptr && a.v_scale != nullptr), "attention: a ", dtype_name(cache),
            " KV cache needs k_scale and v_scale");
  const AttentionRowFn row_fn = cache == DType::kI8        ? attention_row_quant<int8_t>
                                : cache == DType::kF8E4M3 ? attention_row_quant<uint8_t>
                                                          : isa.attention_row;
  const int64_t n_tokens = a.cu_seqlens[a.n_seqs];
  std::vector<int32_t> seq_of_token(static_cast<size_t>(n_tokens));  // (T)
  for (int64_t s = 0; s < a.n_seqs; ++s) {
    ELI_CHECK(a.cu_seqlens[s] >= 0 && a.cu_seqlens[s] <= a.cu_seqlens[s + 1] && a.cu_seqlens[s + 1] <= n_tokens,
              "attention: cu_seqlens not monotone at seq ", s);
    for (int64_t t = a.cu_seqlens[s]; t < a.cu_seqlens[s + 1]; ++t) seq_of_token[t] = static_cast<int32_t>(s);
  }
  const int64_t group = a.n_heads / a.n_kv_heads;
  const int64_t max_kv = a.max_blocks_per_seq * a.block_size;
  parallel_for(pool, n_tokens * a.n_heads, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> scratch;  // (visible kv positions)
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / a.n_heads, h = i % a.n_heads;
      const int64_t s = seq_of_token[t];
      float* out = static_cast<float*>(a.out) + t * a.out_stride + h * a.head_dim;
      int64_t lo, hi;
      attention_kv_range(a.positions[t], a.context_lens[s], max_kv, a.sliding_window, &lo, &hi);
      if (hi < lo) {
        for (int64_t d = 0; d < a.head_dim; ++d) out[d] = 0.0f;
        continue;
      }
      if (scratch.size() < static_cast<size_t>(hi - lo + 1)) scratch.resize(static_cast<size_t>(hi - lo + 1));
      row_fn(a, a.block_tables + s * a.max_blocks_per_seq, h / group,
                        static_cast<const float*>(a.q) + t * a.q_stride + h * a.head_dim, out, lo, hi, scratch.data());
    }
  });
}

}  // namespace

template <CpuIsaKind I>
void attention_cpu(const void* args, const ExecContext& ctx) {
  attention_cpu_run(*static_cast<const AttentionArgs*>(args), DType::kF32, isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void attention_cpu_i8(const void* args, const ExecContext& ctx) {
  attention_cpu_run(*static_cast<const AttentionArgs*>(args), DType::kI8, isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void attention_cpu_fp8(const void* args, const ExecContext& ctx) {
  attention_cpu_run(*static_cast<const AttentionArgs*>(args), DType::kF8E4M3, isa_table<I>(), ctx.pool);
}
ELI_CPU_INSTANTIATE(attention_cpu)
ELI_CPU_INSTANTIATE(attention_cpu_i8)
ELI_CPU_INSTANTIATE(attention_cpu_fp8)

}  // namespace eli
