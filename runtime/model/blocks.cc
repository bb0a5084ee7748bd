// runtime/model/blocks.cc: see blocks.h.
#include "runtime/model/blocks.h"

#include <algorithm>
#include <cmath>

#include "eli/error.h"
#include "kernels/registry.h"
#include "runtime/kv/kv_cache.h"
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

void ForwardContext::linear(const LinearWeight& w, int64_t m, const LinearInput& input,
                            const LinearOutput& output) const {
  LinearScratch s;
  s.norm = slot(WsSlot::kLinearNorm);
  s.norm_bytes = slot_bytes(WsSlot::kLinearNorm);
  s.mid = slot(WsSlot::kLinearMid);
  s.mid_bytes = slot_bytes(WsSlot::kLinearMid);
  s.blas = slot(WsSlot::kBlas);
  s.blas_bytes = slot_bytes(WsSlot::kBlas);
  w.method->apply(w, m, input, output, s, exec, device);
}

void embed_tokens(const ForwardContext& f, const LinearWeight& table, float scale) {
  EmbeddingArgs a{f.slot<float>(WsSlot::kResidual), table.ptr(), f.in.token_ids, f.in.n_tokens, table.cols, table.rows,
                  scale};
  get_kernel(Op::kEmbedding, f.device, table.dtype).fn(&a, f.exec);
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
  if (post_norm == nullptr) {
    f.linear(w, T, in, LinearOutput{x, DType::kF32, H, LinearEpilogue::kAccumulate});
    return;
  }
  float* y = f.slot<float>(WsSlot::kHidden);
  f.linear(w, T, in, LinearOutput{y, DType::kF32, H, LinearEpilogue::kStore});
  add_normed(f, y, *post_norm, eps, T, H);
}

}  // namespace

void attention_block(const ForwardContext& f, int64_t layer, const AttentionLayer& L, const TransformerDims& d) {
  const StepInputs& in = f.in;
  const int64_t T = in.n_tokens, H = d.hidden, nh = d.n_heads, nkv = d.n_kv_heads, hd = d.head_dim;
  const int64_t qkv_dim = d.qkv_dim();
  const KvCacheShape& ks = f.kv.shape();
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
  rk.slot_mapping = in.slot_mapping;
  rk.inv_freq = rope.inv_freq;
  rk.table_of_token = rope.table_of_token;
  rk.n_tokens = T;
  rk.n_heads = nh;
  rk.n_kv_heads = nkv;
  rk.head_dim = hd;
  rk.rot_dim = rope.rot_dim;
  rk.qkv_stride = qkv_dim;
  rk.n_slots = ks.n_blocks * ks.block_size;
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
  aa.block_tables = in.block_tables;
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
  f.linear(head, n, LinearInput{sel, DType::kF32, H, final_norm.ptr(), eps},
           LinearOutput{f.logits, DType::kF32, head.rows, LinearEpilogue::kStore});
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

const LinearWeight* load_linear_into(WeightStore& store, const WeightReader& reader, const ModelLoadOptions& opt,
                                     std::string name, std::vector<LinearPart> parts, int64_t cols, bool bias) {
  LinearSpec spec;
  spec.name = std::move(name);
  spec.parts = std::move(parts);
  spec.cols = cols;
  spec.bias = bias;
  LinearWeight w = load_linear(spec, reader, load_context(opt));
  store.add_params(static_cast<uint64_t>(w.rows * w.cols) + (bias ? static_cast<uint64_t>(w.rows) : 0));
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

const LinearWeight* load_embedding(WeightStore& store, const WeightReader& reader, const ModelLoadOptions& opt,
                                   const ModelSpec& spec) {
  LinearSpec s;
  s.name = "model.embed_tokens";
  s.parts = {LinearPart{"model.embed_tokens", spec.vocab_size, 0}};
  s.cols = spec.hidden_size;
  // The embedding kernel reads dense rows: GGUF blocks are dequantized here, whatever the method.
  LinearWeight w = reader.dense(s, opt.compute_dtype, opt.defer_merges, opt.pool);
  w.method = &dense_linear_method();
  store.add_params(static_cast<uint64_t>(w.rows * w.cols));
  return store.add(std::move(w));
}

const LinearWeight* load_lm_head(WeightStore& store, const WeightReader& reader, const ModelLoadOptions& opt,
                                 const ModelSpec& spec, const LinearWeight* embedding) {
  if (spec.tie_word_embeddings || reader.find("lm_head.weight") == nullptr) {
    // Tied (or a checkpoint that omits the head: the HF default is to tie).
    LinearWeight head = *embedding;
    head.name = "lm_head";
    head.alias_of = embedding;
    head.file_view = false;
    head.parts.clear();
    return store.add(std::move(head));
  }
  return load_linear_into(store, reader, opt, "lm_head", {LinearPart{"lm_head", spec.vocab_size, 0}}, spec.hidden_size);
}

}  // namespace eli
