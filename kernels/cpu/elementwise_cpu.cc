// kernels/cpu/elementwise_cpu.cc: threaded CPU drivers of the small ops (Embedding, RmsNorm, Rope,
// Swiglu), parallel over rows/tokens, inner loops from cpu_isa.h. Semantics as the references.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "eli/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "runtime/core/thread_pool.h"

namespace eli {

namespace {

// Rows per chunk so that one chunk is at least ~16K elements of work.
int64_t row_grain(int64_t row_elems) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_elems)); }

void embedding_run(const EmbeddingArgs& a, bool bf16, const CpuIsa& isa, ThreadPool* pool) {
  ELI_CHECK(a.vocab > 0 && a.hidden >= 0 && a.n_tokens >= 0, "embedding: bad sizes");
  parallel_for(pool, a.n_tokens, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int64_t id = a.ids[t];
      id = id < 0 ? 0 : (id >= a.vocab ? a.vocab - 1 : id);
      float* out = a.out + t * a.hidden;
      if (bf16) {
        isa.bf16_to_f32(static_cast<const uint16_t*>(a.table) + id * a.hidden, out, a.hidden);
      } else {
        std::memcpy(out, static_cast<const float*>(a.table) + id * a.hidden, sizeof(float) * a.hidden);
      }
    }
  }, row_grain(a.hidden));
}

void rms_norm_run(const RmsNormArgs& a, const CpuIsa& isa, ThreadPool* pool) {
  ELI_CHECK(a.hidden > 0 && a.rows >= 0, "rms_norm: bad sizes");
  parallel_for(pool, a.rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = a.x + r * a.x_stride;
      if (a.residual != nullptr) {
        float* res = a.residual + r * a.hidden;
        isa.add_inplace(res, src, a.hidden);
        src = res;
      }
      const double ms = isa.sum_sq(src, a.hidden) / static_cast<double>(a.hidden);
      const float inv = static_cast<float>(1.0 / std::sqrt(ms + static_cast<double>(a.eps)));
      isa.scale_mul(a.out + r * a.out_stride, src, a.weight, a.weight_offset, inv, a.hidden);
    }
  }, row_grain(a.hidden));
}

void rope_run(const RopeArgs& a, const CpuIsa& isa, ThreadPool* pool) {
  ELI_CHECK(a.rot_dim >= 0 && a.rot_dim % 2 == 0 && a.rot_dim <= a.head_dim, "rope: bad rot_dim ",
            a.rot_dim, " for head_dim ", a.head_dim);
  const int64_t half = a.rot_dim / 2;
  if (half == 0) return;
  parallel_for(pool, a.n_tokens, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> cs;  // (2, half): cos then sin
    cs.resize(static_cast<size_t>(2 * half));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t table = a.table_of_token != nullptr ? a.table_of_token[t] : 0;
      const float* inv_freq = a.inv_freq + table * half;
      const float pos = static_cast<float>(a.positions[t]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = pos * inv_freq[i];  // f32 product, as HF transformers
        cs[i] = static_cast<float>(std::cos(static_cast<double>(angle)) * a.attention_scaling);
        cs[half + i] = static_cast<float>(std::sin(static_cast<double>(angle)) * a.attention_scaling);
      }
      for (int64_t h = 0; h < a.n_heads; ++h)
        isa.rope_row(a.x + t * a.row_stride + h * a.head_dim, cs.data(), cs.data() + half, half);
    }
  }, row_grain(a.n_heads * a.head_dim));
}

void swiglu_run(const SwigluArgs& a, const CpuIsa& isa, ThreadPool* pool) {
  ELI_CHECK(a.rows >= 0 && a.inter >= 0, "swiglu: bad sizes");
  parallel_for(pool, a.rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* gate = a.gate_up + r * a.in_stride;
      isa.swiglu_row(a.out + r * a.out_stride, gate, gate + a.inter, a.inter);
    }
  }, row_grain(a.inter));
}

}  // namespace

template <CpuIsaKind I>
void embedding_cpu_f32(const void* args, const ExecContext& ctx) {
  embedding_run(*static_cast<const EmbeddingArgs*>(args), false, isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void embedding_cpu_bf16(const void* args, const ExecContext& ctx) {
  embedding_run(*static_cast<const EmbeddingArgs*>(args), true, isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void rms_norm_cpu(const void* args, const ExecContext& ctx) {
  rms_norm_run(*static_cast<const RmsNormArgs*>(args), isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void rope_cpu(const void* args, const ExecContext& ctx) {
  rope_run(*static_cast<const RopeArgs*>(args), isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void swiglu_cpu(const void* args, const ExecContext& ctx) {
  swiglu_run(*static_cast<const SwigluArgs*>(args), isa_table<I>(), ctx.pool);
}
ELI_CPU_INSTANTIATE(embedding_cpu_f32)
ELI_CPU_INSTANTIATE(embedding_cpu_bf16)
ELI_CPU_INSTANTIATE(rms_norm_cpu)
ELI_CPU_INSTANTIATE(rope_cpu)
ELI_CPU_INSTANTIATE(swiglu_cpu)

}  // namespace eli
