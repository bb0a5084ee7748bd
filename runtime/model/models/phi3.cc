// runtime/model/models/phi3.cc: Phi-3 (Phi3ForCausalLM; llama.cpp arch "phi3"). The Llama layer
// layout with the projections fused in the checkpoint:
//   x = embed(ids)
//   x += o_proj(attention(rope(qkv_proj(rmsnorm(x)))))      qkv_proj rows: q, then k, then v
//   x += down_proj(silu(gate) * up), [gate; up] = gate_up_proj(rmsnorm(x))
//   logits = lm_head(rmsnorm(x))
// RoPE may be LongRoPE ("longrope" / "su": short factors up to original_max_position_embeddings,
// long factors beyond, chosen per sequence by the runner; see rope.h), and the model may carry a
// sliding window on every layer (Phi-3 mini's 2047). A GGUF (llama.cpp converter) stores the same
// fused tensors (attn_qkv, ffn_up holding gate and up) with no Q/K row permutation; separate
// attn_q / attn_k / attn_v (which llama.cpp also loads) are read too.
#include <memory>
#include <string>
#include <vector>

#include "runtime/model/decoder_model.h"
#include "runtime/model/models/models.h"
#include "runtime/model/weight_reader.h"

namespace eli {
namespace {

class Phi3Model final : public DecoderModel {
 public:
  Phi3Model(const ModelSpec& spec, const WeightReader& reader, const ModelLoadOptions& opt)
      : DecoderModel(spec, reader.source(), opt.shard) {
    const ModelSpec& s = spec_;
    const int64_t H = s.hidden_size, I = s.intermediate_size;
    const float eps = static_cast<float>(s.rms_norm_eps);
    embed_ = load_embedding(store_, reader, opt, s);
    final_norm_ = load_vector_into(store_, reader, "model.norm.weight", H);
    for (int64_t l = opt.shard.layers.begin; l < opt.shard.layers.end; ++l) {  // this stage's layers
      const std::string p = "model.layers." + std::to_string(l) + ".";
      Layer L;
      L.attn.norm = load_vector_into(store_, reader, p + "input_layernorm.weight", H);
      // Fused as Phi-3 checkpoints store it; llama.cpp also accepts separate attn_q / attn_k / attn_v.
      const int64_t q_rows = s.n_heads * s.head_dim, kv_rows = s.n_kv_heads * s.head_dim;
      std::vector<LinearPart> qkv_parts = {{p + "self_attn.qkv_proj", q_rows + 2 * kv_rows, 0}};
      if (reader.find(p + "self_attn.qkv_proj.weight") == nullptr) {
        qkv_parts = {{p + "self_attn.q_proj", q_rows, 0}, {p + "self_attn.k_proj", kv_rows, 0},
                     {p + "self_attn.v_proj", kv_rows, 0}};
      }
      L.attn.qkv = load_linear_into(store_, reader, opt, p + "self_attn.qkv_proj", qkv_parts, H, false,
                                    TpSplit::kQkv);
      L.attn.o = load_linear_into(store_, reader, opt, p + "self_attn.o_proj",
                                  {{p + "self_attn.o_proj", H, 0}}, s.n_heads * s.head_dim, false,
                                  TpSplit::kHeadsIn);
      L.attn.norm_eps = eps;
      L.attn.sliding_window = s.sliding_window;
      L.mlp.norm = load_vector_into(store_, reader, p + "post_attention_layernorm.weight", H);
      L.mlp.gate_up = load_linear_into(store_, reader, opt, p + "mlp.gate_up_proj",
                                       {{p + "mlp.gate_up_proj", 2 * I, 0}}, H, false,
                                       TpSplit::kGateUp);
      L.mlp.down = load_linear_into(store_, reader, opt, p + "mlp.down_proj", {{p + "mlp.down_proj", H, 0}}, I, false,
                                    TpSplit::kIntermediateIn);
      L.mlp.act = GatedAct::kSilu;
      L.mlp.norm_eps = eps;
      layers_.push_back(L);
    }
    lm_head_ = load_lm_head(store_, reader, opt, s, embed_);
  }
};

}  // namespace

std::unique_ptr<Model> create_phi3_model(const ModelSpec& spec, const WeightReader& reader,
                                         const ModelLoadOptions& options) {
  return std::make_unique<Phi3Model>(spec, reader, options);
}

}  // namespace eli
