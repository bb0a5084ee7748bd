// runtime/model/transformer.cc: the forward pass of the decoder-only family, through the kernel
// registry (so the optimized kernels and the references are interchangeable), on the CPU or on a
// CUDA device (see transformer.h for where each buffer lives).
#include "runtime/model/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "eli/error.h"
#include "kernels/registry.h"
#include "runtime/core/checked_math.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"
#include "runtime/kv/kv_cache.h"

namespace eli {

Transformer::Transformer(ModelSpec spec, TransformerWeights weights, ThreadPool* pool, Device* device)
    : spec_(std::move(spec)), weights_(std::move(weights)), pool_(pool), device_(device) {
  qkv_dim_ = (spec_.n_heads + 2 * spec_.n_kv_heads) * spec_.head_dim;
  static_rope_ = compute_rope_table(spec_, spec_.max_position);
  if (device_ != nullptr && device_->id().kind != DeviceKind::kCPU) {
    kind_ = device_->id().kind;
    stream_ = device_->default_stream().native();
    placed_ = upload_weights(weights_, *device_, nullptr, pool_);
    // The device copies are the weights now: drop the host matrices and vectors (and the mapped
    // file behind zero-copy views), keeping the metadata.
    TransformerWeights meta;
    meta.matrix_dtype = weights_.matrix_dtype;
    meta.n_params = weights_.n_params;
    weights_ = std::move(meta);
  } else {
    device_ = nullptr;
    placed_ = place_on_host(weights_);
  }
}

void Transformer::grow(Buffer& b, int64_t n) {
  if (b.capacity >= n && b.data != nullptr) return;
  const int64_t want = std::max<int64_t>(n, 1);
  if (device_ == nullptr) {
    b.host.resize(static_cast<size_t>(want));
    b.data = b.host.data();
  } else {
    b.dev = Tensor();  // free first (the pool reuses the block on the same stream)
    b.data = nullptr;  // if the allocation below throws, nothing points at the freed block
    b.capacity = 0;
    graphs_.clear();  // captured graphs hold the old pointers
    b.dev = Tensor::empty(*device_, DType::kF32, {want});
    b.data = b.dev.ptr<float>();
  }
  b.capacity = want;
}

void Transformer::ensure_workspace(int64_t T, int64_t n_logits) {
  const ModelSpec& s = spec_;
  int64_t n = 0;
  ELI_CHECK(checked_mul(T, std::max<int64_t>({s.hidden_size, qkv_dim_, 2 * s.intermediate_size}), &n) &&
                checked_mul(n_logits, std::max<int64_t>(s.hidden_size, s.vocab_size), &n),
            "workspace size overflows for ", T, " tokens");
  grow(x_, T * s.hidden_size);
  grow(h_, T * s.hidden_size);
  grow(qkv_, T * qkv_dim_);
  grow(attn_, T * s.n_heads * s.head_dim);
  grow(gate_up_, T * 2 * s.intermediate_size);
  grow(act_, T * s.intermediate_size);
  grow(sel_, n_logits * s.hidden_size);
  if (device_ != nullptr) grow(logits_, n_logits * s.vocab_size);
  if (device_ != nullptr && (placed_.matrix_dtype == DType::kBF16 || placed_.matrix_dtype == DType::kF16)) {
    // 16-bit (bf16 / f16) buffers, sized in f32 units (two values per unit, rounded up).
    grow(qb_, (T * s.n_heads * s.head_dim + 1) / 2);
    grow(hb_, (T * std::max(s.hidden_size, 2 * s.intermediate_size) + 1) / 2);
    grow(blas_ws_, kBlasWorkspaceBytes / sizeof(float));
    // Split-K decode scratch for up to max(T, n_logits) decode tokens (a bigger decode batch runs
    // without splits, still correct).
    const int64_t decode_tokens = std::max<int64_t>(std::min<int64_t>(T, 256), n_logits);
    if (decode_tokens > attn_ws_tokens_) {
      grow(attn_ws_, static_cast<int64_t>(attention_workspace_bytes(decode_tokens, s.n_heads, s.head_dim) / sizeof(float)));
      attn_ws_tokens_ = decode_tokens;
    }
  }
  if (static_cast<int64_t>(rope_table_of_token_.size()) < T) rope_table_of_token_.resize(static_cast<size_t>(T));
}

uint64_t Transformer::reserve_workspace(int64_t max_tokens, int64_t max_logits) {
  ELI_CHECK(max_tokens >= 1 && max_logits >= 0, "reserve_workspace: bad sizes");
  ensure_workspace(max_tokens, max_logits);
  if (device_ == nullptr) return 0;
  uint64_t bytes = 0;
  for (const Buffer* b : {&x_, &h_, &qkv_, &attn_, &gate_up_, &act_, &sel_, &logits_, &batch_ints_, &rope_dev_, &qb_,
                          &hb_, &attn_ws_, &blas_ws_}) {
    bytes += static_cast<uint64_t>(b->capacity) * sizeof(float);
  }
  return bytes;
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

void Transformer::upload_batch(const Batch& batch) {
  const int64_t T = batch.n_tokens();
  // Packed layout (int32): token_ids, positions, cu_seqlens, context_lens, block_tables,
  // slot_mapping, logits_indices, table_of_token; each array starts at a multiple of 4 elements.
  const std::vector<int32_t>* arrays[] = {&batch.token_ids, &batch.positions, &batch.cu_seqlens,
                                          &batch.context_lens, &batch.block_tables, &batch.slot_mapping,
                                          &batch.logits_indices};
  // Then, with a token feed, its dst_index and src_index (after every array a graph reads, so
  // their offsets do not move with the feed's size).
  constexpr int kArrays = 10;
  const int64_t n_feed = feed_ != nullptr ? static_cast<int64_t>(feed_->dst_index.size()) : 0;
  int64_t offsets[kArrays + 1];
  offsets[0] = 0;
  for (int i = 0; i < kArrays; ++i) {
    const int64_t n = i < 7 ? static_cast<int64_t>(arrays[i]->size()) : (i == 7 ? T : n_feed);
    offsets[i + 1] = offsets[i] + (n + 3) / 4 * 4;
  }
  staging_.assign(static_cast<size_t>(offsets[kArrays]), 0);
  for (int i = 0; i < 7; ++i) std::copy(arrays[i]->begin(), arrays[i]->end(), staging_.begin() + offsets[i]);
  std::copy(rope_table_of_token_.begin(), rope_table_of_token_.begin() + T, staging_.begin() + offsets[7]);
  if (n_feed > 0) {
    for (int64_t i = 0; i < n_feed; ++i) {
      ELI_CHECK(feed_->dst_index[i] >= 0 && feed_->dst_index[i] < T, "token feed index ", feed_->dst_index[i],
                " outside the step's ", T, " tokens");
    }
    std::copy(feed_->dst_index.begin(), feed_->dst_index.end(), staging_.begin() + offsets[8]);
    std::copy(feed_->src_index.begin(), feed_->src_index.end(), staging_.begin() + offsets[9]);
  }
  static_assert(sizeof(int32_t) == sizeof(float), "int32 arrays share the f32 buffer type");
  grow(batch_ints_, offsets[kArrays]);
  device_->copy_host_to_device(batch_ints_.data, staging_.data(), staging_.size() * sizeof(int32_t), stream_);
  const int32_t* base = reinterpret_cast<const int32_t*>(batch_ints_.data);
  dev_token_ids_ = base + offsets[0];
  dev_positions_ = base + offsets[1];
  dev_cu_seqlens_ = base + offsets[2];
  dev_context_lens_ = base + offsets[3];
  dev_block_tables_ = base + offsets[4];
  dev_slot_mapping_ = base + offsets[5];
  dev_logits_indices_ = base + offsets[6];
  dev_table_of_token_ = base + offsets[7];
  if (n_feed > 0) {
    ELI_CHECK(feed_->src != nullptr && feed_->src_index.size() == feed_->dst_index.size(), "malformed token feed");
    ScatterTokensArgs sa{const_cast<int32_t*>(dev_token_ids_), base + offsets[8], feed_->src, base + offsets[9],
                         n_feed, spec_.vocab_size};
    get_kernel(Op::kScatterTokens, kind_, DType::kF32).fn(&sa, ExecContext{nullptr, stream_});
  }
  // The inverse frequencies change only with dynamic RoPE: copy them when they differ from the
  // device's copy (or the buffer was reallocated).
  const float* before = rope_dev_.data;
  grow(rope_dev_, static_cast<int64_t>(rope_inv_freq_.size()));
  if (rope_dev_.data != before || rope_uploaded_ != rope_inv_freq_) {
    device_->copy_host_to_device(rope_dev_.data, rope_inv_freq_.data(), rope_inv_freq_.size() * sizeof(float),
                                 stream_);
    rope_uploaded_ = rope_inv_freq_;
  }
}

void Transformer::forward(const Batch& batch, KvCache& kv, float* logits) {
  if (device_ == nullptr) {
    forward_generic(batch, kv, logits);
    return;
  }
  const float* dev_logits = forward_on_device(batch, kv);
  if (batch.n_logits() == 0) return;
  // Synchronous on the device's stream: the logits are on the host when this returns.
  device_->copy_device_to_host(logits, dev_logits,
                               static_cast<size_t>(batch.n_logits() * spec_.vocab_size) * sizeof(float), nullptr);
}

float* Transformer::forward_on_device(const Batch& batch, KvCache& kv, const TokenFeed* feed) {
  ELI_CHECK(device_ != nullptr, "forward_on_device needs a device model");
  struct FeedScope {  // feed_ is set for this call only, also when it throws
    const TokenFeed*& slot;
    ~FeedScope() { slot = nullptr; }
  } scope{feed_};
  feed_ = feed != nullptr && !feed->dst_index.empty() ? feed : nullptr;
  if (use_mixed_path(kv)) {
    forward_mixed(batch, kv);
  } else {
    forward_generic(batch, kv, nullptr);
  }
  return logits_.data;
}

void Transformer::forward_generic(const Batch& batch, KvCache& kv, float* logits) {
  const ModelSpec& s = spec_;
  const int64_t T = batch.n_tokens(), H = s.hidden_size, I = s.intermediate_size;
  const int64_t nh = s.n_heads, nkv = s.n_kv_heads, hd = s.head_dim, V = s.vocab_size;
  const int64_t n_logits = batch.n_logits();
  ELI_CHECK(T > 0, "empty batch");
  const KvCacheShape& ks = kv.shape();
  check_batch(batch, ks.block_size, ks.n_blocks, V);
  ensure_workspace(T, n_logits);
  build_rope_tables(batch);

  const bool on_host = device_ == nullptr;
  const int32_t* token_ids = batch.token_ids.data();
  const int32_t* positions = batch.positions.data();
  const int32_t* cu_seqlens = batch.cu_seqlens.data();
  const int32_t* context_lens = batch.context_lens.data();
  const int32_t* block_tables = batch.block_tables.data();
  const int32_t* slot_mapping = batch.slot_mapping.data();
  const int32_t* table_of_token = rope_table_of_token_.data();
  const float* inv_freq = rope_inv_freq_.data();
  if (!on_host) {
    upload_batch(batch);
    token_ids = dev_token_ids_;
    positions = dev_positions_;
    cu_seqlens = dev_cu_seqlens_;
    context_lens = dev_context_lens_;
    block_tables = dev_block_tables_;
    slot_mapping = dev_slot_mapping_;
    table_of_token = dev_table_of_token_;
    inv_freq = rope_dev_.data;
  }

  const DeviceKind dk = kind_;
  const DType wt = placed_.matrix_dtype;
  const ExecContext ctx{on_host ? pool_ : nullptr, stream_};
  const KernelEntry& k_embed = get_kernel(Op::kEmbedding, dk, wt);
  const KernelEntry& k_norm = get_kernel(Op::kRmsNorm, dk, DType::kF32);
  const KernelEntry& k_matmul = get_kernel(Op::kMatmul, dk, wt);
  const KernelEntry& k_rope = get_kernel(Op::kRope, dk, DType::kF32);
  const KernelEntry& k_swiglu = get_kernel(Op::kSwiglu, dk, DType::kF32);
  const KernelEntry& k_kv = get_kernel(Op::kKvWrite, dk, ks.dtype);
  const KernelEntry& k_attn = get_kernel(Op::kAttention, dk, ks.dtype);

  // w is (n, k) row-major in the matrix dtype.
  auto matmul = [&](float* out, const float* x, const void* w, const float* bias, int64_t m, int64_t n,
                    int64_t k, bool accumulate) {
    MatmulArgs a{out, x, w, bias, m, n, k, n, k, accumulate};
    k_matmul.fn(&a, ctx);
  };
  auto norm = [&](float* out, const float* x, const float* weight, int64_t rows, int64_t width,
                  int64_t out_stride, int64_t x_stride) {
    RmsNormArgs a{out, nullptr, x, weight, rows, width, out_stride, x_stride, static_cast<float>(s.rms_norm_eps),
                  0.0f};
    k_norm.fn(&a, ctx);
  };

  float* x = x_.data;
  float* h = h_.data;
  float* qkv = qkv_.data;
  EmbeddingArgs ea{x, placed_.embed, token_ids, T, H, V};
  k_embed.fn(&ea, ctx);

  const int64_t rot_dim = rope_rot_dim(s);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t l = 0; l < s.n_layers; ++l) {
    const PlacedLayer& L = placed_.layers[static_cast<size_t>(l)];
    // --- attention block ---
    norm(h, x, L.attn_norm, T, H, H, H);
    matmul(qkv, h, L.qkv, L.qkv_bias, T, qkv_dim_, H, false);
    float* q = qkv;
    float* k = q + nh * hd;
    float* v = k + nkv * hd;
    if (s.qk_norm) {
      for (int64_t t = 0; t < T; ++t) {
        norm(q + t * qkv_dim_, q + t * qkv_dim_, L.q_norm, nh, hd, hd, hd);
        norm(k + t * qkv_dim_, k + t * qkv_dim_, L.k_norm, nkv, hd, hd, hd);
      }
    }
    RopeArgs rq{q, positions, inv_freq, table_of_token, T, nh, hd, rot_dim, qkv_dim_, static_rope_.attention_scaling};
    k_rope.fn(&rq, ctx);
    RopeArgs rk = rq;
    rk.x = k;
    rk.n_heads = nkv;
    k_rope.fn(&rk, ctx);
    KvWriteArgs kw{kv.k(l), kv.v(l), k, v, slot_mapping, T, nkv, hd, qkv_dim_, qkv_dim_, ks.n_blocks * ks.block_size};
    k_kv.fn(&kw, ctx);
    AttentionArgs aa{attn_.data, q, kv.k(l), kv.v(l), cu_seqlens, positions, context_lens, block_tables,
                     batch.n_seqs(), nh, nkv, hd, ks.block_size, batch.max_blocks_per_seq, qkv_dim_, nh * hd,
                     s.sliding_window, scale};
    k_attn.fn(&aa, ctx);
    matmul(x, attn_.data, L.o, L.o_bias, T, H, nh * hd, true);
    // --- MLP block ---
    norm(h, x, L.mlp_norm, T, H, H, H);
    matmul(gate_up_.data, h, L.gate_up, L.gate_up_bias, T, 2 * I, H, false);
    SwigluArgs sa{act_.data, gate_up_.data, T, I, I, 2 * I};
    k_swiglu.fn(&sa, ctx);
    matmul(x, act_.data, L.down, L.down_bias, T, H, I, true);
  }
  if (n_logits == 0) return;
  // Final norm and head, only for the rows whose logits are wanted.
  float* sel = sel_.data;
  if (on_host) {
    for (int64_t r = 0; r < n_logits; ++r) {
      std::memcpy(&sel[r * H], &x[static_cast<size_t>(batch.logits_indices[r]) * H], H * sizeof(float));
    }
  } else {
    // A row gather is an f32 embedding lookup with the residual stream as the table.
    EmbeddingArgs ga{sel, x, dev_logits_indices_, n_logits, H, T};
    get_kernel(Op::kEmbedding, dk, DType::kF32).fn(&ga, ctx);
  }
  norm(sel, sel, placed_.final_norm, n_logits, H, H, H);
  float* out = on_host ? logits : logits_.data;
  matmul(out, sel, placed_.lm_head, nullptr, n_logits, V, H, false);
}

}  // namespace eli
