// runtime/model/models/gemma3.cc: Gemma 3 text (Gemma3ForCausalLM, model_type gemma3_text;
// llama.cpp arch "gemma3"). Sandwich-normed decoder layers:
//   x = embed(ids) * sqrt(hidden)                 (the scale rounded to the weights' dtype, as HF)
//   x += post_attention_norm(o(attention(rope(qk_norm(qkv(input_norm(x)))))))
//   x += post_feedforward_norm(down(gelu_tanh(gate(h)) * up(h))),  h = pre_feedforward_norm(x)
//   logits = lm_head(norm(x))
// Every RMSNorm computes x * (1 + w): HF checkpoints store w, so ModelSpec::norm_weight_offset (1)
// is folded into the loaded f32 vectors; llama.cpp's GGUF stores 1 + w already (offset 0).
// Layers alternate sliding-window (local RoPE base, rope set 1) and global (full attention, rope
// set 0) as ModelSpec::layer_sliding_windows says. Softmax scale query_pre_attn_scalar^-0.5.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "eli/error.h"
#include "runtime/core/float_convert.h"
#include "runtime/model/decoder_model.h"
#include "runtime/model/models/models.h"
#include "runtime/model/weight_reader.h"

namespace eli {
namespace {

// HF multiplies by the scale cast to the embedding's dtype.
float round_to(float v, DType dtype) {
  if (dtype == DType::kBF16) return bf16_to_f32(f32_to_bf16(v));
  if (dtype == DType::kF16) return f16_to_f32(f32_to_f16(v));
  return v;
}

class Gemma3Model final : public DecoderModel {
 public:
  Gemma3Model(const ModelSpec& spec, const WeightReader& reader, const ModelLoadOptions& opt)
      : DecoderModel(spec, reader.source(), opt.shard) {
    const ModelSpec& s = spec_;
    const int64_t H = s.hidden_size, I = s.intermediate_size, hd = s.head_dim;
    const int64_t nh = s.n_heads, nkv = s.n_kv_heads;
    const float eps = static_cast<float>(s.rms_norm_eps);
    const auto off = static_cast<float>(s.norm_weight_offset);
    ELI_CHECK_KIND(kModelLoad, s.qk_norm && s.has_local_rope &&
                                   static_cast<int64_t>(s.layer_sliding_windows.size()) == s.n_layers,
                   "gemma3: the spec lacks q/k norms, the local RoPE or the per-layer windows");
    const GatedAct act = s.hidden_act == "silu" ? GatedAct::kSilu : GatedAct::kGeluTanh;
    const float scale = static_cast<float>(
        1.0 / std::sqrt(s.query_pre_attn_scalar > 0 ? s.query_pre_attn_scalar : static_cast<double>(hd)));
    embed_ = load_embedding(store_, reader, opt, s);
    // The embedding is held in the compute dtype (and absent on later pipeline stages).
    embed_scale_ = round_to(static_cast<float>(std::sqrt(static_cast<double>(H))), opt.compute_dtype);
    final_norm_ = load_vector_into(store_, reader, "model.norm.weight", H, off);
    for (int64_t l = opt.shard.layers.begin; l < opt.shard.layers.end; ++l) {  // this stage's layers
      const std::string p = "model.layers." + std::to_string(l) + ".";
      Layer L;
      L.attn.norm = load_vector_into(store_, reader, p + "input_layernorm.weight", H, off);
      L.attn.qkv = load_linear_into(store_, reader, opt, p + "self_attn.qkv_proj",
                                    {{p + "self_attn.q_proj", nh * hd, 0},
                                     {p + "self_attn.k_proj", nkv * hd, 0},
                                     {p + "self_attn.v_proj", nkv * hd, 0}},
                                    H, s.attention_bias, TpSplit::kQkv);
      L.attn.q_norm = load_vector_into(store_, reader, p + "self_attn.q_norm.weight", hd, off);
      L.attn.k_norm = load_vector_into(store_, reader, p + "self_attn.k_norm.weight", hd, off);
      L.attn.o = load_linear_into(store_, reader, opt, p + "self_attn.o_proj", {{p + "self_attn.o_proj", H, 0}},
                                  nh * hd, s.attention_out_bias, TpSplit::kHeadsIn);
      L.attn.post_norm = load_vector_into(store_, reader, p + "post_attention_layernorm.weight", H, off);
      L.attn.norm_eps = eps;
      L.attn.scale = scale;
      L.attn.sliding_window = s.layer_sliding_windows[static_cast<size_t>(l)];
      L.attn.rope_set = L.attn.sliding_window > 0 ? 1 : 0;
      L.mlp.norm = load_vector_into(store_, reader, p + "pre_feedforward_layernorm.weight", H, off);
      L.mlp.gate_up = load_linear_into(store_, reader, opt, p + "mlp.gate_up_proj",
                                       {{p + "mlp.gate_proj", I, 0}, {p + "mlp.up_proj", I, 0}}, H, false,
                                       TpSplit::kGateUp);
      L.mlp.down = load_linear_into(store_, reader, opt, p + "mlp.down_proj", {{p + "mlp.down_proj", H, 0}}, I, false,
                                    TpSplit::kIntermediateIn);
      L.mlp.post_norm = load_vector_into(store_, reader, p + "post_feedforward_layernorm.weight", H, off);
      L.mlp.act = act;
      L.mlp.norm_eps = eps;
      layers_.push_back(L);
    }
    lm_head_ = load_lm_head(store_, reader, opt, s, embed_);
  }

  // Set 0: the global layers' RoPE (ModelSpec::rope); set 1: the sliding layers' (local_rope).
  std::vector<ModelSpec> rope_sets() const override {
    ModelSpec local = spec_;
    local.rope = spec_.local_rope;
    return {spec_, local};
  }
};

}  // namespace

std::unique_ptr<Model> create_gemma3_model(const ModelSpec& spec, const WeightReader& reader,
                                           const ModelLoadOptions& options) {
  return std::make_unique<Gemma3Model>(spec, reader, options);
}

}  // namespace eli
