// kernels/ref/mixed_ref.cc: references of the matrix products and elementwise ops (Gemv, Gemm,
// NormCast, GatedAct, RopeKvWrite). Each converts its inputs to f32 exactly as stored, computes in
// double (or through the reference building blocks), and rounds once when it stores a bf16 or f16
// output; the optimized kernels must match these within f32 / bf16 / f16 tolerance.
#include <cmath>
#include <vector>

#include "eli/error.h"
#include "kernels/ref/activation.h"
#include "kernels/ref/kv_quant.h"
#include "kernels/ref/ref_kernels.h"

namespace eli {

namespace {

void check_act_dtype(DType dt, const char* what) {
  ELI_CHECK_KIND(kUnsupported, dt == DType::kF32 || dt == DType::kBF16 || dt == DType::kF16, what,
                 " must be float32, bfloat16 or float16, not ",
                 dtype_name(dt));
}

void gemv_ref(const GemvArgs& a, DType wdt) {
  ELI_CHECK(a.m >= 0 && a.n >= 0 && a.k > 0, "gemv: bad sizes");
  const bool gated = a.gated != GatedAct::kNone;
  ELI_CHECK(!gated || a.n % 2 == 0, "gemv: a gated activation needs an even n, got ", a.n);
  std::vector<double> xn(static_cast<size_t>(a.k)), y(static_cast<size_t>(a.n));
  for (int64_t r = 0; r < a.m; ++r) {
    const float* x = a.x + r * a.x_stride;
    double inv = 1.0;
    if (a.norm_weight != nullptr) {
      double ss = 0.0;
      for (int64_t j = 0; j < a.k; ++j) ss += static_cast<double>(x[j]) * x[j];
      inv = 1.0 / std::sqrt(ss / static_cast<double>(a.k) + static_cast<double>(a.norm_eps));
    }
    for (int64_t j = 0; j < a.k; ++j) {
      xn[j] = a.norm_weight != nullptr ? x[j] * inv * (static_cast<double>(a.norm_weight[j]) + a.norm_weight_offset)
                                       : static_cast<double>(x[j]);
    }
    for (int64_t n = 0; n < a.n; ++n) {
      double acc = a.bias != nullptr ? a.bias[n] : 0.0;
      for (int64_t j = 0; j < a.k; ++j) acc += xn[j] * ref_load(a.w, wdt, n * a.k + j);
      y[n] = acc;
    }
    float* out = a.out + r * a.out_stride;
    const int64_t n_out = gated ? a.n / 2 : a.n;
    for (int64_t n = 0; n < n_out; ++n) {
      const double v = gated ? gated_act_value(a.gated, y[n]) * y[n + n_out] : y[n];
      out[n] = static_cast<float>(a.accumulate ? out[n] + v : v);
    }
  }
}

void gemm_ref(const GemmArgs& a, DType wdt) {
  ELI_CHECK(a.m >= 0 && a.n >= 0 && a.k >= 0, "gemm: bad sizes");
  check_act_dtype(a.x_dtype, "gemm x");
  check_act_dtype(a.out_dtype, "gemm out");
  ELI_CHECK(!a.accumulate || a.out_dtype == DType::kF32, "gemm: accumulate needs a float32 output");
  for (int64_t i = 0; i < a.m; ++i) {
    for (int64_t j = 0; j < a.n; ++j) {
      double acc = a.bias != nullptr ? a.bias[j] : 0.0;
      for (int64_t p = 0; p < a.k; ++p) {
        acc += static_cast<double>(ref_load(a.x, a.x_dtype, i * a.x_stride + p)) * ref_load(a.w, wdt, j * a.k + p);
      }
      const int64_t o = i * a.out_stride + j;
      if (a.accumulate) acc += static_cast<float*>(a.out)[o];
      ref_store(a.out, a.out_dtype, o, static_cast<float>(acc));
    }
  }
}

void rope_kv_write_ref(const RopeKvWriteArgs& a, DType cache) {
  check_act_dtype(a.q_dtype, "rope_kv_write q");
  const int64_t T = a.n_tokens, hd = a.head_dim, nh = a.n_heads, nkv = a.n_kv_heads;
  // Work on f32 copies of q and k (the plain RMSNorm and RoPE references run in place on them).
  std::vector<float> q(static_cast<size_t>(T * nh * hd)), k(static_cast<size_t>(T * nkv * hd)),
      v(static_cast<size_t>(T * nkv * hd));
  for (int64_t t = 0; t < T; ++t) {
    const float* row = a.qkv + t * a.qkv_stride;
    std::copy(row, row + nh * hd, q.begin() + t * nh * hd);
    std::copy(row + nh * hd, row + (nh + nkv) * hd, k.begin() + t * nkv * hd);
    std::copy(row + (nh + nkv) * hd, row + (nh + 2 * nkv) * hd, v.begin() + t * nkv * hd);
  }
  if (a.q_norm != nullptr) ref_rms_norm_rows(q.data(), q.data(), a.q_norm, T * nh, hd, hd, hd, a.norm_eps, 0.0f);
  if (a.k_norm != nullptr) ref_rms_norm_rows(k.data(), k.data(), a.k_norm, T * nkv, hd, hd, hd, a.norm_eps, 0.0f);
  ref_rope_rows(q.data(), a.positions, a.inv_freq, a.table_of_token, T, nh, hd, a.rot_dim, nh * hd, a.attention_scaling);
  ref_rope_rows(k.data(), a.positions, a.inv_freq, a.table_of_token, T, nkv, hd, a.rot_dim, nkv * hd, a.attention_scaling);
  for (int64_t i = 0; i < T * nh * hd; ++i) ref_store(a.q_out, a.q_dtype, i, q[static_cast<size_t>(i)]);
  const int64_t row = nkv * hd;
  const bool quant = kv_dtype_quantized(cache);
  ELI_CHECK(!quant || (a.k_scale != nullptr && a.v_scale != nullptr), "rope_kv_write: a ", dtype_name(cache),
            " KV cache needs k_scale and v_scale");
  for (int64_t t = 0; t < T; ++t) {
    const int64_t slot = a.slot_mapping[t];
    if (slot < 0 || slot >= a.n_slots) continue;
    if (quant) {  // one scale per (slot, kv head) row: kernels/ref/kv_quant.h
      for (int64_t h = 0; h < nkv; ++h) {
        const int64_t r = slot * nkv + h;
        a.k_scale[r] = kv_quantize_row(&k[static_cast<size_t>(t * row + h * hd)], hd, cache,
                                       static_cast<uint8_t*>(a.k_cache) + r * hd);
        a.v_scale[r] = kv_quantize_row(&v[static_cast<size_t>(t * row + h * hd)], hd, cache,
                                       static_cast<uint8_t*>(a.v_cache) + r * hd);
      }
      continue;
    }
    for (int64_t j = 0; j < row; ++j) {
      ref_store(a.k_cache, cache, slot * row + j, k[static_cast<size_t>(t * row + j)]);
      ref_store(a.v_cache, cache, slot * row + j, v[static_cast<size_t>(t * row + j)]);
    }
  }
}

}  // namespace

void gemv_ref_f32(const void* args, const ExecContext&) { gemv_ref(*static_cast<const GemvArgs*>(args), DType::kF32); }
void gemv_ref_bf16(const void* args, const ExecContext&) { gemv_ref(*static_cast<const GemvArgs*>(args), DType::kBF16); }
void gemv_ref_f16(const void* args, const ExecContext&) { gemv_ref(*static_cast<const GemvArgs*>(args), DType::kF16); }
void gemm_ref_f32(const void* args, const ExecContext&) { gemm_ref(*static_cast<const GemmArgs*>(args), DType::kF32); }
void gemm_ref_bf16(const void* args, const ExecContext&) { gemm_ref(*static_cast<const GemmArgs*>(args), DType::kBF16); }
void gemm_ref_f16(const void* args, const ExecContext&) { gemm_ref(*static_cast<const GemmArgs*>(args), DType::kF16); }

void norm_cast_ref(const void* args, const ExecContext&) {
  const auto& a = *static_cast<const NormCastArgs*>(args);
  ELI_CHECK(a.hidden > 0 && a.rows >= 0, "norm_cast: bad sizes");
  check_act_dtype(a.out_dtype, "norm_cast out");
  ELI_CHECK(!a.accumulate || a.out_dtype == DType::kF32, "norm_cast: accumulate needs a float32 output");
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* x = a.x + r * a.x_stride;
    double ss = 0.0;
    for (int64_t j = 0; j < a.hidden; ++j) ss += static_cast<double>(x[j]) * x[j];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(a.hidden) + static_cast<double>(a.eps));
    for (int64_t j = 0; j < a.hidden; ++j) {
      const double w = static_cast<double>(a.weight[j]) + a.weight_offset;
      const int64_t o = r * a.out_stride + j;
      const double v = x[j] * inv * w;
      ref_store(a.out, a.out_dtype, o, static_cast<float>(a.accumulate ? static_cast<float*>(a.out)[o] + v : v));
    }
  }
}

void gated_act_ref(const void* args, const ExecContext&) {
  const auto& a = *static_cast<const GatedActArgs*>(args);
  check_act_dtype(a.dtype, "gated_act");
  ELI_CHECK(a.act == GatedAct::kSilu || a.act == GatedAct::kGeluTanh, "gated_act: no activation given");
  for (int64_t r = 0; r < a.rows; ++r) {
    for (int64_t j = 0; j < a.inter; ++j) {
      const double g = ref_load(a.gate_up, a.dtype, r * a.in_stride + j);
      const double u = ref_load(a.gate_up, a.dtype, r * a.in_stride + a.inter + j);
      ref_store(a.out, a.dtype, r * a.out_stride + j, static_cast<float>(gated_act_value(a.act, g) * u));
    }
  }
}

void rope_kv_write_ref_f32(const void* args, const ExecContext&) {
  rope_kv_write_ref(*static_cast<const RopeKvWriteArgs*>(args), DType::kF32);
}
void rope_kv_write_ref_bf16(const void* args, const ExecContext&) {
  rope_kv_write_ref(*static_cast<const RopeKvWriteArgs*>(args), DType::kBF16);
}
void rope_kv_write_ref_i8(const void* args, const ExecContext&) {
  rope_kv_write_ref(*static_cast<const RopeKvWriteArgs*>(args), DType::kI8);
}
void rope_kv_write_ref_fp8(const void* args, const ExecContext&) {
  rope_kv_write_ref(*static_cast<const RopeKvWriteArgs*>(args), DType::kF8E4M3);
}
void rope_kv_write_ref_f16(const void* args, const ExecContext&) {
  rope_kv_write_ref(*static_cast<const RopeKvWriteArgs*>(args), DType::kF16);
}

void scatter_tokens_ref(const void* args, const ExecContext&) {
  const auto& a = *static_cast<const ScatterTokensArgs*>(args);
  ELI_CHECK(a.n >= 0 && a.vocab >= 1, "scatter_tokens: n ", a.n, " and vocab ", a.vocab, " must be >= 0 / >= 1");
  for (int64_t i = 0; i < a.n; ++i) {
    const int32_t t = a.src[a.src_index[i]];
    a.ids[a.dst_index[i]] = t < 0 || t >= a.vocab ? 0 : t;
  }
}

}  // namespace eli
