// runtime/model/decoder_model.h: DecoderModel, the Model every pre-norm decoder-only family is:
// an embedding (times a scale), layers of one attention block and one gated-MLP block, a final
// norm and a logits head. Its forward and workspace are written here once; an architecture file
// derives from it and only loads its weights into embed_, layers_, final_norm_ and lm_head_ (and
// sets embed_scale_ or rope sets where the family differs), e.g. runtime/model/models/llama.cc.
//
// Invariants: after the derived constructor, embed_, final_norm_ and lm_head_ are set and every
// layer's weights are complete (the load helpers checked them against the spec).
#pragma once

#include <vector>

#include "runtime/model/blocks.h"
#include "runtime/model/model.h"

namespace eli {

class DecoderModel : public Model {
 public:
  WorkspaceSizes workspace(int64_t max_tokens, int64_t max_logits, DeviceKind device) const override;
  void forward(const ForwardContext& f) const override;

 protected:
  struct Layer {
    AttentionLayer attn;
    MlpLayer mlp;
  };
  DecoderModel(const ModelSpec& spec, std::shared_ptr<WeightSource> source)
      : Model(spec, std::move(source)), d_(dims_of(spec_)) {}

  TransformerDims d_;
  float embed_scale_ = 1.0f;
  const LinearWeight* embed_ = nullptr;
  const LinearWeight* lm_head_ = nullptr;
  const VectorWeight* final_norm_ = nullptr;
  std::vector<Layer> layers_;
};

}  // namespace eli
