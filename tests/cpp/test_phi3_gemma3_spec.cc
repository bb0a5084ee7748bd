// tests/cpp/test_phi3_gemma3_spec.cc: the ModelSpec facts of Phi-3 and Gemma 3 text: config.json
// parsing (LongRoPE factors and their checks; Gemma's per-layer windows from layer_types or
// sliding_window_pattern, local / global RoPE, activation, norm offset, softmax scalar, the
// soft-capping refusal), the LongRoPE table (short / long by sequence length, constant attention
// scaling) and the per-architecture GGUF tensor names (llama.cpp's converter naming).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "eli/error.h"
#include "runtime/core/json.h"
#include "runtime/model/gguf_spec.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/rope.h"

namespace eli {
namespace {

ModelSpec spec_of(const std::string& json) { return hf_config_to_spec(parse_json(json), "test config.json"); }

std::string error_of(const std::string& json) {
  try {
    spec_of(json);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModelLoad) << e.what();
    return e.what();
  }
  return "(no error)";
}

// Phi-3 mini 128k, classic form (rope_scaling type "su"), factors shortened to head_dim 8.
std::string phi3(const std::string& rope) {
  return R"({"architectures": ["Phi3ForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 100,
    "max_position_embeddings": 131072, "original_max_position_embeddings": 4096, "rope_theta": 10000.0,
    "sliding_window": 262144, "rope_scaling": )" + rope + "}";
}
const char* kSu = R"({"type": "su", "short_factor": [1.0, 1.5, 2.0, 3.0], "long_factor": [1.0, 4.0, 8.0, 16.0]})";

TEST(Phi3Spec, LongRopeFromConfig) {
  const ModelSpec s = spec_of(phi3(kSu));
  EXPECT_EQ(s.architecture, "phi3");
  EXPECT_EQ(s.rope.scaling, RopeScaling::kLongRope);
  EXPECT_EQ(s.rope.original_max_position, 4096);
  EXPECT_DOUBLE_EQ(s.rope.factor, 32.0);  // max_position / original_max_position
  EXPECT_EQ(s.rope.short_factors, (std::vector<float>{1.0f, 1.5f, 2.0f, 3.0f}));
  EXPECT_EQ(s.rope.long_factors, (std::vector<float>{1.0f, 4.0f, 8.0f, 16.0f}));
  EXPECT_EQ(s.sliding_window, 262144);
  EXPECT_TRUE(s.layer_sliding_windows.empty());
  EXPECT_TRUE(rope_is_dynamic(s));
}

TEST(Phi3Spec, LongRopeTablePicksFactorsBySequenceLength) {
  const ModelSpec s = spec_of(phi3(kSu));
  const RopeTable short_t = compute_rope_table(s, 4096), long_t = compute_rope_table(s, 4097);
  ASSERT_EQ(short_t.inv_freq.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    const double base = 1.0 / std::pow(10000.0, 2.0 * i / 8.0);
    EXPECT_NEAR(short_t.inv_freq[i], base / s.rope.short_factors[i], 1e-6 * base);
    EXPECT_NEAR(long_t.inv_freq[i], base / s.rope.long_factors[i], 1e-6 * base);
  }
  // sqrt(1 + ln(32) / ln(4096)), whatever the length.
  const float want = static_cast<float>(std::sqrt(1.0 + std::log(32.0) / std::log(4096.0)));
  EXPECT_FLOAT_EQ(short_t.attention_scaling, want);
  EXPECT_FLOAT_EQ(long_t.attention_scaling, want);
}

TEST(Phi3Spec, BadLongRopeRefused) {
  // LongRoPE is read for phi3 only (the architecture whose checkpoints carry it).
  const std::string llama = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
    "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 64,
    "rope_scaling": {"rope_type": "longrope", "short_factor": [1, 1, 1, 1], "long_factor": [1, 1, 1, 1],
    "original_max_position_embeddings": 32}})";
  EXPECT_NE(error_of(llama).find("unsupported rope type 'longrope'"), std::string::npos);
  EXPECT_NE(error_of(phi3(R"({"type": "longrope", "short_factor": [1, 1, 1], "long_factor": [1, 1, 1, 1]})"))
                .find("short_factor / long_factor has 3 values"),
            std::string::npos);
  EXPECT_NE(error_of(phi3(R"({"type": "longrope", "short_factor": [1, 1, 1, 0], "long_factor": [1, 1, 1, 1]})"))
                .find("longrope factor"),
            std::string::npos);
  EXPECT_NE(error_of(phi3(R"({"type": "longrope", "short_factor": [1, 1, 1, 1]})")).find("long_factor"),
            std::string::npos);
  EXPECT_NE(error_of(phi3(R"({"type": "longrope", "short_factor": "x", "long_factor": [1, 1, 1, 1]})"))
                .find("must be a list of numbers"),
            std::string::npos);
}

std::string gemma3(const std::string& extra, const std::string& query_pre_attn_scalar = "24") {
  return R"({"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2,
    "head_dim": 16, "vocab_size": 100, "sliding_window": 512, "query_pre_attn_scalar": )" +
         query_pre_attn_scalar + extra + "}";
}

TEST(Gemma3Spec, DefaultsAndPattern) {
  const ModelSpec s = spec_of(gemma3(""));
  EXPECT_EQ(s.architecture, "gemma3");
  EXPECT_TRUE(s.qk_norm);
  EXPECT_TRUE(s.tie_word_embeddings);  // Gemma3TextConfig's default
  EXPECT_EQ(s.hidden_act, "gelu_pytorch_tanh");
  EXPECT_DOUBLE_EQ(s.norm_weight_offset, 1.0);
  EXPECT_DOUBLE_EQ(s.query_pre_attn_scalar, 24.0);
  EXPECT_EQ(s.max_position, 131072);
  EXPECT_EQ(s.sliding_window, 0);
  // sliding_window_pattern 6 (the default): layer 5 global.
  EXPECT_EQ(s.layer_sliding_windows, (std::vector<int64_t>{512, 512, 512, 512, 512, 0}));
  EXPECT_DOUBLE_EQ(s.rope.theta, 1e6);
  ASSERT_TRUE(s.has_local_rope);
  EXPECT_DOUBLE_EQ(s.local_rope.theta, 1e4);
  const ModelSpec p2 = spec_of(gemma3(R"(, "sliding_window_pattern": 2, "rope_local_base_freq": 500.0,
      "rope_theta": 2e5, "rope_scaling": {"rope_type": "linear", "factor": 8.0})"));
  EXPECT_EQ(p2.layer_sliding_windows, (std::vector<int64_t>{512, 0, 512, 0, 512, 0}));
  EXPECT_DOUBLE_EQ(p2.local_rope.theta, 500.0);
  EXPECT_EQ(p2.local_rope.scaling, RopeScaling::kNone);  // the scaling is the global layers'
  EXPECT_DOUBLE_EQ(p2.rope.theta, 2e5);
  EXPECT_EQ(p2.rope.scaling, RopeScaling::kLinear);
}

TEST(Gemma3Spec, LayerTypesAndPerTypeRope) {
  const ModelSpec s = spec_of(gemma3(R"(, "layer_types": ["full_attention", "sliding_attention",
      "sliding_attention", "full_attention", "sliding_attention", "sliding_attention"],
      "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6},
                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})"));
  EXPECT_EQ(s.layer_sliding_windows, (std::vector<int64_t>{0, 512, 512, 0, 512, 512}));
  EXPECT_EQ(s.rope.scaling, RopeScaling::kLinear);
  EXPECT_DOUBLE_EQ(s.rope.factor, 4.0);
  EXPECT_DOUBLE_EQ(s.local_rope.theta, 1e4);
  EXPECT_EQ(s.local_rope.scaling, RopeScaling::kNone);
}

TEST(Gemma3Spec, RefusedConfigs) {
  EXPECT_NE(error_of(gemma3(R"(, "final_logit_softcapping": 30.0)")).find("final_logit_softcapping"),
            std::string::npos);
  EXPECT_NE(error_of(gemma3(R"(, "attn_logit_softcapping": 50.0)")).find("attn_logit_softcapping"),
            std::string::npos);
  EXPECT_NE(error_of(gemma3(R"(, "layer_types": ["full_attention"])")).find("layer_types has 1 entries"),
            std::string::npos);
  EXPECT_NE(error_of(gemma3(R"(, "hidden_activation": "relu")")).find("hidden activation 'relu'"),
            std::string::npos);
  EXPECT_NE(error_of(gemma3("", "-1")).find("query_pre_attn_scalar"), std::string::npos);
  EXPECT_NE(error_of(gemma3(R"(, "sliding_window_pattern": 0)")).find("sliding_window_pattern"), std::string::npos);
  EXPECT_NE(error_of(gemma3(R"(, "rope_local_base_freq": 0)")).find("local rope_theta"), std::string::npos);
  // null soft-capping (what transformers writes) is absent, not refused.
  EXPECT_EQ(error_of(gemma3(R"(, "final_logit_softcapping": null, "attn_logit_softcapping": null)")), "(no error)");
}

TEST(GgufArchNames, Phi3AndGemma3) {
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.1.attn_qkv.weight", "phi3"), "model.layers.1.self_attn.qkv_proj.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.1.ffn_up.weight", "phi3"), "model.layers.1.mlp.gate_up_proj.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.1.ffn_norm.weight", "phi3"),
            "model.layers.1.post_attention_layernorm.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.2.ffn_norm.weight", "gemma3"),
            "model.layers.2.pre_feedforward_layernorm.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.2.post_attention_norm.weight", "gemma3"),
            "model.layers.2.post_attention_layernorm.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.2.post_ffw_norm.weight", "gemma3"),
            "model.layers.2.post_feedforward_layernorm.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.2.ffn_up.weight", "gemma3"), "model.layers.2.mlp.up_proj.weight");
  // Other architectures keep the llama names; the fused / Gemma-only names are unknown there.
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.0.ffn_up.weight", "llama"), "model.layers.0.mlp.up_proj.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.0.attn_qkv.weight", "llama"), "");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.0.post_ffw_norm.weight", "qwen3"), "");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.0.attn_qkv.weight"), "");
}

}  // namespace
}  // namespace eli
