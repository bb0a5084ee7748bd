// runtime/model/blocks.h: the building blocks decoder-only architectures are made of: token
// embedding, the attention sub-block, the gated-MLP sub-block, the logits head; their weight
// loading helpers; and the workspace they need. Architecture files (runtime/model/models/*.cc)
// compose these; what differs between families (extra norms, activations, scales, per-layer
// windows and RoPE) is a field of these structs set by the architecture file.
//
// Residual stream convention: x (WsSlot::kResidual, (T, H) f32) is updated in place:
//   attention:  x += post_norm?(o(attention(rope(qkv(norm(x))))))
//   mlp:        x += post_norm?(down(act(gate(norm(x))) * up(norm(x))))
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eli/model_spec.h"
#include "runtime/model/forward.h"
#include "runtime/model/weight_store.h"

namespace eli {

class WeightReader;
struct ModelLoadOptions;

// Sizes the blocks use (per-architecture values, computed from the spec by the model file).
struct TransformerDims {
  int64_t hidden = 0, intermediate = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, vocab = 0;
  int64_t qkv_dim() const { return (n_heads + 2 * n_kv_heads) * head_dim; }
};
TransformerDims dims_of(const ModelSpec& spec);
// The dims one tensor-parallel rank computes with: its q / kv heads, MLP width and vocab shard.
TransformerDims dims_of(const ModelSpec& spec, const RankShard& shard);

struct AttentionLayer {
  const VectorWeight* norm = nullptr;       // pre-attention RMSNorm (H)
  const LinearWeight* qkv = nullptr;        // ((nh + 2 nkv) hd, H): q rows, k rows, v rows
  const VectorWeight* q_norm = nullptr;     // (hd) per-head RMSNorm of q before RoPE, or nullptr
  const VectorWeight* k_norm = nullptr;     // (hd) of k
  const LinearWeight* o = nullptr;          // (H, nh hd)
  const VectorWeight* post_norm = nullptr;  // RMSNorm of o's output before the residual add, or nullptr
  float norm_eps = 1e-6f;
  float scale = 0.0f;                       // softmax scale (query_pre_attn_scalar^-0.5, or 1/sqrt(hd))
  int64_t sliding_window = 0;               // 0: full attention
  int rope_set = 0;                         // StepInputs::rope index
};

struct MlpLayer {
  const VectorWeight* norm = nullptr;       // pre-MLP RMSNorm (H)
  const LinearWeight* gate_up = nullptr;    // (2 I, H): gate rows, then up rows
  const LinearWeight* down = nullptr;       // (H, I)
  const VectorWeight* post_norm = nullptr;  // RMSNorm of down's output before the residual add, or nullptr
  GatedAct act = GatedAct::kSilu;
  float norm_eps = 1e-6f;
};

// x = table[ids] * scale.
void embed_tokens(const ForwardContext& f, const LinearWeight& table, float scale);
void attention_block(const ForwardContext& f, int64_t layer, const AttentionLayer& L, const TransformerDims& d);
void mlp_block(const ForwardContext& f, const MlpLayer& L, const TransformerDims& d);
// logits = head(norm(x[logits_indices])).
void logits_block(const ForwardContext& f, const VectorWeight& final_norm, float eps, const LinearWeight& head,
                  const TransformerDims& d);

// Workspace of a model built from these blocks; `linears` are every product the forward runs with
// up to max(max_tokens, max_logits) rows (for their scratch).
WorkspaceSizes transformer_workspace(const TransformerDims& d, const std::vector<const LinearWeight*>& linears,
                                     int64_t max_tokens, int64_t max_logits, DeviceKind device);

// ---- loading helpers ---------------------------------------------------------------------------
// How a product is split over tensor-parallel ranks (shard_plan.h has the rules; opt.shard the rank):
//   kQkv             rows of q, k, v by the rank's heads (parts stack q, k, v rows; fused or not)
//   kGateUp          rows of gate and of up by the rank's MLP columns (parts stack gate, up rows)
//   kHeadsIn         columns by the rank's heads (o); its bias on tp rank 0 only
//   kIntermediateIn  columns by the rank's MLP columns (down); its bias on tp rank 0 only
enum class TpSplit : uint8_t { kNone, kQkv, kGateUp, kHeadsIn, kIntermediateIn };

// A loaded LinearWeight added to the store (its method chosen from the stored tensor types); with
// tensor parallelism only the rank's slice of the checkpoint is read.
const LinearWeight* load_linear_into(WeightStore& store, const WeightReader& reader, const ModelLoadOptions& opt,
                                     std::string name, std::vector<LinearPart> parts, int64_t cols,
                                     bool bias = false, TpSplit split = TpSplit::kNone);
// An f32 vector `canonical` of n values plus `offset` (checkpoints storing weight - 1 fold the 1 in
// here); required == false: nullptr when absent.
const VectorWeight* load_vector_into(WeightStore& store, const WeightReader& reader, const std::string& canonical,
                                     int64_t n, float offset = 0.0f, bool required = true);
// The embedding table (V, H) as a dense matrix in the compute dtype (dequantized if stored as GGUF
// blocks), and the lm_head: the checkpoint's, or the embedding itself when tied / absent. With
// tensor parallelism both hold the rank's vocab rows; with pipeline parallelism the embedding is
// loaded on the first stage (and the last when tied) and the head on the last (nullptr elsewhere).
const LinearWeight* load_embedding(WeightStore& store, const WeightReader& reader, const ModelLoadOptions& opt,
                                   const ModelSpec& spec);
const LinearWeight* load_lm_head(WeightStore& store, const WeightReader& reader, const ModelLoadOptions& opt,
                                 const ModelSpec& spec, const LinearWeight* embedding);

}  // namespace eli
