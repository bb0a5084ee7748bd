// runtime/model/decoder_model.h: DecoderModel, the Model every pre-norm decoder-only family is:
// an embedding (times a scale), layers of one attention block and one gated-MLP block, a final
// norm and a logits head. Its forward and workspace are written here once; an architecture file
// derives from it and only loads its weights into embed_, layers_, final_norm_ and lm_head_ (and
// sets embed_scale_ or rope sets where the family differs), e.g. runtime/model/models/llama.cc.
//
// Sharded (runtime/parallel): a rank holds its tensor-parallel slices of its pipeline stage's
// layers; the forward receives the residual stream from the previous stage instead of embedding
// and sends it to the next one instead of computing logits; the KV cache holds the stage's layers.
//
// Invariants: after the derived constructor, final_norm_ is set, embed_ on the first stage and
// lm_head_ on the last, and every layer's weights are complete (the load helpers checked them).
#pragma once

#include <vector>

#include "runtime/model/blocks.h"
#include "runtime/model/model.h"

namespace eli {

class DecoderModel : public Model {
 public:
  KvSpec kv_spec() const override;
  WorkspaceSizes workspace(int64_t max_tokens, int64_t max_logits, DeviceKind device) const override;
  void forward(const ForwardContext& f) const override;

 protected:
  struct Layer {
    AttentionLayer attn;
    MlpLayer mlp;
  };
  // `shard`: the part this rank holds (ModelLoadOptions::shard): d_ are its dims, layers_ its
  // stage's layers (layer l of the model is layers_[l - shard.layers.begin]).
  DecoderModel(const ModelSpec& spec, std::shared_ptr<WeightSource> source, const RankShard& shard)
      : Model(spec, std::move(source)), shard_(shard), d_(dims_of(spec_, shard)) {}

  RankShard shard_;
  TransformerDims d_;
  float embed_scale_ = 1.0f;
  const LinearWeight* embed_ = nullptr;
  const LinearWeight* lm_head_ = nullptr;
  const VectorWeight* final_norm_ = nullptr;
  std::vector<Layer> layers_;
};

}  // namespace eli
