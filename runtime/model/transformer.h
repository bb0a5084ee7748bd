// runtime/model/transformer.h: the decoder-only transformer family (Llama, Mistral, Qwen2,
// Qwen3, SmolLM2) as one forward pass over a ragged Batch. Architecture differences are the
// ModelSpec flags (biases, q/k norm, rope scaling, sliding window, tied head), never copies.
//
// Invariants: forward() reads the weights, writes only its workspace, the KV slots named by the
// batch and the logits; workspace buffers grow to the largest step seen and are then reused, so
// steady-state decoding allocates nothing. One forward at a time per Transformer.
#pragma once

#include <memory>
#include <vector>

#include "eli/batch.h"
#include "eli/model_spec.h"
#include "runtime/model/rope.h"
#include "runtime/model/transformer_weights.h"

namespace eli {

class KvCache;
class ThreadPool;

class Transformer {
 public:
  Transformer(ModelSpec spec, TransformerWeights weights, ThreadPool* pool);

  const ModelSpec& spec() const { return spec_; }
  const TransformerWeights& weights() const { return weights_; }
  // Runs one step. logits: (batch.n_logits(), vocab), row r for flat token batch.logits_indices[r].
  void forward(const Batch& batch, KvCache& kv, float* logits);

 private:
  void ensure_workspace(int64_t n_tokens, int64_t n_logits);
  void build_rope_tables(const Batch& batch);

  ModelSpec spec_;
  TransformerWeights weights_;
  ThreadPool* pool_;
  RopeTable static_rope_;
  int64_t qkv_dim_ = 0;  // (nh + 2 nkv) * hd

  // Workspace (grows, never shrinks).
  std::vector<float> x_;        // (T, H) residual stream
  std::vector<float> h_;        // (T, H) normed input of a sub-block
  std::vector<float> qkv_;      // (T, qkv_dim)
  std::vector<float> attn_;     // (T, nh * hd)
  std::vector<float> gate_up_;  // (T, 2 I)
  std::vector<float> act_;      // (T, I)
  std::vector<float> sel_;      // (n_logits, H) rows that produce logits
  std::vector<float> rope_inv_freq_;      // (n_tables, rot_dim / 2)
  std::vector<int32_t> rope_table_of_token_;  // (T)
};

}  // namespace eli
