// runtime/runner/model_runner.cc: see model_runner.h.
#include "runtime/runner/model_runner.h"

#include <algorithm>
#include <cstring>

#include "eli/error.h"
#include "kernels/registry.h"
#include "runtime/core/checked_math.h"
#include "runtime/device/device.h"
#include "runtime/kv/kv_cache.h"

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

ModelRunner::ModelRunner(Device& device, std::unique_ptr<Model> model, ThreadPool* pool, const OffloadPlan* offload)
    : device_(device), model_(std::move(model)), pool_(pool), kind_(device.id().kind) {
  ELI_CHECK_KIND(kInternal, model_ != nullptr, "ModelRunner needs a model");
  stream_ = device_.default_stream().native();
  prepare_kernels(kind_, device_.id().index);  // no step loads code (registry.h says why)
  WeightStore& store = model_->weights();
  if (offload != nullptr && offload->active()) {
    // The ring first: the offloaded weights' tensors are views of its slots from placement on.
    std::vector<eli::Buffer> slots;
    OffloadTarget target;
    target.tier_of_layer = offload->tier_of_layer;
    for (int i = 0; i < offload->ring_depth; ++i) {
      slots.push_back(device_.allocate_buffer(offload->slot_bytes, BufferType::kDevice));
      target.slots.push_back(slots.back().mutable_data());
    }
    store.place(device_, stream_, pool_, &target);
    streamer_ = std::make_unique<WeightStreamer>(device_, store.take_layer_images(), std::move(slots),
                                                 model_->kv_spec().first_layer, store.source());
  } else {
    store.place(device_, stream_, pool_);
  }
  // On the device: every placement but the offloaded layers' images, plus the ring.
  weight_bytes_ = 0;
  for (const Placement& p : store.placements()) weight_bytes_ += p.bytes;
  if (streamer_ != nullptr) weight_bytes_ = weight_bytes_ - offload->host_bytes - offload->disk_bytes + offload->ring_bytes();
  rope_specs_ = model_->rope_sets();
  ELI_CHECK_KIND(kInternal, !rope_specs_.empty() && rope_specs_.size() <= static_cast<size_t>(kMaxRopeSets),
                 "a model declares ", rope_specs_.size(), " rope sets");
  for (const ModelSpec& s : rope_specs_) static_rope_.push_back(compute_rope_table(s, s.max_position));
  rope_host_.resize(rope_specs_.size());
  rope_uploaded_.resize(rope_specs_.size());
  rope_dev_.resize(rope_specs_.size());
}

ModelRunner::~ModelRunner() = default;

void ModelRunner::set_graphs_enabled(bool on) {
  graphs_enabled_ = on;
  if (!on) graphs_.clear();
}

void ModelRunner::ensure_workspace(int64_t T, int64_t L) {
  const ModelSpec& s = spec();
  int64_t n = 0;
  ELI_CHECK(checked_mul(T, std::max<int64_t>({s.hidden_size, (s.n_heads + 2 * s.n_kv_heads) * s.head_dim,
                                              2 * s.intermediate_size}), &n) &&
                checked_mul(L, std::max<int64_t>(s.hidden_size, s.vocab_size), &n),
            "workspace size overflows for ", T, " tokens");
  if (T <= reserved_tokens_ && L <= reserved_logits_) return;
  T = std::max(T, reserved_tokens_);
  L = std::max(L, reserved_logits_);
  const WorkspaceSizes want = model_->workspace(T, L, kind_);
  for (size_t i = 0; i < ws_bufs_.size(); ++i) {
    Buffer& b = ws_bufs_[i];
    const size_t bytes = want.bytes[i];
    if (bytes <= b.bytes && (bytes == 0 || b.t.defined())) continue;
    graphs_.clear();  // captured graphs hold the old pointers
    b.t = Tensor();   // free first (the pool reuses the block on the same stream)
    b.bytes = 0;
    ws_.ptr[i] = nullptr;
    // Allocated in f32 units, 16-byte multiples (16-bit data is viewed through the same buffer).
    b.t = Tensor::empty(device_, DType::kF32, {static_cast<int64_t>((bytes + 15) / 16 * 4)});
    b.bytes = bytes;
    ws_.ptr[i] = b.t.ptr<void>();
    ws_.sizes.bytes[i] = bytes;
  }
  if (!device_.properties().host_memory) {  // host devices write logits where the caller wants them
    const size_t bytes = static_cast<size_t>(L * s.vocab_size) * sizeof(float);
    if (bytes > logits_.bytes) {
      graphs_.clear();
      logits_.t = Tensor();
      logits_.t = Tensor::empty(device_, DType::kF32, {L * s.vocab_size});
      logits_.bytes = bytes;
    }
  }
  reserved_tokens_ = T;
  reserved_logits_ = L;
}

uint64_t ModelRunner::reserve(int64_t max_tokens, int64_t max_logits) {
  ELI_CHECK(max_tokens >= 1 && max_logits >= 0, "reserve: bad sizes");
  ensure_workspace(max_tokens, max_logits);
  // Hidden states of the logits rows (embeddings): reserved with the rest, so an embedding step
  // allocates nothing either (small: rows x hidden f32).
  const size_t hidden_bytes = static_cast<size_t>(reserved_logits_ * spec().hidden_size) * sizeof(float);
  if (hidden_bytes > hidden_.bytes) {
    hidden_.t = Tensor();
    hidden_.t = Tensor::empty(device_, DType::kF32, {reserved_logits_ * spec().hidden_size});
    hidden_.bytes = hidden_bytes;
  }
  uint64_t bytes = logits_.t.defined() ? logits_.t.nbytes() : 0;
  bytes += hidden_.t.defined() ? hidden_.t.nbytes() : 0;
  for (const Buffer& b : ws_bufs_) bytes += b.t.defined() ? b.t.nbytes() : 0;
  return bytes;
}

void ModelRunner::build_rope_tables(const Batch& batch) {
  const int64_t T = batch.n_tokens();
  table_of_token_.assign(static_cast<size_t>(T), 0);
  bool any_dynamic = false;
  for (size_t i = 0; i < rope_specs_.size(); ++i) {
    const ModelSpec& rs = rope_specs_[i];
    if (!rope_is_dynamic(rs)) {
      rope_host_[i] = static_rope_[i].inv_freq;
      continue;
    }
    // One table per sequence, from the sequence's length after this step (as HF does per forward
    // call: dynamic NTK and LongRoPE's short / long factors).
    any_dynamic = true;
    const int64_t half = rope_rot_dim(rs) / 2;
    rope_host_[i].resize(static_cast<size_t>(batch.n_seqs() * half));
    for (int64_t s = 0; s < batch.n_seqs(); ++s) {
      RopeTable t = compute_rope_table(rs, batch.context_lens[s]);
      std::copy(t.inv_freq.begin(), t.inv_freq.end(), rope_host_[i].begin() + s * half);
    }
  }
  if (any_dynamic) {
    for (int64_t s = 0; s < batch.n_seqs(); ++s) {
      for (int32_t t = batch.cu_seqlens[s]; t < batch.cu_seqlens[s + 1]; ++t) table_of_token_[t] = static_cast<int32_t>(s);
    }
  }
}

void ModelRunner::upload(const Batch& batch, const TokenFeed* feed) {
  const int64_t T = batch.n_tokens();
  // Packed layout (int32): token_ids, positions, cu_seqlens, context_lens, block_tables,
  // slot_mapping, logits_indices, block_tables1, slot_mapping1 (KV group 1; empty with one group),
  // table_of_token; then, with a token feed, its dst_index and src_index (after every array a
  // graph reads, so their offsets do not move with the feed's size). Each array starts at a
  // multiple of 4 elements.
  constexpr int kBatchArrays = 9, kTableOfToken = 9, kFeedDst = 10, kFeedSrc = 11, kArrays = 12;
  const std::vector<int32_t>* arrays[kBatchArrays] = {
      &batch.token_ids,    &batch.positions,      &batch.cu_seqlens,     &batch.context_lens, &batch.block_tables,
      &batch.slot_mapping, &batch.logits_indices, &batch.block_tables1, &batch.slot_mapping1};
  const int64_t n_feed = feed != nullptr ? static_cast<int64_t>(feed->dst_index.size()) : 0;
  int64_t offsets[kArrays + 1];
  offsets[0] = 0;
  for (int i = 0; i < kArrays; ++i) {
    const int64_t n = i < kBatchArrays ? static_cast<int64_t>(arrays[i]->size()) : (i == kTableOfToken ? T : n_feed);
    offsets[i + 1] = offsets[i] + (n + 3) / 4 * 4;
  }
  staging_.assign(static_cast<size_t>(offsets[kArrays]), 0);
  for (int i = 0; i < kBatchArrays; ++i) std::copy(arrays[i]->begin(), arrays[i]->end(), staging_.begin() + offsets[i]);
  std::copy(table_of_token_.begin(), table_of_token_.begin() + T, staging_.begin() + offsets[kTableOfToken]);
  if (n_feed > 0) {
    ELI_CHECK_KIND(kInternal, feed->src != nullptr && feed->src_index.size() == feed->dst_index.size(),
                   "malformed token feed");
    for (int64_t i = 0; i < n_feed; ++i) {
      ELI_CHECK_KIND(kInternal, feed->dst_index[i] >= 0 && feed->dst_index[i] < T, "token feed index ",
                     feed->dst_index[i], " outside the step's ", T, " tokens");
    }
    std::copy(feed->dst_index.begin(), feed->dst_index.end(), staging_.begin() + offsets[kFeedDst]);
    std::copy(feed->src_index.begin(), feed->src_index.end(), staging_.begin() + offsets[kFeedSrc]);
  }
  const size_t bytes = staging_.size() * sizeof(int32_t);
  if (bytes > batch_ints_.bytes || !batch_ints_.t.defined()) {
    graphs_.clear();
    batch_ints_.t = Tensor();
    batch_ints_.t = Tensor::empty(device_, DType::kI32, {std::max<int64_t>(offsets[kArrays], 4)});
    batch_ints_.bytes = batch_ints_.t.nbytes();
  }
  int32_t* base = batch_ints_.t.ptr<int32_t>();
  device_.copy_host_to_device(base, staging_.data(), bytes, stream_);
  in_.token_ids = base + offsets[0];
  in_.positions = base + offsets[1];
  in_.cu_seqlens = base + offsets[2];
  in_.context_lens = base + offsets[3];
  in_.block_tables = base + offsets[4];
  in_.slot_mapping = base + offsets[5];
  in_.logits_indices = base + offsets[6];
  in_.block_tables1 = batch.block_tables1.empty() ? nullptr : base + offsets[7];
  in_.slot_mapping1 = batch.block_tables1.empty() ? nullptr : base + offsets[8];
  const int32_t* table_of_token = base + offsets[kTableOfToken];
  if (n_feed > 0) {
    ScatterTokensArgs sa{base + offsets[0], base + offsets[kFeedDst], feed->src, base + offsets[kFeedSrc], n_feed,
                         spec().vocab_size};
    get_kernel(Op::kScatterTokens, kind_, DType::kF32).fn(&sa, ExecContext{pool_, stream_});
  }
  // The inverse frequencies change only with dynamic RoPE: copy them when they differ from the
  // device's copy (or the buffer was reallocated).
  for (size_t i = 0; i < rope_specs_.size(); ++i) {
    Buffer& b = rope_dev_[i];
    const std::vector<float>& host = rope_host_[i];
    const size_t rb = std::max<size_t>(host.size(), 1) * sizeof(float);
    bool fresh = false;
    if (rb > b.bytes || !b.t.defined()) {
      graphs_.clear();
      b.t = Tensor();
      b.t = Tensor::empty(device_, DType::kF32, {static_cast<int64_t>(std::max<size_t>(host.size(), 1))});
      b.bytes = b.t.nbytes();
      fresh = true;
    }
    if (fresh || rope_uploaded_[i] != host) {
      device_.copy_host_to_device(b.t.ptr<void>(), host.data(), host.size() * sizeof(float), stream_);
      rope_uploaded_[i] = host;
    }
    RopeInputs& r = in_.rope[i];
    r.inv_freq = b.t.ptr<float>();
    r.table_of_token = rope_is_dynamic(rope_specs_[i]) ? table_of_token : nullptr;
    r.rot_dim = rope_rot_dim(rope_specs_[i]);
    r.attention_scaling = static_rope_[i].attention_scaling;
  }
}

void ModelRunner::run_model(KvCache& kv, float* logits) {
  in_.hidden_out = nullptr;
  if (want_hidden_ && in_.n_logits > 0) {
    const size_t bytes = static_cast<size_t>(std::max(in_.n_logits, reserved_logits_) * spec().hidden_size) * sizeof(float);
    if (bytes > hidden_.bytes) {
      hidden_.t = Tensor();
      hidden_.t = Tensor::empty(device_, DType::kF32, {static_cast<int64_t>(bytes / sizeof(float))});
      hidden_.bytes = bytes;
    }
    in_.hidden_out = hidden_.t.ptr<float>();
  }
  const ForwardContext f(kind_, ExecContext{pool_, stream_}, in_, kv, ws_, logits, comm_, streamer_.get());
  if (streamer_ != nullptr) streamer_->begin_step();
  model_->forward(f);
  if (streamer_ != nullptr) streamer_->end_step();
}

Batch ModelRunner::pad_decode_batch(const Batch& batch, int64_t b, int64_t stride) {
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
  auto pad_tables = [&](const std::vector<int32_t>& from, std::vector<int32_t>* to) {
    to->assign(static_cast<size_t>(b * stride), 0);
    for (int64_t s = 0; s < n; ++s) {
      std::copy(from.begin() + s * batch.max_blocks_per_seq, from.begin() + (s + 1) * batch.max_blocks_per_seq,
                to->begin() + s * stride);
    }
  };
  pad_tables(batch.block_tables, &p.block_tables);
  p.slot_mapping = batch.slot_mapping;
  p.slot_mapping.resize(static_cast<size_t>(b), -1);
  if (!batch.block_tables1.empty()) {
    pad_tables(batch.block_tables1, &p.block_tables1);
    p.slot_mapping1 = batch.slot_mapping1;
    p.slot_mapping1.resize(static_cast<size_t>(b), -1);
  }
  p.logits_indices.resize(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) p.logits_indices[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  return p;
}

bool ModelRunner::graphable(const Batch& batch) const {
  const int64_t T = batch.n_tokens();
  if (!graphs_enabled_ || want_hidden_ || !device_.properties().supports_graphs || !graphs_supported() ||
      T > kMaxGraphTokens || (streamer_ != nullptr && !streamer_->graphable())) {
    return false;
  }
  for (const ModelSpec& rs : rope_specs_) {
    if (rope_is_dynamic(rs)) return false;
  }
  if (T != batch.n_seqs() || batch.n_logits() != T) return false;
  for (int64_t r = 0; r < T; ++r) {
    if (batch.logits_indices[r] != r) return false;
  }
  return true;
}

float* ModelRunner::forward(const Batch& batch, KvCache& kv, const TokenFeed* feed) {
  return forward_into(batch, kv, feed, nullptr);
}

float* ModelRunner::forward_into(const Batch& batch, KvCache& kv, const TokenFeed* feed, float* host_logits) {
  const KvCacheShape& ks = kv.shape();
  const int64_t T = batch.n_tokens();
  ELI_CHECK(T > 0, "empty batch");
  check_batch(batch, ks.block_size, ks.n_blocks, spec().vocab_size, ks.n_blocks1);
  if (feed != nullptr && feed->dst_index.empty()) feed = nullptr;
  int64_t max_q = 0, max_ctx = 0;
  for (int64_t s = 0; s < batch.n_seqs(); ++s) {
    max_q = std::max<int64_t>(max_q, batch.cu_seqlens[s + 1] - batch.cu_seqlens[s]);
    max_ctx = std::max<int64_t>(max_ctx, batch.context_lens[s]);
  }
  // A host-memory device writes the logits where the caller wants them; other devices into the
  // runner's buffer (a host forward() without a target gets a buffer of its own, grown on demand).
  float* out = host_logits;
  if (out == nullptr && device_.properties().host_memory &&
      static_cast<size_t>(batch.n_logits() * spec().vocab_size) * sizeof(float) > logits_.bytes) {
    logits_.t = Tensor();
    logits_.t = Tensor::empty(device_, DType::kF32, {std::max<int64_t>(batch.n_logits(), 1) * spec().vocab_size});
    logits_.bytes = logits_.t.nbytes();
  }
  if (!graphable(batch)) {
    // The device's logits buffer is taken after ensure_workspace, which may allocate or grow it
    // (a runner used without reserve(), or a step with more logits rows than any before).
    ensure_workspace(T, batch.n_logits());
    if (out == nullptr) out = logits_.t.ptr<float>();
    build_rope_tables(batch);
    upload(batch, feed);
    in_.n_tokens = T;
    in_.n_seqs = batch.n_seqs();
    in_.n_logits = batch.n_logits();
    in_.max_blocks_per_seq = batch.max_blocks_per_seq;
    in_.max_query_len = max_q;
    in_.max_context_len = max_ctx;
    run_model(kv, out);
    ++graph_stats_.eager_steps;
    return out;
  }
  const int64_t b = next_pow2(T);
  const int64_t stride = std::max<int64_t>(16, next_pow2(batch.max_blocks_per_seq));
  const Batch padded = pad_decode_batch(batch, b, stride);
  ensure_workspace(b, b);  // before the upload: a reallocation here drops graphs, not the upload
  build_rope_tables(padded);
  upload(padded, feed);
  // The graph's kernels see upper bounds: one query per sequence and the widest context the
  // block-table width allows (split-K attention computes each split's range on the device).
  in_.n_tokens = b;
  in_.n_seqs = b;
  in_.n_logits = b;
  in_.max_blocks_per_seq = stride;
  in_.max_query_len = 1;
  in_.max_context_len = stride * ks.block_size;
  float* logits = logits_.t.ptr<float>();
  const std::pair<int64_t, int64_t> key{b, stride};
  auto it = graphs_.find(key);
  if (it != graphs_.end()) {
    it->second->replay(stream_);
    ++graph_stats_.replays;
    return logits;
  }
  if (++graph_sightings_[key] < 2) {
    run_model(kv, logits);
    ++graph_stats_.eager_steps;
    return logits;
  }
  std::unique_ptr<StepGraph> g = capture_step_graph(stream_, [&] { run_model(kv, logits); });
  g->replay(stream_);
  ++graph_stats_.captured;
  ++graph_stats_.replays;
  graphs_[key] = std::move(g);
  return logits;
}

void ModelRunner::forward_to_host(const Batch& batch, KvCache& kv, float* logits) {
  if (device_.properties().host_memory) {
    forward_into(batch, kv, nullptr, logits);
    return;
  }
  const float* dev = forward(batch, kv);
  if (batch.n_logits() == 0) return;
  // Synchronous on the device's stream: the logits are on the host when this returns.
  device_.copy_device_to_host(logits, dev, static_cast<size_t>(batch.n_logits() * spec().vocab_size) * sizeof(float),
                              nullptr);
}

void ModelRunner::copy_hidden(int64_t row0, int64_t n, float* dst) {
  ELI_CHECK_KIND(kInternal, hidden_.t.defined() && row0 >= 0 && n >= 0 &&
                     static_cast<size_t>((row0 + n) * spec().hidden_size) * sizeof(float) <= hidden_.bytes,
                 "copy_hidden: rows ", row0, "+", n, " outside the last step's hidden states");
  if (n == 0) return;
  const int64_t H = spec().hidden_size;
  device_.copy_device_to_host(dst, hidden_.t.ptr<float>() + row0 * H, static_cast<size_t>(n * H) * sizeof(float),
                              nullptr);
}

void ModelRunner::copy_logits(const float* logits, int64_t row0, int64_t n, float* dst) {
  if (n == 0) return;
  const int64_t V = spec().vocab_size;
  if (device_.properties().host_memory) {
    std::memcpy(dst, logits + row0 * V, static_cast<size_t>(n * V) * sizeof(float));
    return;
  }
  device_.copy_device_to_host(dst, logits + row0 * V, static_cast<size_t>(n * V) * sizeof(float), nullptr);
}

void ModelRunner::enable_sampling(int64_t max_rows, int64_t vocab) {
  sampler_ = std::make_unique<DeviceSampler>(device_, max_rows, vocab, 0, pool_);
}

DeviceSampler& ModelRunner::sampler() {
  ELI_CHECK(sampler_ != nullptr, "ModelRunner::sampler() before enable_sampling()");
  return *sampler_;
}

}  // namespace eli
