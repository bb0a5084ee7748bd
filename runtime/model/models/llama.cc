// runtime/model/models/llama.cc: the Llama family: Llama 1-3.x, Mistral (sliding window), Qwen2
// (q/k/v biases), Qwen3 (q/k RMSNorm, explicit head_dim), SmolLM2. Pre-norm decoder layers:
//   x = embed(ids)
//   x += o(attention(rope(qkv(rmsnorm(x)))))          [q/k RMSNorm before RoPE: Qwen3]
//   x += down(silu(gate(rmsnorm(x))) * up(rmsnorm(x)))
//   logits = lm_head(rmsnorm(x))
// The differences inside the family are checkpoint facts the ModelSpec carries (biases, q/k norm,
// window, tied head, RoPE scaling), read once at load.
#include <memory>
#include <string>
#include <vector>

#include "runtime/model/decoder_model.h"
#include "runtime/model/models/models.h"
#include "runtime/model/weight_reader.h"

namespace eli {
namespace {

class LlamaModel final : public DecoderModel {
 public:
  LlamaModel(const ModelSpec& spec, const WeightReader& reader, const ModelLoadOptions& opt)
      : DecoderModel(spec, reader.source(), opt.shard) {
    const ModelSpec& s = spec_;
    const int64_t H = s.hidden_size, I = s.intermediate_size, hd = s.head_dim;
    const int64_t nh = s.n_heads, nkv = s.n_kv_heads;
    const float eps = static_cast<float>(s.rms_norm_eps);
    embed_ = load_embedding(store_, reader, opt, s);
    final_norm_ = load_vector_into(store_, reader, "model.norm.weight", H);
    const int64_t perm_q = opt.gguf_llama_permuted ? nh : 0, perm_k = opt.gguf_llama_permuted ? nkv : 0;
    for (int64_t l = opt.shard.layers.begin; l < opt.shard.layers.end; ++l) {  // this stage's layers
      const std::string p = "model.layers." + std::to_string(l) + ".";
      Layer L;
      L.attn.norm = load_vector_into(store_, reader, p + "input_layernorm.weight", H);
      L.attn.qkv = load_linear_into(store_, reader, opt, p + "self_attn.qkv_proj",
                                    {{p + "self_attn.q_proj", nh * hd, perm_q},
                                     {p + "self_attn.k_proj", nkv * hd, perm_k},
                                     {p + "self_attn.v_proj", nkv * hd, 0}},
                                    H, s.attention_bias, TpSplit::kQkv);
      if (s.qk_norm) {
        L.attn.q_norm = load_vector_into(store_, reader, p + "self_attn.q_norm.weight", hd);
        L.attn.k_norm = load_vector_into(store_, reader, p + "self_attn.k_norm.weight", hd);
      }
      L.attn.o = load_linear_into(store_, reader, opt, p + "self_attn.o_proj", {{p + "self_attn.o_proj", H, 0}}, nh * hd,
                                  s.attention_out_bias, TpSplit::kHeadsIn);
      L.attn.norm_eps = eps;
      L.attn.sliding_window = s.sliding_window;
      L.mlp.norm = load_vector_into(store_, reader, p + "post_attention_layernorm.weight", H);
      L.mlp.gate_up = load_linear_into(store_, reader, opt, p + "mlp.gate_up_proj",
                                       {{p + "mlp.gate_proj", I, 0}, {p + "mlp.up_proj", I, 0}}, H, s.mlp_bias,
                                       TpSplit::kGateUp);
      L.mlp.down = load_linear_into(store_, reader, opt, p + "mlp.down_proj", {{p + "mlp.down_proj", H, 0}}, I, s.mlp_bias,
                                    TpSplit::kIntermediateIn);
      L.mlp.act = GatedAct::kSilu;
      L.mlp.norm_eps = eps;
      layers_.push_back(L);
    }
    lm_head_ = load_lm_head(store_, reader, opt, s, embed_);
  }
};

}  // namespace

std::unique_ptr<Model> create_llama_model(const ModelSpec& spec, const WeightReader& reader,
                                          const ModelLoadOptions& options) {
  return std::make_unique<LlamaModel>(spec, reader, options);
}

}  // namespace eli
