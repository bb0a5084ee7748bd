// kernels/cpu/attention_cpu.cc: threaded CPU paged attention driver. Work items are
// (query token, head) pairs, run in parallel; each computes its scores into a thread-local
// scratch row, softmax (max-subtracted, f32), then the weighted sum of V (cpu_isa.h
// attention_row). Masking is attention_kv_range() from the reference, so all CPU kernels agree.
#include <vector>

#include "eli/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ref/ref_kernels.h"
#include "runtime/core/thread_pool.h"

namespace eli {

namespace {

void attention_cpu_run(const AttentionArgs& a, const CpuIsa& isa, ThreadPool* pool) {
  ELI_CHECK(a.n_kv_heads > 0 && a.n_heads > 0 && a.n_heads % a.n_kv_heads == 0, "attention: n_heads ",
            a.n_heads, " not a multiple of n_kv_heads ", a.n_kv_heads);
  ELI_CHECK(a.block_size > 0 && a.head_dim > 0 && a.n_seqs >= 0, "attention: bad sizes");
  ELI_CHECK_KIND(kUnsupported, a.q_dtype == DType::kF32 && a.out_dtype == DType::kF32,
                 "CPU attention takes f32 queries and outputs");
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
      isa.attention_row(a, a.block_tables + s * a.max_blocks_per_seq, h / group,
                        static_cast<const float*>(a.q) + t * a.q_stride + h * a.head_dim, out, lo, hi, scratch.data());
    }
  });
}

}  // namespace

template <CpuIsaKind I>
void attention_cpu(const void* args, const ExecContext& ctx) {
  attention_cpu_run(*static_cast<const AttentionArgs*>(args), isa_table<I>(), ctx.pool);
}
ELI_CPU_INSTANTIATE(attention_cpu)

}  // namespace eli
