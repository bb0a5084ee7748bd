// runtime/model/transformer.cc: the forward pass of the decoder-only family on the CPU backend,
// through the kernel registry (so the optimized kernels and the references are interchangeable).
#include "runtime/model/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "eli/error.h"
#include "kernels/registry.h"
#include "runtime/kv/kv_cache.h"

namespace eli {

Transformer::Transformer(ModelSpec spec, TransformerWeights weights, ThreadPool* pool)
    : spec_(std::move(spec)), weights_(std::move(weights)), pool_(pool) {
  qkv_dim_ = (spec_.n_heads + 2 * spec_.n_kv_heads) * spec_.head_dim;
  static_rope_ = compute_rope_table(spec_, spec_.max_position);
}

void Transformer::ensure_workspace(int64_t T, int64_t n_logits) {
  auto grow = [](std::vector<float>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  };
  const ModelSpec& s = spec_;
  grow(x_, T * s.hidden_size);
  grow(h_, T * s.hidden_size);
  grow(qkv_, T * qkv_dim_);
  grow(attn_, T * s.n_heads * s.head_dim);
  grow(gate_up_, T * 2 * s.intermediate_size);
  grow(act_, T * s.intermediate_size);
  grow(sel_, n_logits * s.hidden_size);
  if (static_cast<int64_t>(rope_table_of_token_.size()) < T) rope_table_of_token_.resize(static_cast<size_t>(T));
}

void Transformer::build_rope_tables(const Batch& batch) {
  const int64_t half = rope_rot_dim(spec_) / 2;
  if (!rope_is_dynamic(spec_)) {
    rope_inv_freq_ = static_rope_.inv_freq;
    std::fill(rope_table_of_token_.begin(), rope_table_of_token_.begin() + batch.n_tokens(), 0);
    return;
  }
  // Dynamic NTK: one table per sequence, from the sequence's length after this step (as HF does
  // per forward call).
  rope_inv_freq_.resize(static_cast<size_t>(batch.n_seqs() * half));
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    RopeTable t = compute_rope_table(spec_, batch.context_lens[s]);
    std::copy(t.inv_freq.begin(), t.inv_freq.end(), rope_inv_freq_.begin() + s * half);
    for (int32_t i = batch.cu_seqlens[s]; i < batch.cu_seqlens[s + 1]; ++i) rope_table_of_token_[i] = static_cast<int32_t>(s);
  }
}

void Transformer::forward(const Batch& batch, KvCache& kv, float* logits) {
  const ModelSpec& s = spec_;
  const int64_t T = batch.n_tokens(), H = s.hidden_size, I = s.intermediate_size;
  const int64_t nh = s.n_heads, nkv = s.n_kv_heads, hd = s.head_dim, V = s.vocab_size;
  const int64_t n_logits = batch.n_logits();
  ELI_CHECK(T > 0, "empty batch");
  const KvCacheShape& ks = kv.shape();
  check_batch(batch, ks.block_size, ks.n_blocks, V);
  ensure_workspace(T, n_logits);
  build_rope_tables(batch);

  const DeviceKind cpu = DeviceKind::kCPU;
  const DType wt = weights_.matrix_dtype;
  const ExecContext ctx{pool_, nullptr};
  const KernelEntry& k_embed = get_kernel(Op::kEmbedding, cpu, wt);
  const KernelEntry& k_norm = get_kernel(Op::kRmsNorm, cpu, DType::kF32);
  const KernelEntry& k_matmul = get_kernel(Op::kMatmul, cpu, wt);
  const KernelEntry& k_rope = get_kernel(Op::kRope, cpu, DType::kF32);
  const KernelEntry& k_swiglu = get_kernel(Op::kSwiglu, cpu, DType::kF32);
  const KernelEntry& k_kv = get_kernel(Op::kKvWrite, cpu, DType::kF32);
  const KernelEntry& k_attn = get_kernel(Op::kAttention, cpu, DType::kF32);

  auto matmul = [&](float* out, const float* x, const WeightMatrix& w, const std::vector<float>& bias,
                    int64_t m, bool accumulate) {
    MatmulArgs a{out, x, w.data(), bias.empty() ? nullptr : bias.data(), m, w.rows(), w.cols(),
                 w.rows(), w.cols(), accumulate};
    k_matmul.fn(&a, ctx);
  };
  auto norm = [&](float* out, const float* x, const std::vector<float>& weight, int64_t rows, int64_t width,
                  int64_t out_stride, int64_t x_stride) {
    RmsNormArgs a{out, nullptr, x, weight.data(), rows, width, out_stride, x_stride,
                  static_cast<float>(s.rms_norm_eps), 0.0f};
    k_norm.fn(&a, ctx);
  };

  EmbeddingArgs ea{x_.data(), weights_.embed.data(), batch.token_ids.data(), T, H, V};
  k_embed.fn(&ea, ctx);

  const int64_t rot_dim = rope_rot_dim(s);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t l = 0; l < s.n_layers; ++l) {
    const LayerWeights& L = weights_.layers[static_cast<size_t>(l)];
    // --- attention block ---
    norm(h_.data(), x_.data(), L.attn_norm, T, H, H, H);
    matmul(qkv_.data(), h_.data(), L.qkv, L.qkv_bias, T, false);
    float* q = qkv_.data();
    float* k = q + nh * hd;
    float* v = k + nkv * hd;
    if (s.qk_norm) {
      for (int64_t t = 0; t < T; ++t) {
        norm(q + t * qkv_dim_, q + t * qkv_dim_, L.q_norm, nh, hd, hd, hd);
        norm(k + t * qkv_dim_, k + t * qkv_dim_, L.k_norm, nkv, hd, hd, hd);
      }
    }
    RopeArgs rq{q, batch.positions.data(), rope_inv_freq_.data(), rope_table_of_token_.data(), T, nh, hd,
                rot_dim, qkv_dim_, static_rope_.attention_scaling};
    k_rope.fn(&rq, ctx);
    RopeArgs rk = rq;
    rk.x = k;
    rk.n_heads = nkv;
    k_rope.fn(&rk, ctx);
    KvWriteArgs kw{kv.k(l), kv.v(l), k, v, batch.slot_mapping.data(), T, nkv, hd, qkv_dim_, qkv_dim_,
                   ks.n_blocks * ks.block_size};
    k_kv.fn(&kw, ctx);
    AttentionArgs aa{attn_.data(), q, kv.k(l), kv.v(l), batch.cu_seqlens.data(), batch.positions.data(),
                     batch.context_lens.data(), batch.block_tables.data(), batch.n_seqs(), nh, nkv, hd,
                     ks.block_size, batch.max_blocks_per_seq, qkv_dim_, nh * hd, s.sliding_window, scale};
    k_attn.fn(&aa, ctx);
    matmul(x_.data(), attn_.data(), L.o, L.o_bias, T, true);
    // --- MLP block ---
    norm(h_.data(), x_.data(), L.mlp_norm, T, H, H, H);
    matmul(gate_up_.data(), h_.data(), L.gate_up, L.gate_up_bias, T, false);
    SwigluArgs sa{act_.data(), gate_up_.data(), T, I, I, 2 * I};
    k_swiglu.fn(&sa, ctx);
    matmul(x_.data(), act_.data(), L.down, L.down_bias, T, true);
  }
  // Final norm and head, only for the rows whose logits are wanted.
  for (int64_t r = 0; r < n_logits; ++r) {
    std::memcpy(&sel_[r * H], &x_[static_cast<size_t>(batch.logits_indices[r]) * H], H * sizeof(float));
  }
  if (n_logits == 0) return;
  norm(sel_.data(), sel_.data(), weights_.final_norm, n_logits, H, H, H);
  static const std::vector<float> kNoBias;
  matmul(logits, sel_.data(), weights_.lm_head, kNoBias, n_logits, false);
}

}  // namespace eli
