// runtime/model/blocks.cc: see blocks.h.
#include "runtime/model/blocks.h"

#include <algorithm>
#include <cmath>

#include "eli/error.h"
#include "kernels/registry.h"
#include "runtime/kv/kv_cache.h"
#include "runtime/model/linear_observer.h"
#include "runtime/model/model.h"
#include "runtime/model/weight_reader.h"

namespace eli {

TransformerDims dims_of(const ModelSpec& s) {
  TransformerDims d;
  d.hidden = s.hidden_size;
  d.intermediate = s.intermediate_size;
  d.n_heads = s.n_heads;
  d.n_kv_heads = s.n_kv_heads;
  d.head_dim = s.head_dim;
  d.vocab = s.vocab_size;
  return d;
}

TransformerDims dims_of(const ModelSpec& s, const RankShard& shard) {
  TransformerDims d = dims_of(s);
  if (shard.tp_size > 1) {
    d.n_heads = shard.q_heads.size();
    d.n_kv_heads = shard.kv_heads.size();
    d.intermediate = shard.intermediate.size();
    d.vocab = shard.vocab.size();
  }
  return d;
}

void ForwardContext::linear(const LinearWeight& w, int64_t m, const LinearInput& input,
                            const LinearOutput& output) const {
  LinearScratch s;
  s.norm = slot(WsSlot::kLinearNorm);
  s.norm_bytes = slot_bytes(WsSlot::kLinearNorm);
  s.mid = slot(WsSlot::kLinearMid);
  s.mid_bytes = slot_bytes(WsSlot::kLinearMid);
  s.blas = slot(WsSlot::kBlas);
  s.blas_bytes = slot_bytes(WsSlot::kBlas);
  if (device == DeviceKind::kCPU) {
    if (LinearObserver* obs = linear_observer()) obs->observe(w, m, input);
  }
  w.method->apply(w, m, input, output, s, exec, device);
}

namespace {

// Whether the forward is split over several tensor-parallel ranks.
bool tensor_parallel(const ForwardContext& f) { return f.comm != nullptr && f.comm->shard().tp_size > 1; }

}  // namespace

void embed_tokens(const ForwardContext& f, const LinearWeight& table, float scale) {
  EmbeddingArgs a{f.slot<float>(WsSlot::kResidual), table.ptr(), f.in.token_ids, f.in.n_tokens, table.cols, table.rows,
                  scale};
  const bool tp = tensor_parallel(f);
  if (tp) {  // vocab parallel: this rank's rows, zeros for the others' tokens, summed over the ranks
    a.row_offset = f.comm->shard().vocab.begin;
    a.zero_outside = true;
  }
  get_kernel(Op::kEmbedding, f.device, table.format, table.dtype).fn(&a, f.exec);
  if (tp) f.comm->all_reduce_sum(a.out, f.in.n_tokens * table.cols, f.exec);
}

namespace {

// x += norm(y) for T rows (a post-norm before the residual add).
void add_normed(const ForwardContext& f, const float* y, const VectorWeight& norm, float eps, int64_t T, int64_t H) {
  NormCastArgs n{};
  n.out = f.slot<float>(WsSlot::kResidual);
  n.x = y;
  n.weight = norm.ptr();
  n.rows = T;
  n.hidden = H;
  n.out_stride = H;
  n.x_stride = H;
  n.eps = eps;
  n.weight_offset = 0.0f;
  n.out_dtype = DType::kF32;
  n.accumulate = true;
  get_kernel(Op::kNormCast, f.device, DType::kF32).fn(&n, f.exec);
}

// The product `w` of `in` rows added to the residual stream, through a post-norm if there is one.
void residual_product(const ForwardContext& f, const LinearWeight& w, const LinearInput& in,
                      const VectorWeight* post_norm, float eps, int64_t T, int64_t H) {
  float* x = f.slot<float>(WsSlot::kResidual);
  const bool tp = tensor_parallel(f);  // w is row parallel: each rank's product is a partial sum
  if (post_norm == nullptr) {
    if (!tp) {
      f.linear(w, T, in, LinearOutput{x, DType::kF32, H, LinearEpilogue::kAccumulate});
      return;
    }
    // The residual add fused into the all-reduce: rank 0 adds its partial to x, the others store
    // theirs in their x, and the sum over the ranks is x + every partial (the bias is rank 0's).
    const bool adds = f.comm->shard().tp_rank == 0;
    f.linear(w, T, in, LinearOutput{x, DType::kF32, H, adds ? LinearEpilogue::kAccumulate : LinearEpilogue::kStore});
    f.comm->all_reduce_sum(x, T * H, f.exec);
    return;
  }
  float* y = f.slot<float>(WsSlot::kHidden);
  f.linear(w, T, in, LinearOutput{y, DType::kF32, H, LinearEpilogue::kStore});
  if (tp) f.comm->all_reduce_sum(y, T * H, f.exec);  // the whole product before its post-norm
  add_normed(f, y, *post_norm, eps, T, H);
}

}  // namespace

void attention_block(const ForwardContext& f, int64_t layer, const AttentionLayer& L, const TransformerDims& d) {
  const StepInputs& in = f.in;
  const int64_t T = in.n_tokens, H = d.hidden, nh = d.n_heads, nkv = d.n_kv_heads, hd = d.head_dim;
  const int64_t qkv_dim = d.qkv_dim();
  const KvCacheShape& ks = f.kv.shape();
  // The layer's KV group (runtime/kv/kv_groups.h): its own block table and slots; a windowed
  // group keeps only its window's blocks, so the layer must not attend beyond it.
  const int group = ks.group_of(layer);
  const int64_t kept = ks.group_window[group];
  ELI_CHECK(kept == 0 || (L.sliding_window > 0 && L.sliding_window <= kept), "layer ", layer, " attends to ",
            L.sliding_window == 0 ? std::string("the full context") : std::to_string(L.sliding_window) + " positions",
            " but its KV group keeps ", kept);
  const int32_t* block_tables = group == 0 ? in.block_tables : in.block_tables1;
  const int32_t* slot_mapping = group == 0 ? in.slot_mapping : in.slot_mapping1;
  ELI_CHECK(block_tables != nullptr && slot_mapping != nullptr, "no block table for KV group ", group);
  float* x = f.slot<float>(WsSlot::kResidual);
  float* qkv = f.slot<float>(WsSlot::kQkv);
  f.linear(*L.qkv, T, LinearInput{x, DType::kF32, H, L.norm->ptr(), L.norm_eps},
           LinearOutput{qkv, DType::kF32, qkv_dim, LinearEpilogue::kStore});

  const RopeInputs& rope = in.rope[static_cast<size_t>(L.rope_set)];
  RopeKvWriteArgs rk{};
  rk.q_out = f.slot(WsSlot::kQuery);
  rk.k_cache = f.kv.k(layer);
  rk.v_cache = f.kv.v(layer);
  rk.qkv = qkv;
  rk.q_norm = L.q_norm != nullptr ? L.q_norm->ptr() : nullptr;
  rk.k_norm = L.k_norm != nullptr ? L.k_norm->ptr() : nullptr;
  rk.positions = in.positions;
  rk.slot_mapping = slot_mapping;
  rk.inv_freq = rope.inv_freq;
  rk.table_of_token = rope.table_of_token;
  rk.n_tokens = T;
  rk.n_heads = nh;
  rk.n_kv_heads = nkv;
  rk.head_dim = hd;
  rk.rot_dim = rope.rot_dim;
  rk.qkv_stride = qkv_dim;
  rk.n_slots = ks.blocks_of_layer(layer) * ks.block_size;
  rk.attention_scaling = rope.attention_scaling;
  rk.norm_eps = L.norm_eps;
  rk.q_dtype = ks.query_dtype();  // the cache's dtype (an int8/fp8 cache: f32 or the weights' type)
  rk.k_scale = f.kv.k_scale(layer);  // nullptr unless the cache is int8 / fp8
  rk.v_scale = f.kv.v_scale(layer);
  get_kernel(Op::kRopeKvWrite, f.device, ks.dtype).fn(&rk, f.exec);

  const DType attn_dtype = f.linear_input_dtype(*L.o, T);
  AttentionArgs aa{};
  aa.out = f.slot(WsSlot::kAttnOut);
  aa.q = f.slot(WsSlot::kQuery);
  aa.k_cache = f.kv.k(layer);
  aa.v_cache = f.kv.v(layer);
  aa.cu_seqlens = in.cu_seqlens;
  aa.positions = in.positions;
  aa.context_lens = in.context_lens;
  aa.block_tables = block_tables;
  aa.n_seqs = in.n_seqs;
  aa.n_heads = nh;
  aa.n_kv_heads = nkv;
  aa.head_dim = hd;
  aa.block_size = ks.block_size;
  aa.max_blocks_per_seq = in.max_blocks_per_seq;
  aa.q_stride = nh * hd;
  aa.out_stride = nh * hd;
  aa.sliding_window = L.sliding_window;
  aa.scale = L.scale > 0.0f ? L.scale : 1.0f / std::sqrt(static_cast<float>(hd));
  aa.q_dtype = ks.query_dtype();
  aa.k_scale = f.kv.k_scale(layer);
  aa.v_scale = f.kv.v_scale(layer);
  aa.out_dtype = attn_dtype;
  aa.max_query_len = in.max_query_len;
  aa.max_context_len = in.max_context_len;
  aa.workspace = f.slot(WsSlot::kAttnSplit);
  aa.workspace_bytes = f.slot_bytes(WsSlot::kAttnSplit);
  get_kernel(Op::kAttention, f.device, ks.dtype).fn(&aa, f.exec);

  residual_product(f, *L.o, LinearInput{aa.out, attn_dtype, nh * hd}, L.post_norm, L.norm_eps, T, H);
}

void mlp_block(const ForwardContext& f, const MlpLayer& L, const TransformerDims& d) {
  const int64_t T = f.in.n_tokens, H = d.hidden, I = L.down->cols;
  float* x = f.slot<float>(WsSlot::kResidual);
  const DType act_dtype = f.linear_input_dtype(*L.down, T);
  void* act = f.slot(WsSlot::kMlpAct);
  f.linear(*L.gate_up, T, LinearInput{x, DType::kF32, H, L.norm->ptr(), L.norm_eps},
           LinearOutput{act, act_dtype, I, LinearEpilogue::kGated, L.act});
  residual_product(f, *L.down, LinearInput{act, act_dtype, I}, L.post_norm, L.norm_eps, T, H);
}

void logits_block(const ForwardContext& f, const VectorWeight& final_norm, float eps, const LinearWeight& head,
                  const TransformerDims& d) {
  const int64_t n = f.in.n_logits, H = d.hidden;
  if (n == 0) return;
  // The rows whose logits are wanted (a row gather is an f32 embedding lookup with the residual
  // stream as the table), then the head with the final norm as its prologue.
  float* sel = f.slot<float>(WsSlot::kSelected);
  EmbeddingArgs ga{sel, f.slot<float>(WsSlot::kResidual), f.in.logits_indices, n, H, f.in.n_tokens};
  get_kernel(Op::kEmbedding, f.device, DType::kF32).fn(&ga, f.exec);
  if (f.in.hidden_out != nullptr) {  // embeddings: the same rows after the final norm
    NormCastArgs na{f.in.hidden_out, sel, final_norm.ptr(), n, H, H, H, eps, 0.0f, DType::kF32};
    get_kernel(Op::kNormCast, f.device, DType::kF32).fn(&na, f.exec);
  }
  const LinearInput in{sel, DType::kF32, H, final_norm.ptr(), eps};
  if (!tensor_parallel(f)) {
    f.linear(head, n, in, LinearOutput{f.logits, DType::kF32, head.rows, LinearEpilogue::kStore});
    return;
  }
  // Vocab parallel: this rank's columns of the logits, then gathered so that every rank holds all.
  int64_t stride = 0;
  float* part = f.comm->logits_shard(n, &stride);
  f.linear(head, n, in, LinearOutput{part, DType::kF32, stride, LinearEpilogue::kStore});
  f.comm->gather_logits(n, f.logits, f.exec);
}

WorkspaceSizes transformer_workspace(const TransformerDims& d, const std::vector<const LinearWeight*>& linears,
                                     int64_t T, int64_t L, DeviceKind device) {
  WorkspaceSizes w;
  const size_t f32 = sizeof(float);
  const int64_t I = d.intermediate, H = d.hidden, qh = d.n_heads * d.head_dim;
  w[WsSlot::kResidual] = static_cast<size_t>(T * H) * f32;
  w[WsSlot::kHidden] = static_cast<size_t>(T * H) * f32;
  w[WsSlot::kQkv] = static_cast<size_t>(T * d.qkv_dim()) * f32;
  w[WsSlot::kQuery] = static_cast<size_t>(T * qh) * f32;
  w[WsSlot::kAttnOut] = static_cast<size_t>(T * qh) * f32;
  w[WsSlot::kMlpAct] = static_cast<size_t>(T * I) * f32;
  w[WsSlot::kSelected] = static_cast<size_t>(L * H) * f32;
  const int64_t rows = std::max(T, L);
  for (const LinearWeight* lw : linears) {
    size_t norm = 0, mid = 0, blas = 0;
    lw->method->scratch_bytes(*lw, rows, device, &norm, &mid, &blas);
    w[WsSlot::kLinearNorm] = std::max(w[WsSlot::kLinearNorm], norm);
    w[WsSlot::kLinearMid] = std::max(w[WsSlot::kLinearMid], mid);
    w[WsSlot::kBlas] = std::max(w[WsSlot::kBlas], blas);
  }
  // Split-K decode partials for up to max(min(T, 256), L) decode queries (a bigger decode batch
  // runs without splits, still correct).
  const int64_t decode_tokens = std::max<int64_t>(std::min<int64_t>(T, 256), L);
  w[WsSlot::kAttnSplit] = attention_workspace_bytes(decode_tokens, d.n_heads, d.head_dim);
  return w;
}

// ---- loading helpers ---------------------------------------------------------------------------

namespace {

LinearLoadContext load_context(const ModelLoadOptions& opt) {
  LinearLoadContext c;
  c.compute_dtype = opt.compute_dtype;
  c.device = opt.device;
  c.defer_merges = opt.defer_merges;
  c.pool = opt.pool;
  return c;
}

}  // namespace

namespace {

// The rows [begin, end) of each range of the parts' concatenation, as parts (row ranges of the
// stored tensors).
std::vector<LinearPart> select_rows(const std::vector<LinearPart>& parts, const std::vector<Range>& ranges) {
  std::vector<LinearPart> out;
  for (const Range& r : ranges) {
    int64_t at = 0;  // first row of the current part in the concatenation
    for (const LinearPart& p : parts) {
      const int64_t b = std::max(r.begin, at), e = std::min(r.end, at + p.rows);
      if (b < e) {
        LinearPart q = p;
        q.row_begin = p.row_begin + (b - at);
        q.rows = e - b;
        q.stored_rows = p.full_rows();
        out.push_back(q);
      }
      at += p.rows;
    }
  }
  return out;
}

// Applies a tensor-parallel split to `spec` for rank opt.shard (see TpSplit).
void split_spec(LinearSpec& spec, TpSplit split, const RankShard& sh) {
  if (split == TpSplit::kNone || sh.tp_size == 1) return;
  spec.shard.rank = sh.tp_rank;
  spec.shard.world = sh.tp_size;
  const int64_t hd = sh.head_dim;
  auto cols = [&](Range c) {
    spec.shard.dim = 1;
    spec.stored_cols = spec.cols;
    spec.col_begin = c.begin;
    spec.cols = c.size();
    spec.bias = spec.bias && sh.tp_rank == 0;  // a row-parallel product's bias is added once
  };
  switch (split) {
    case TpSplit::kNone: return;
    case TpSplit::kQkv: {
      const int64_t q = sh.n_heads * hd, kv = sh.n_kv_heads * hd;
      const Range k{q + sh.kv_heads.begin * hd, q + sh.kv_heads.end * hd};
      spec.parts = select_rows(spec.parts, {{sh.q_heads.begin * hd, sh.q_heads.end * hd}, k,
                                            {k.begin + kv, k.end + kv}});
      return;
    }
    case TpSplit::kGateUp: {
      const int64_t I = spec.rows() / 2;
      const Range& i = sh.intermediate;
      spec.parts = select_rows(spec.parts, {i, {I + i.begin, I + i.end}});
      return;
    }
    case TpSplit::kHeadsIn: cols(Range{sh.q_heads.begin * hd, sh.q_heads.end * hd}); return;
    case TpSplit::kIntermediateIn: cols(sh.intermediate); return;
  }
}

}  // namespace

const LinearWeight* load_linear_into(WeightStore& store, const WeightReader& reader, const ModelLoadOptions& opt,
                                     std::string name, std::vector<LinearPart> parts, int64_t cols, bool bias,
                                     TpSplit split) {
  LinearSpec spec;
  spec.name = std::move(name);
  spec.parts = std::move(parts);
  spec.cols = cols;
  spec.bias = bias;
  split_spec(spec, split, opt.shard);
  LinearWeight w = load_linear(spec, reader, load_context(opt));
  store.add_params(static_cast<uint64_t>(w.rows * w.cols) + (spec.bias ? static_cast<uint64_t>(w.rows) : 0));
  return store.add(std::move(w));
}

const VectorWeight* load_vector_into(WeightStore& store, const WeightReader& reader, const std::string& canonical,
                                     int64_t n, float offset, bool required) {
  Tensor t = reader.vector(canonical, n, required);
  if (!t.defined()) return nullptr;
  if (offset != 0.0f) {
    float* p = t.ptr<float>();
    for (int64_t i = 0; i < n; ++i) p[i] += offset;
  }
  store.add_params(static_cast<uint64_t>(n));
  VectorWeight v;
  v.name = canonical;
  v.data = std::move(t);
  return store.add(std::move(v));
}

namespace {

bool head_tied(const ModelSpec& spec, const WeightReader& reader) {
  return spec.tie_word_embeddings || reader.find("lm_head.weight") == nullptr;
}

// The rank's vocab rows of a (V, H) table.
std::vector<LinearPart> vocab_rows(const std::string& name, const ModelSpec& spec, const RankShard& sh) {
  std::vector<LinearPart> parts = {LinearPart{name, spec.vocab_size, 0}};
  return sh.tp_size > 1 ? select_rows(parts, {sh.vocab}) : parts;
}

}  // namespace

const LinearWeight* load_embedding(WeightStore& store, const WeightReader& reader, const ModelLoadOptions& opt,
                                   const ModelSpec& spec) {
  const RankShard& sh = opt.shard;
  if (!sh.first_stage() && !(sh.last_stage() && head_tied(spec, reader))) return nullptr;
  LinearSpec s;
  s.name = "model.embed_tokens";
  s.parts = vocab_rows("model.embed_tokens", spec, sh);
  s.cols = spec.hidden_size;
  s.shard = ShardSpec{0, sh.tp_rank, sh.tp_size};
  // GGUF blocks stay as stored where the native method takes them and the device has a block
  // embedding kernel (a tied lm_head then runs natively too); otherwise dense rows. A vocab shard
  // (tensor parallelism) reads dense rows: the block embedding kernel has no row offset.
  LinearWeight w;
  const DType stored = reader.stored_dtype(s);
  if (sh.tp_size == 1 && gguf_native_linear_method().accepts(s, reader, opt.device) &&
      find_kernel(Op::kEmbedding, opt.device, WeightFormat::kGgufBlocks, stored) != nullptr) {
    w = reader.blocks(s, /*defer_merges=*/false);
    w.method = &gguf_native_linear_method();
  } else {
    w = reader.dense(s, opt.compute_dtype, opt.defer_merges, opt.pool);
    w.method = &dense_linear_method();
  }
  store.add_params(static_cast<uint64_t>(w.rows * w.cols));
  return store.add(std::move(w));
}

const LinearWeight* load_lm_head(WeightStore& store, const WeightReader& reader, const ModelLoadOptions& opt,
                                 const ModelSpec& spec, const LinearWeight* embedding) {
  if (!opt.shard.last_stage()) return nullptr;
  if (head_tied(spec, reader)) {
    // Tied (or a checkpoint that omits the head: the HF default is to tie).
    LinearWeight head = *embedding;
    head.name = "lm_head";
    head.alias_of = embedding;
    head.file_view = false;
    head.parts.clear();
    return store.add(std::move(head));
  }
  LinearSpec s;
  s.name = "lm_head";
  s.parts = vocab_rows("lm_head", spec, opt.shard);
  s.cols = spec.hidden_size;
  s.shard = ShardSpec{0, opt.shard.tp_rank, opt.shard.tp_size};
  LinearWeight w = load_linear(s, reader, load_context(opt));
  store.add_params(static_cast<uint64_t>(w.rows * w.cols));
  return store.add(std::move(w));
}

}  // namespace eli
