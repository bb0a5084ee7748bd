// runtime/model/decoder_model.cc: see decoder_model.h.
#include "runtime/model/decoder_model.h"

#include "eli/error.h"

namespace eli {

KvSpec DecoderModel::kv_spec() const {
  KvSpec k = Model::kv_spec();
  k.n_layers = static_cast<int64_t>(layers_.size());
  k.first_layer = shard_.layers.begin;
  k.n_kv_heads = d_.n_kv_heads;
  return k;
}

WorkspaceSizes DecoderModel::workspace(int64_t max_tokens, int64_t max_logits, DeviceKind device) const {
  std::vector<const LinearWeight*> linears;
  if (lm_head_ != nullptr) linears.push_back(lm_head_);
  for (const Layer& L : layers_) linears.insert(linears.end(), {L.attn.qkv, L.attn.o, L.mlp.gate_up, L.mlp.down});
  return transformer_workspace(d_, linears, max_tokens, max_logits, device);
}

void DecoderModel::forward(const ForwardContext& f) const {
  const bool first = shard_.first_stage(), last = shard_.last_stage();
  ELI_CHECK_KIND(kInternal, (!first || embed_ != nullptr) && final_norm_ != nullptr && (!last || lm_head_ != nullptr),
                 spec_.architecture, ": model weights are incomplete");
  ELI_CHECK_KIND(kInternal, f.comm != nullptr || !shard_.sharded(), spec_.architecture,
                 ": a sharded model runs with its rank's collectives");
  const int64_t n = f.in.n_tokens * d_.hidden;
  if (first) {
    embed_tokens(f, *embed_, embed_scale_);
  } else {
    f.comm->recv_from_prev_stage(f.slot<float>(WsSlot::kResidual), n, f.exec);
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (f.hooks != nullptr) f.hooks->before_layer(static_cast<int64_t>(l), f.exec);
    attention_block(f, static_cast<int64_t>(l), layers_[l].attn, d_);
    mlp_block(f, layers_[l].mlp, d_);
    if (f.hooks != nullptr) f.hooks->after_layer(static_cast<int64_t>(l), f.exec);
  }
  if (last) {
    logits_block(f, *final_norm_, static_cast<float>(spec_.rms_norm_eps), *lm_head_, d_);
  } else {
    f.comm->send_to_next_stage(f.slot<float>(WsSlot::kResidual), n, f.exec);
  }
}

}  // namespace eli
