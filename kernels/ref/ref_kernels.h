// kernels/ref/ref_kernels.h: the reference CPU kernels. Naive, single-threaded, obviously correct;
// every faster kernel is tested against these. Each has the registry signature (KernelFn) and
// reads the args struct of its op from kernels/ops.h. Accumulations are done in double.
//
// Semantics shared with every other backend (the contract the parity tests check):
// - Embedding: ids out of [0, V) are clamped to the nearest valid row; out = row * scale.
// - RMSNorm (NormCast, Gemv's norm, RopeKvWrite's q/k norms): out = x * rsqrt(mean(x^2) + eps) *
//   (weight + weight_offset).
// - Matrix products: out[m, n] (+)= sum_k x[m, k] * w[n, k] + bias[n].
// - RoPE: rotate-half (NeoX) pairs (i, i + rot_dim/2) for i < rot_dim/2; dims >= rot_dim untouched;
//   angle = float(position) * inv_freq[table][i] computed as an f32 product (as HF transformers);
//   cos and sin are multiplied by attention_scaling.
// - Gated activation: out = act(gate) * up (kernels/ref/activation.h).
// - KV write: token t goes to slot_mapping[t]; slots < 0 or >= n_slots are skipped.
// - Attention: query t of seq s at position p attends kv positions
//   [window ? max(0, p - window + 1) : 0, min(p, context_len - 1, max_blocks * B - 1)];
//   head h reads kv head h / (nh / nkv); no visible position gives a zero output row.
#pragma once

#include <cstdint>

#include "kernels/ops.h"
#include "kernels/ref/float_convert.h"  // bf16_to_f32, f32_to_bf16, f16_to_f32, f32_to_f16
#include "kernels/registry.h"

namespace eli {

void embedding_ref_f32(const void* args, const ExecContext& ctx);   // EmbeddingArgs
void embedding_ref_bf16(const void* args, const ExecContext& ctx);  // EmbeddingArgs
void embedding_ref_f16(const void* args, const ExecContext& ctx);   // EmbeddingArgs, f16 table
void attention_ref(const void* args, const ExecContext& ctx);       // AttentionArgs, f32 cache
void attention_ref_bf16(const void* args, const ExecContext& ctx);  // AttentionArgs, bf16 cache
void attention_ref_f16(const void* args, const ExecContext& ctx);   // AttentionArgs, f16 cache
void attention_ref_i8(const void* args, const ExecContext& ctx);    // AttentionArgs, int8 cache + scales
void attention_ref_fp8(const void* args, const ExecContext& ctx);   // AttentionArgs, fp8 e4m3 cache + scales
// Matrix products and the elementwise ops (kernels/ref/mixed_ref.cc): every input converted to
// f32 exactly as stored, arithmetic in double, one rounding when a 16-bit output is stored.
void gemv_ref_f32(const void* args, const ExecContext& ctx);        // GemvArgs, f32 weights
void gemv_ref_bf16(const void* args, const ExecContext& ctx);       // GemvArgs, bf16 weights
void gemv_ref_f16(const void* args, const ExecContext& ctx);        // GemvArgs, f16 weights
void gemm_ref_f32(const void* args, const ExecContext& ctx);        // GemmArgs, f32 weights
void gemm_ref_bf16(const void* args, const ExecContext& ctx);       // GemmArgs, bf16 weights
void gemm_ref_f16(const void* args, const ExecContext& ctx);        // GemmArgs, f16 weights
void norm_cast_ref(const void* args, const ExecContext& ctx);       // NormCastArgs
void gated_act_ref(const void* args, const ExecContext& ctx);       // GatedActArgs
void rope_kv_write_ref_f32(const void* args, const ExecContext& ctx);   // RopeKvWriteArgs, f32 cache
void rope_kv_write_ref_bf16(const void* args, const ExecContext& ctx);  // RopeKvWriteArgs, bf16 cache
void rope_kv_write_ref_f16(const void* args, const ExecContext& ctx);   // RopeKvWriteArgs, f16 cache
void rope_kv_write_ref_i8(const void* args, const ExecContext& ctx);    // int8 cache + scales (kv_quant.h)
void rope_kv_write_ref_fp8(const void* args, const ExecContext& ctx);   // fp8 e4m3 cache + scales
void scatter_tokens_ref(const void* args, const ExecContext& ctx);      // ScatterTokensArgs

// Reference building blocks (not registered; used by the references above and by tests).
// RMSNorm of `rows` rows (out may alias x), double accumulation.
void ref_rms_norm_rows(float* out, const float* x, const float* weight, int64_t rows, int64_t hidden,
                       int64_t out_stride, int64_t x_stride, float eps, float weight_offset);
// RoPE in place on n_heads heads of each of n_tokens rows (row stride row_stride, head stride hd).
void ref_rope_rows(float* x, const int32_t* positions, const float* inv_freq, const int32_t* table_of_token,
                   int64_t n_tokens, int64_t n_heads, int64_t head_dim, int64_t rot_dim, int64_t row_stride,
                   float attention_scaling);

// Element i of a buffer of f32, bf16 or f16 values, as float; and the store counterpart (one
// round-to-nearest-even when the buffer is 16-bit). Shared by the references that take a dtype.
inline float ref_load(const void* p, DType dt, int64_t i) {
  if (dt == DType::kBF16) return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  if (dt == DType::kF16) return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  return static_cast<const float*>(p)[i];
}
inline void ref_store(void* p, DType dt, int64_t i, float v) {
  if (dt == DType::kBF16) {
    static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
  } else if (dt == DType::kF16) {
    static_cast<uint16_t*>(p)[i] = f32_to_f16(v);
  } else {
    static_cast<float*>(p)[i] = v;
  }
}

// Visible kv range [*lo, *hi] of a query at position `pos` (empty when *hi < *lo); shared by every
// CPU attention kernel so that they agree on masking.
inline void attention_kv_range(int64_t pos, int64_t context_len, int64_t max_kv, int64_t window,
                               int64_t* lo, int64_t* hi) {
  int64_t h = pos;
  if (h > context_len - 1) h = context_len - 1;
  if (h > max_kv - 1) h = max_kv - 1;
  int64_t l = 0;
  if (window > 0 && pos - window + 1 > 0) l = pos - window + 1;
  *lo = l;
  *hi = h;
}

}  // namespace eli
