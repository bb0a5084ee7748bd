// tests/cpp/test_hf_config.cc: config.json -> ModelSpec for the four supported HF classes (classic
// rope_scaling and transformers v5 rope_parameters), and every "config" case of the malformed
// corpus failing with kModelLoad and its expected message (RELIABILITY items 6, 7, 11).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "runtime/core/json.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/model_spec_check.h"

namespace eli {
namespace {

const std::string kCorpus = std::string(ELI_TEST_DATA_DIR) + "/malformed/hf";

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

// Llama 3.1 8B, as published (transformers 4.x form).
const char* kLlama31 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096,
  "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "vocab_size": 128256})";

TEST(HfConfigParse, Llama31) {
  ModelSpec s = spec_of(kLlama31);
  EXPECT_EQ(s.architecture, "llama");
  EXPECT_EQ(s.vocab_size, 128256);
  EXPECT_EQ(s.hidden_size, 4096);
  EXPECT_EQ(s.intermediate_size, 14336);
  EXPECT_EQ(s.n_layers, 32);
  EXPECT_EQ(s.n_heads, 32);
  EXPECT_EQ(s.n_kv_heads, 8);
  EXPECT_EQ(s.head_dim, 128);
  EXPECT_EQ(s.max_position, 131072);
  EXPECT_DOUBLE_EQ(s.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(s.rope.theta, 500000.0);
  EXPECT_EQ(s.rope.scaling, RopeScaling::kLlama3);
  EXPECT_DOUBLE_EQ(s.rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(s.rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(s.rope.high_freq_factor, 4.0);
  EXPECT_EQ(s.rope.original_max_position, 8192);
  EXPECT_FALSE(s.tie_word_embeddings);
  EXPECT_FALSE(s.attention_bias);
  EXPECT_FALSE(s.qk_norm);
  EXPECT_EQ(s.sliding_window, 0);
  EXPECT_EQ(s.bos_token_id, 128000);
  EXPECT_EQ(s.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
}

TEST(HfConfigParse, LlamaV5RopeParametersAndBias) {
  // transformers 5 writes rope_theta and the scaling inside rope_parameters.
  ModelSpec s = spec_of(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 2048,
    "intermediate_size": 8192, "num_attention_heads": 32, "num_hidden_layers": 16,
    "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "max_position_embeddings": 131072,
    "attention_bias": true, "mlp_bias": true, "tie_word_embeddings": true, "eos_token_id": 128001,
    "bos_token_id": null, "rope_parameters": {"factor": 32.0, "high_freq_factor": 4.0,
    "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_theta": 500000.0,
    "rope_type": "llama3"}})");
  EXPECT_EQ(s.rope.scaling, RopeScaling::kLlama3);
  EXPECT_DOUBLE_EQ(s.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(s.rope.factor, 32.0);
  EXPECT_TRUE(s.tie_word_embeddings);
  EXPECT_TRUE(s.attention_bias);
  EXPECT_TRUE(s.attention_out_bias);  // Llama's attention_bias covers o_proj too
  EXPECT_TRUE(s.mlp_bias);
  EXPECT_EQ(s.bos_token_id, -1);
  EXPECT_EQ(s.eos_token_ids, (std::vector<int64_t>{128001}));
  EXPECT_EQ(s.head_dim, 64);
}

TEST(HfConfigParse, ClassicScalingTypes) {
  auto with = [](const std::string& scaling) {
    return spec_of(std::string(R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,
      "intermediate_size":128,"num_attention_heads":4,"num_hidden_layers":2,"vocab_size":100,
      "max_position_embeddings":4096,"rope_scaling":)") + scaling + "}");
  };
  ModelSpec lin = with(R"({"type":"linear","factor":2.0})");  // Llama 2 era "type"
  EXPECT_EQ(lin.rope.scaling, RopeScaling::kLinear);
  EXPECT_DOUBLE_EQ(lin.rope.factor, 2.0);
  EXPECT_EQ(lin.n_kv_heads, 4);   // default = heads
  EXPECT_EQ(lin.head_dim, 16);    // hidden / heads
  EXPECT_EQ(with(R"({"rope_type":"dynamic","factor":4})").rope.scaling, RopeScaling::kDynamic);
  EXPECT_EQ(with("null").rope.scaling, RopeScaling::kNone);
  EXPECT_EQ(with(R"({"rope_type":"default"})").rope.scaling, RopeScaling::kNone);
  ModelSpec yarn = with(R"({"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":1024,
    "beta_fast":16,"mscale":1.0,"mscale_all_dim":0.5,"truncate":false})");
  EXPECT_EQ(yarn.rope.scaling, RopeScaling::kYarn);
  EXPECT_DOUBLE_EQ(yarn.rope.beta_fast, 16.0);
  EXPECT_DOUBLE_EQ(yarn.rope.beta_slow, 1.0);
  EXPECT_FALSE(yarn.rope.truncate);
  EXPECT_NEAR(yarn.rope.attention_factor, (0.1 * std::log(4.0) + 1) / (0.05 * std::log(4.0) + 1), 1e-12);
  ModelSpec implied = with(R"({"rope_type":"yarn","original_max_position_embeddings":1024})");
  EXPECT_DOUBLE_EQ(implied.rope.factor, 4.0);  // max_position / original
  std::string no_low = kLlama31;
  no_low.replace(no_low.find("\"low_freq_factor\": 1.0, "), 24, "");
  EXPECT_NE(error_of(no_low).find("missing required field rope_scaling.low_freq_factor"), std::string::npos)
      << error_of(no_low);
}

TEST(HfConfigParse, Qwen2) {
  // Qwen2.5-0.5B-Instruct.
  ModelSpec s = spec_of(R"({"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896,
    "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 21,
    "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 32768, "tie_word_embeddings": true, "use_sliding_window": false,
    "vocab_size": 151936})");
  EXPECT_EQ(s.architecture, "qwen2");
  EXPECT_EQ(s.head_dim, 64);
  EXPECT_TRUE(s.attention_bias);
  EXPECT_FALSE(s.attention_out_bias);
  EXPECT_TRUE(s.tie_word_embeddings);
  EXPECT_EQ(s.sliding_window, 0);  // use_sliding_window is false
  EXPECT_DOUBLE_EQ(s.rope.theta, 1e6);
}

TEST(HfConfigParse, Qwen2SlidingWindowLayers) {
  auto cfg = [](const std::string& extra) {
    return R"({"architectures":["Qwen2ForCausalLM"],"hidden_size":64,"intermediate_size":128,
      "num_attention_heads":4,"num_hidden_layers":4,"vocab_size":100,"use_sliding_window":true,
      "sliding_window":256)" + extra + "}";
  };
  EXPECT_EQ(spec_of(cfg(R"(,"max_window_layers":0)")).sliding_window, 256);
  EXPECT_EQ(spec_of(cfg(R"(,"max_window_layers":4)")).sliding_window, 0);
  EXPECT_NE(error_of(cfg(R"(,"max_window_layers":2)")).find("only some layers"), std::string::npos);
  EXPECT_EQ(spec_of(cfg(R"(,"layer_types":["sliding_attention","sliding_attention","sliding_attention",
    "sliding_attention"])")).sliding_window, 256);
}

TEST(HfConfigParse, Qwen3) {
  // Qwen3-0.6B with a yarn extension as its model card suggests.
  ModelSpec s = spec_of(R"({"architectures": ["Qwen3ForCausalLM"], "attention_bias": false,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_size": 1024,
    "intermediate_size": 3072, "max_position_embeddings": 40960, "max_window_layers": 28,
    "model_type": "qwen3", "num_attention_heads": 16, "num_hidden_layers": 28,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
    "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
    "rope_theta": 1000000, "sliding_window": null, "tie_word_embeddings": true,
    "use_sliding_window": false, "vocab_size": 151936})");
  EXPECT_EQ(s.architecture, "qwen3");
  EXPECT_EQ(s.head_dim, 128);  // explicit; 16 * 128 != 1024
  EXPECT_TRUE(s.qk_norm);
  EXPECT_FALSE(s.attention_bias);
  EXPECT_EQ(s.rope.scaling, RopeScaling::kYarn);
  EXPECT_EQ(s.rope.original_max_position, 32768);
  EXPECT_DOUBLE_EQ(s.rope.attention_factor, 0.0);  // derived later from factor
  EXPECT_DOUBLE_EQ(s.rope.theta, 1e6);             // integer literal accepted as a double
}

TEST(HfConfigParse, Mistral) {
  const char* v01 = R"({"architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
    "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 32768,
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "vocab_size": 32000})";
  ModelSpec s = spec_of(v01);
  EXPECT_EQ(s.architecture, "mistral");
  EXPECT_EQ(s.sliding_window, 4096);
  EXPECT_FALSE(s.attention_bias);
  std::string v03 = v01;
  v03.replace(v03.find("4096, \"vocab"), 4, "null");
  EXPECT_EQ(spec_of(v03).sliding_window, 0);
}

TEST(HfConfigParse, ArchitectureSelection) {
  const std::string body = R"("hidden_size":64,"intermediate_size":128,"num_attention_heads":4,
    "num_hidden_layers":2,"vocab_size":100)";
  EXPECT_EQ(spec_of(R"({"model_type":"qwen3",)" + body + "}").architecture, "qwen3");
  // auto_map next to a supported class is ignored: eli runs its own implementation.
  EXPECT_EQ(spec_of(R"({"architectures":["LlamaForCausalLM"],"auto_map":{"AutoModel":"x.Y"},)" + body + "}")
                .architecture, "llama");
  EXPECT_NE(error_of(R"({"architectures":["Foo"],"auto_map":{"AutoModel":"x.Y"},)" + body + "}")
                .find("eli never executes model code"), std::string::npos);
  EXPECT_NE(error_of(R"({"model_type":"gpt2",)" + body + "}").find("unsupported architecture model_type gpt2"),
            std::string::npos);
  EXPECT_NE(error_of("[]").find("must be a JSON object"), std::string::npos);
  // Integral floats are accepted for integer fields; fractional ones are not.
  EXPECT_EQ(spec_of(R"({"model_type":"llama","hidden_size":64.0,"intermediate_size":128,
    "num_attention_heads":4,"num_hidden_layers":2,"vocab_size":100})").hidden_size, 64);
  EXPECT_NE(error_of(R"({"model_type":"llama","hidden_size":64.5,"intermediate_size":128,
    "num_attention_heads":4,"num_hidden_layers":2,"vocab_size":100})").find("hidden_size must be an integer"),
            std::string::npos);
}

TEST(HfConfigValidate, CapsOnSpec) {
  ModelSpec s = spec_of(kLlama31);
  EXPECT_NO_THROW(validate_model_spec(s, "x"));
  auto bad = [&](auto mutate, const char* expect) {
    ModelSpec t = s;
    mutate(t);
    try {
      validate_model_spec(t, "src.json");
      ADD_FAILURE() << "no error for " << expect;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kModelLoad);
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("src.json: ", 0), 0u) << e.what();
    }
  };
  bad([](ModelSpec& t) { t.n_layers = 1025; }, "num_hidden_layers = 1025");
  bad([](ModelSpec& t) { t.rope.factor = std::nan(""); }, "rope scaling factor");
  bad([](ModelSpec& t) { t.rope.theta = -1; }, "rope_theta");
  bad([](ModelSpec& t) { t.rms_norm_eps = 0; }, "rms_norm_eps");
  bad([](ModelSpec& t) { t.n_kv_heads = 64; }, "num_key_value_heads = 64 does not divide");
  bad([](ModelSpec& t) { t.architecture.clear(); }, "no architecture");
  bad([](ModelSpec& t) { t.rope.partial_rotary_factor = 0; }, "partial_rotary_factor");
  bad([](ModelSpec& t) { t.bos_token_id = 128256; }, "bos_token_id");
  bad([](ModelSpec& t) { t.sliding_window = -1; }, "sliding_window");
  bad([](ModelSpec& t) { t.intermediate_size = 0; }, "intermediate_size");
}

TEST(HfConfigCorpus, ValidConfigParses) {
  ModelSpec s = parse_hf_config(kCorpus + "/valid_tiny/config.json");
  EXPECT_EQ(s.head_dim, 4);
  EXPECT_EQ(s.n_kv_heads, 1);
  EXPECT_TRUE(s.tie_word_embeddings);
}

TEST(HfConfigCorpus, EveryConfigCaseFails) {
  JsonValue manifest = read_json_file(kCorpus + "/manifest.json");
  int n = 0;
  for (const JsonValue& c : manifest.find("cases")->array()) {
    if (c.find("stage")->as_string() != "config") continue;
    const std::string path = kCorpus + "/" + c.find("path")->as_string() + "/config.json";
    const std::string expect = c.find("expect")->as_string();
    try {
      parse_hf_config(path);
      ADD_FAILURE() << path << ": no error (expected '" << expect << "')";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kModelLoad) << path << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << path << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    ++n;
  }
  EXPECT_GE(n, 20);
}

}  // namespace
}  // namespace eli
