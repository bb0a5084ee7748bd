// runtime/model/decoder_model.cc: see decoder_model.h.
#include "runtime/model/decoder_model.h"

#include "eli/error.h"

namespace eli {

WorkspaceSizes DecoderModel::workspace(int64_t max_tokens, int64_t max_logits, DeviceKind device) const {
  std::vector<const LinearWeight*> linears = {lm_head_};
  for (const Layer& L : layers_) linears.insert(linears.end(), {L.attn.qkv, L.attn.o, L.mlp.gate_up, L.mlp.down});
  return transformer_workspace(d_, linears, max_tokens, max_logits, device);
}

void DecoderModel::forward(const ForwardContext& f) const {
  ELI_CHECK_KIND(kInternal, embed_ != nullptr && final_norm_ != nullptr && lm_head_ != nullptr,
                 spec_.architecture, ": model weights are incomplete");
  embed_tokens(f, *embed_, embed_scale_);
  for (size_t l = 0; l < layers_.size(); ++l) {
    attention_block(f, static_cast<int64_t>(l), layers_[l].attn, d_);
    mlp_block(f, layers_[l].mlp, d_);
  }
  logits_block(f, *final_norm_, static_cast<float>(spec_.rms_norm_eps), *lm_head_, d_);
}

}  // namespace eli
