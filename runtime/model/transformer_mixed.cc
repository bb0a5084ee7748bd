// runtime/model/transformer_mixed.cc: the mixed-precision forward of a device model (16-bit weights,
// a KV cache of the same 16-bit type, f32 residual stream), and its CUDA graphs for decode steps.
// The 16-bit type ("half" below) is bf16 or f16.
//
// Routes, chosen per step by the token count T:
// - T <= kGemvMaxRows (decode): every matrix product is one fused GEMV launch (RMSNorm folded into
//   the QKV / gate-up / lm_head products, SwiGLU into the gate-up product, the residual add into
//   the o / down products): per layer GEMV(qkv), RopeKvWrite, Attention (split-K), GEMV(o, +=),
//   GEMV(gate_up, swiglu), GEMV(down, +=): six launches.
// - larger T (prefill, mixed steps): NormCast to half, cuBLASLt GEMMs with half operands (gate-up
//   output in half, SwigluCast half -> half, residual adds as beta = 1), paged flash attention.
// Graphs: a pure decode step (one token and one logits row per sequence, static RoPE) is padded to
// a bucket of b = next power of two >= T sequences and a block-table width that is a power of two;
// the first sighting of a (b, width) key runs eagerly (warming cuBLASLt's per-shape state), the
// second captures a graph, later ones replay it. Padding sequences have context 0 and slot -1, so
// they write no KV and attend to nothing. Every device buffer a graph uses is allocated before its
// capture; a buffer reallocation drops all graphs (Transformer::grow).
#include <algorithm>
#include <cmath>

#include "eli/error.h"
#include "kernels/registry.h"
#include "runtime/device/device.h"
#include "runtime/kv/kv_cache.h"
#include "runtime/model/transformer.h"

namespace eli {

namespace {

int64_t next_pow2(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

// Decode batches above this many sequences run eagerly (their graphs would be large and rare).
constexpr int64_t kMaxGraphTokens = 256;

}  // namespace

bool Transformer::use_mixed_path(const KvCache& kv) const {
  const DType w = placed_.matrix_dtype;
  return device_ != nullptr && (w == DType::kBF16 || w == DType::kF16) && kv.shape().dtype == w;
}

void Transformer::set_graphs_enabled(bool on) {
  graphs_enabled_ = on;
  if (!on) graphs_.clear();
}

Batch Transformer::pad_decode_batch(const Batch& batch, int64_t b, int64_t stride) {
  const int64_t n = batch.n_seqs();
  Batch p;
  p.token_ids = batch.token_ids;
  p.token_ids.resize(static_cast<size_t>(b), 0);
  p.positions = batch.positions;
  p.positions.resize(static_cast<size_t>(b), 0);
  p.cu_seqlens.resize(static_cast<size_t>(b + 1));
  for (int64_t i = 0; i <= b; ++i) p.cu_seqlens[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  p.context_lens = batch.context_lens;
  p.context_lens.resize(static_cast<size_t>(b), 0);
  p.max_blocks_per_seq = stride;
  p.block_tables.assign(static_cast<size_t>(b * stride), 0);
  for (int64_t s = 0; s < n; ++s) {
    std::copy(batch.block_tables.begin() + s * batch.max_blocks_per_seq,
              batch.block_tables.begin() + (s + 1) * batch.max_blocks_per_seq, p.block_tables.begin() + s * stride);
  }
  p.slot_mapping = batch.slot_mapping;
  p.slot_mapping.resize(static_cast<size_t>(b), -1);
  p.logits_indices.resize(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) p.logits_indices[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  return p;
}

void Transformer::forward_mixed(const Batch& batch, KvCache& kv) {
  const KvCacheShape& ks = kv.shape();
  const int64_t T = batch.n_tokens();
  ELI_CHECK(T > 0, "empty batch");
  check_batch(batch, ks.block_size, ks.n_blocks, spec_.vocab_size);
  int64_t max_q = 0, max_ctx = 0;
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    max_q = std::max<int64_t>(max_q, batch.cu_seqlens[s + 1] - batch.cu_seqlens[s]);
    max_ctx = std::max<int64_t>(max_ctx, batch.context_lens[s]);
  }
  bool decode = T == batch.n_seqs() && batch.n_logits() == T;
  for (int64_t r = 0; decode && r < T; ++r) decode = batch.logits_indices[r] == r;
  const bool graph = graphs_enabled_ && decode && T <= kMaxGraphTokens && !rope_is_dynamic(spec_) &&
                     graphs_supported();
  if (!graph) {
    ensure_workspace(T, batch.n_logits());
    build_rope_tables(batch);
    upload_batch(batch);
    MixedStep st{T, batch.n_seqs(), batch.n_logits(), batch.max_blocks_per_seq, max_q, max_ctx};
    enqueue_mixed(st, kv);
    ++graph_stats_.eager_steps;
    return;
  }
  const int64_t b = next_pow2(T);
  const int64_t stride = std::max<int64_t>(16, next_pow2(batch.max_blocks_per_seq));
  const Batch padded = pad_decode_batch(batch, b, stride);
  ensure_workspace(b, b);  // before the upload: a reallocation here drops graphs, not the upload
  build_rope_tables(padded);
  upload_batch(padded);
  // The graph's kernels see upper bounds: one query per sequence and the widest context the
  // block-table width allows (split-K attention computes each split's range on the device).
  MixedStep st{b, b, b, stride, 1, stride * ks.block_size};
  const std::pair<int64_t, int64_t> key{b, stride};
  auto it = graphs_.find(key);
  if (it != graphs_.end()) {
    it->second->replay(stream_);
    ++graph_stats_.replays;
    return;
  }
  if (++graph_sightings_[key] < 2) {
    enqueue_mixed(st, kv);
    ++graph_stats_.eager_steps;
    return;
  }
  std::unique_ptr<StepGraph> g = capture_step_graph(stream_, [&] { enqueue_mixed(st, kv); });
  g->replay(stream_);
  ++graph_stats_.captured;
  ++graph_stats_.replays;
  graphs_[key] = std::move(g);
}

void Transformer::enqueue_mixed(const MixedStep& st, KvCache& kv) {
  const ModelSpec& s = spec_;
  const int64_t T = st.n_tokens, H = s.hidden_size, I = s.intermediate_size;
  const int64_t nh = s.n_heads, nkv = s.n_kv_heads, hd = s.head_dim, V = s.vocab_size;
  const KvCacheShape& ks = kv.shape();
  const DeviceKind dk = kind_;
  const ExecContext ctx{nullptr, stream_};
  const bool gemv_route = T <= kGemvMaxRows;
  const float eps = static_cast<float>(s.rms_norm_eps);
  const DType half = placed_.matrix_dtype;  // bf16 or f16: weights, KV cache, GEMM operands

  const KernelEntry& k_embed = get_kernel(Op::kEmbedding, dk, half);
  const KernelEntry& k_gemv = get_kernel(Op::kGemv, dk, half);
  const KernelEntry& k_gemm = get_kernel(Op::kGemm, dk, half);
  const KernelEntry& k_norm = get_kernel(Op::kNormCast, dk, DType::kF32);
  const KernelEntry& k_swiglu = get_kernel(Op::kSwigluCast, dk, DType::kF32);
  const KernelEntry& k_rope_kv = get_kernel(Op::kRopeKvWrite, dk, ks.dtype);
  const KernelEntry& k_attn = get_kernel(Op::kAttention, dk, ks.dtype);

  // out (m, n or n/2) (+)= act(norm(x) @ w^T + bias), f32 activations.
  auto gemv = [&](float* out, const float* x, const void* w, const float* bias, const float* norm_w, int64_t m,
                  int64_t n, int64_t k, bool swiglu, bool accumulate) {
    GemvArgs a{};
    a.out = out;
    a.x = x;
    a.w = w;
    a.bias = bias;
    a.norm_weight = norm_w;
    a.m = m;
    a.n = n;
    a.k = k;
    a.out_stride = swiglu ? n / 2 : n;
    a.x_stride = k;
    a.norm_eps = eps;
    a.swiglu = swiglu;
    a.accumulate = accumulate;
    k_gemv.fn(&a, ctx);
  };
  // out (m, n) (+)= x_half @ w^T + bias.
  auto gemm = [&](void* out, DType out_dtype, const void* x, const void* w, const float* bias, int64_t m, int64_t n,
                  int64_t k, bool accumulate) {
    GemmArgs a{};
    a.out = out;
    a.x = x;
    a.w = w;
    a.bias = bias;
    a.m = m;
    a.n = n;
    a.k = k;
    a.out_stride = n;
    a.x_stride = k;
    a.x_dtype = half;
    a.out_dtype = out_dtype;
    a.accumulate = accumulate;
    a.workspace = blas_ws_.data;
    a.workspace_bytes = static_cast<size_t>(blas_ws_.capacity) * sizeof(float);
    k_gemm.fn(&a, ctx);
  };
  auto norm_cast = [&](void* out, const float* x, const float* weight, int64_t rows) {
    NormCastArgs a{};
    a.out = out;
    a.x = x;
    a.weight = weight;
    a.rows = rows;
    a.hidden = H;
    a.out_stride = H;
    a.x_stride = H;
    a.eps = eps;
    a.weight_offset = 0.0f;
    a.out_dtype = half;
    k_norm.fn(&a, ctx);
  };

  float* x = x_.data;
  float* qkv = qkv_.data;
  void* hb = hb_.data;
  EmbeddingArgs ea{x, placed_.embed, dev_token_ids_, T, H, V};
  k_embed.fn(&ea, ctx);

  const int64_t rot_dim = rope_rot_dim(s);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t l = 0; l < s.n_layers; ++l) {
    const PlacedLayer& L = placed_.layers[static_cast<size_t>(l)];
    // --- attention block ---
    if (gemv_route) {
      gemv(qkv, x, L.qkv, L.qkv_bias, L.attn_norm, T, qkv_dim_, H, false, false);
    } else {
      norm_cast(hb, x, L.attn_norm, T);
      gemm(qkv, DType::kF32, hb, L.qkv, L.qkv_bias, T, qkv_dim_, H, false);
    }
    RopeKvWriteArgs rk{};
    rk.q_out = qb_.data;
    rk.k_cache = kv.k(l);
    rk.v_cache = kv.v(l);
    rk.qkv = qkv;
    rk.q_norm = s.qk_norm ? L.q_norm : nullptr;
    rk.k_norm = s.qk_norm ? L.k_norm : nullptr;
    rk.positions = dev_positions_;
    rk.slot_mapping = dev_slot_mapping_;
    rk.inv_freq = rope_dev_.data;
    rk.table_of_token = dev_table_of_token_;
    rk.n_tokens = T;
    rk.n_heads = nh;
    rk.n_kv_heads = nkv;
    rk.head_dim = hd;
    rk.rot_dim = rot_dim;
    rk.qkv_stride = qkv_dim_;
    rk.n_slots = ks.n_blocks * ks.block_size;
    rk.attention_scaling = static_rope_.attention_scaling;
    rk.norm_eps = eps;
    rk.q_dtype = half;
    k_rope_kv.fn(&rk, ctx);

    AttentionArgs aa{};
    aa.out = attn_.data;
    aa.q = qb_.data;
    aa.k_cache = kv.k(l);
    aa.v_cache = kv.v(l);
    aa.cu_seqlens = dev_cu_seqlens_;
    aa.positions = dev_positions_;
    aa.context_lens = dev_context_lens_;
    aa.block_tables = dev_block_tables_;
    aa.n_seqs = st.n_seqs;
    aa.n_heads = nh;
    aa.n_kv_heads = nkv;
    aa.head_dim = hd;
    aa.block_size = ks.block_size;
    aa.max_blocks_per_seq = st.max_blocks_per_seq;
    aa.q_stride = nh * hd;
    aa.out_stride = nh * hd;
    aa.sliding_window = s.sliding_window;
    aa.scale = scale;
    aa.q_dtype = half;
    aa.out_dtype = gemv_route ? DType::kF32 : half;
    aa.max_query_len = st.max_query_len;
    aa.max_context_len = st.max_context_len;
    aa.workspace = attn_ws_.data;
    aa.workspace_bytes = static_cast<size_t>(attn_ws_.capacity) * sizeof(float);
    k_attn.fn(&aa, ctx);

    if (gemv_route) {
      gemv(x, attn_.data, L.o, L.o_bias, nullptr, T, H, nh * hd, false, true);
    } else {
      gemm(x, DType::kF32, attn_.data, L.o, L.o_bias, T, H, nh * hd, true);
    }
    // --- MLP block ---
    if (gemv_route) {
      gemv(act_.data, x, L.gate_up, L.gate_up_bias, L.mlp_norm, T, 2 * I, H, true, false);
      gemv(x, act_.data, L.down, L.down_bias, nullptr, T, H, I, false, true);
    } else {
      norm_cast(hb, x, L.mlp_norm, T);
      gemm(gate_up_.data, half, hb, L.gate_up, L.gate_up_bias, T, 2 * I, H, false);
      SwigluCastArgs sa{act_.data, gate_up_.data, T, I, I, 2 * I, half};
      k_swiglu.fn(&sa, ctx);
      gemm(x, DType::kF32, act_.data, L.down, L.down_bias, T, H, I, true);
    }
  }
  const int64_t n_logits = st.n_logits;
  if (n_logits == 0) return;
  // Final norm and head, only for the rows whose logits are wanted (a row gather is an f32
  // embedding lookup with the residual stream as the table).
  float* sel = sel_.data;
  EmbeddingArgs ga{sel, x, dev_logits_indices_, n_logits, H, T};
  get_kernel(Op::kEmbedding, dk, DType::kF32).fn(&ga, ctx);
  if (n_logits <= kGemvMaxRows) {
    gemv(logits_.data, sel, placed_.lm_head, nullptr, placed_.final_norm, n_logits, V, H, false, false);
  } else {
    norm_cast(hb, sel, placed_.final_norm, n_logits);
    gemm(logits_.data, DType::kF32, hb, placed_.lm_head, nullptr, n_logits, V, H, false);
  }
}

}  // namespace eli
