// kernels/cpu/elementwise_cpu.cc: threaded CPU drivers of the small ops (Embedding, NormCast,
// GatedAct, RopeKvWrite; f32 activations, KV cache f32 or int8 / fp8 e4m3 with per-(slot, kv head)
// scales quantized here as kernels/ref/kv_quant.h says), parallel over rows/tokens, inner loops
// from cpu_isa.h. Semantics as the references (kernels/ref).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "eli/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ref/activation.h"
#include "kernels/ref/kv_quant.h"
#include "runtime/core/thread_pool.h"

namespace eli {

namespace {

// Rows per chunk so that one chunk is at least ~16K elements of work.
int64_t row_grain(int64_t row_elems) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_elems)); }

void embedding_run(const EmbeddingArgs& a, bool bf16, const CpuIsa& isa, ThreadPool* pool) {
  ELI_CHECK(a.vocab > 0 && a.hidden >= 0 && a.n_tokens >= 0, "embedding: bad sizes");
  parallel_for(pool, a.n_tokens, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int64_t id = static_cast<int64_t>(a.ids[t]) - a.row_offset;
      float* out = a.out + t * a.hidden;
      if (a.zero_outside && (id < 0 || id >= a.vocab)) {  // another rank's row
        std::memset(out, 0, sizeof(float) * a.hidden);
        continue;
      }
      id = id < 0 ? 0 : (id >= a.vocab ? a.vocab - 1 : id);
      if (bf16) {
        isa.bf16_to_f32(static_cast<const uint16_t*>(a.table) + id * a.hidden, out, a.hidden);
      } else {
        std::memcpy(out, static_cast<const float*>(a.table) + id * a.hidden, sizeof(float) * a.hidden);
      }
      if (a.scale != 1.0f) {
        for (int64_t j = 0; j < a.hidden; ++j) out[j] *= a.scale;
      }
    }
  }, row_grain(a.hidden));
}

// RMSNorm of one row into out (which may alias x when !accumulate).
inline void norm_row(const CpuIsa& isa, float* out, const float* x, const float* w, int64_t n, float eps,
                     float offset, bool accumulate, std::vector<float>& tmp) {
  const double ms = isa.sum_sq(x, n) / static_cast<double>(n);
  const float inv = static_cast<float>(1.0 / std::sqrt(ms + static_cast<double>(eps)));
  if (!accumulate) {
    isa.scale_mul(out, x, w, offset, inv, n);
    return;
  }
  tmp.resize(static_cast<size_t>(n));
  isa.scale_mul(tmp.data(), x, w, offset, inv, n);
  isa.add_inplace(out, tmp.data(), n);
}

void norm_cast_run(const NormCastArgs& a, const CpuIsa& isa, ThreadPool* pool) {
  ELI_CHECK(a.hidden > 0 && a.rows >= 0, "norm_cast: bad sizes");
  ELI_CHECK_KIND(kUnsupported, a.out_dtype == DType::kF32, "CPU norm_cast writes float32, not ",
                 dtype_name(a.out_dtype));
  parallel_for(pool, a.rows, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> tmp;
    for (int64_t r = r0; r < r1; ++r) {
      norm_row(isa, static_cast<float*>(a.out) + r * a.out_stride, a.x + r * a.x_stride, a.weight, a.hidden, a.eps,
               a.weight_offset, a.accumulate, tmp);
    }
  }, row_grain(a.hidden));
}

void gated_act_run(const GatedActArgs& a, const CpuIsa& isa, ThreadPool* pool) {
  ELI_CHECK(a.rows >= 0 && a.inter >= 0, "gated_act: bad sizes");
  ELI_CHECK_KIND(kUnsupported, a.dtype == DType::kF32, "CPU gated_act works in float32, not ", dtype_name(a.dtype));
  ELI_CHECK(a.act == GatedAct::kSilu || a.act == GatedAct::kGeluTanh, "gated_act: no activation given");
  parallel_for(pool, a.rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* gate = static_cast<const float*>(a.gate_up) + r * a.in_stride;
      float* out = static_cast<float*>(a.out) + r * a.out_stride;
      if (a.act == GatedAct::kSilu) {
        isa.swiglu_row(out, gate, gate + a.inter, a.inter);
      } else {
        for (int64_t j = 0; j < a.inter; ++j) out[j] = act_gelu_tanh(gate[j]) * gate[a.inter + j];
      }
    }
  }, row_grain(a.inter));
}

// Per token: q/k RMSNorm (optional), RoPE of q and k, q -> q_out, k/v -> their cache slots (f32,
// or quantized per (slot, kv head) row with its scale for an int8 / fp8 cache).
void rope_kv_write_run(const RopeKvWriteArgs& a, DType cache, const CpuIsa& isa, ThreadPool* pool) {
  ELI_CHECK(a.rot_dim >= 0 && a.rot_dim % 2 == 0 && a.rot_dim <= a.head_dim, "rope: bad rot_dim ", a.rot_dim,
            " for head_dim ", a.head_dim);
  ELI_CHECK_KIND(kUnsupported, a.q_dtype == DType::kF32, "CPU rope_kv_write writes float32 queries, not ",
                 dtype_name(a.q_dtype));
  const int64_t hd = a.head_dim, nh = a.n_heads, nkv = a.n_kv_heads, half = a.rot_dim / 2;
  const int64_t kv_row = nkv * hd;
  const bool quant = kv_dtype_quantized(cache);
  ELI_CHECK(!quant || (a.k_scale != nullptr && a.v_scale != nullptr), "rope_kv_write: a ", dtype_name(cache),
            " KV cache needs k_scale and v_scale");
  float* q_out = static_cast<float*>(a.q_out);
  float* k_cache = static_cast<float*>(a.k_cache);
  float* v_cache = static_cast<float*>(a.v_cache);
  parallel_for(pool, a.n_tokens, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> cs, krow, tmp;  // (2, half) cos then sin; one token's k heads
    cs.resize(static_cast<size_t>(2 * half));
    krow.resize(static_cast<size_t>(kv_row));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t table = a.table_of_token != nullptr ? a.table_of_token[t] : 0;
      const float* inv_freq = a.inv_freq + table * half;
      const float pos = static_cast<float>(a.positions[t]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = pos * inv_freq[i];  // f32 product, as HF transformers
        cs[i] = static_cast<float>(std::cos(static_cast<double>(angle)) * a.attention_scaling);
        cs[half + i] = static_cast<float>(std::sin(static_cast<double>(angle)) * a.attention_scaling);
      }
      const float* row = a.qkv + t * a.qkv_stride;
      float* q = q_out + t * nh * hd;
      for (int64_t h = 0; h < nh; ++h) {
        if (a.q_norm != nullptr) {
          norm_row(isa, q + h * hd, row + h * hd, a.q_norm, hd, a.norm_eps, 0.0f, false, tmp);
        } else {
          std::memcpy(q + h * hd, row + h * hd, sizeof(float) * hd);
        }
        if (half > 0) isa.rope_row(q + h * hd, cs.data(), cs.data() + half, half);
      }
      const int64_t slot = a.slot_mapping[t];
      if (slot < 0 || slot >= a.n_slots) continue;
      const float* k = row + nh * hd;
      for (int64_t h = 0; h < nkv; ++h) {
        if (a.k_norm != nullptr) {
          norm_row(isa, krow.data() + h * hd, k + h * hd, a.k_norm, hd, a.norm_eps, 0.0f, false, tmp);
        } else {
          std::memcpy(krow.data() + h * hd, k + h * hd, sizeof(float) * hd);
        }
        if (half > 0) isa.rope_row(krow.data() + h * hd, cs.data(), cs.data() + half, half);
      }
      if (quant) {
        const float* v = row + (nh + nkv) * hd;
        for (int64_t h = 0; h < nkv; ++h) {
          const int64_t r = slot * nkv + h;  // byte offset r * hd: one byte per element
          a.k_scale[r] = kv_quantize_row(krow.data() + h * hd, hd, cache, static_cast<uint8_t*>(a.k_cache) + r * hd);
          a.v_scale[r] = kv_quantize_row(v + h * hd, hd, cache, static_cast<uint8_t*>(a.v_cache) + r * hd);
        }
        continue;
      }
      std::memcpy(k_cache + slot * kv_row, krow.data(), sizeof(float) * kv_row);
      std::memcpy(v_cache + slot * kv_row, row + (nh + nkv) * hd, sizeof(float) * kv_row);
    }
  }, row_grain((nh + 2 * nkv) * hd));
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
void norm_cast_cpu(const void* args, const ExecContext& ctx) {
  norm_cast_run(*static_cast<const NormCastArgs*>(args), isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void gated_act_cpu(const void* args, const ExecContext& ctx) {
  gated_act_run(*static_cast<const GatedActArgs*>(args), isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void rope_kv_write_cpu(const void* args, const ExecContext& ctx) {
  rope_kv_write_run(*static_cast<const RopeKvWriteArgs*>(args), DType::kF32, isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void rope_kv_write_cpu_i8(const void* args, const ExecContext& ctx) {
  rope_kv_write_run(*static_cast<const RopeKvWriteArgs*>(args), DType::kI8, isa_table<I>(), ctx.pool);
}
template <CpuIsaKind I>
void rope_kv_write_cpu_fp8(const void* args, const ExecContext& ctx) {
  rope_kv_write_run(*static_cast<const RopeKvWriteArgs*>(args), DType::kF8E4M3, isa_table<I>(), ctx.pool);
}
ELI_CPU_INSTANTIATE(embedding_cpu_f32)
ELI_CPU_INSTANTIATE(embedding_cpu_bf16)
ELI_CPU_INSTANTIATE(norm_cast_cpu)
ELI_CPU_INSTANTIATE(gated_act_cpu)
ELI_CPU_INSTANTIATE(rope_kv_write_cpu)
ELI_CPU_INSTANTIATE(rope_kv_write_cpu_i8)
ELI_CPU_INSTANTIATE(rope_kv_write_cpu_fp8)

}  // namespace eli
