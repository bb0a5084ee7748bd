// tests/cpp/test_quant_config.cc: config.json quantization_config -> QuantConfig (quant_config.h):
// each accepted AWQ / GPTQ / compressed-tensors variant, the refusals by name (kUnsupported) and
// malformed fields (kModelLoad), the ignore list, and the engine's `quantization` option against
// the checkpoint.
#include <gtest/gtest.h>

#include <string>

#include "eli/error.h"
#include "runtime/core/json.h"
#include "runtime/model/quant_config.h"

namespace eli {
namespace {

QuantConfig parse(const std::string& q) {
  return parse_quant_config(parse_json("{\"quantization_config\": " + q + "}"), "config.json");
}

void expect_error(const std::string& q, ErrorKind kind, const std::string& needle) {
  try {
    parse(q);
    ADD_FAILURE() << "accepted: " << q;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(QuantConfig, AbsentOrNullIsNone) {
  EXPECT_FALSE(parse_quant_config(parse_json("{}"), "c").quantized());
  EXPECT_FALSE(parse("null").quantized());
  EXPECT_EQ(parse("null").describe(), "none");
}

TEST(QuantConfig, Awq) {
  QuantConfig c = parse(R"({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true, "version": "GEMM",
                            "modules_to_not_convert": ["lm_head"]})");
  EXPECT_EQ(c.method, QuantMethod::kAwq);
  EXPECT_EQ(c.scheme, QuantScheme::kW4A16);
  EXPECT_EQ(c.group_size, 128);
  EXPECT_FALSE(c.symmetric);
  EXPECT_TRUE(c.ignored("lm_head"));
  EXPECT_EQ(c.describe(), "awq w4a16 g128");
  EXPECT_EQ(parse(R"({"quant_method": "awq", "w_bit": 4, "q_group_size": -1})").describe(), "awq w4a16 per-channel");
  expect_error(R"({"quant_method": "awq", "version": "gemv"})", ErrorKind::kUnsupported, "AWQ version 'gemv'");
  expect_error(R"({"quant_method": "awq", "version": "marlin"})", ErrorKind::kUnsupported, "'marlin'");
  expect_error(R"({"quant_method": "awq", "bits": 8})", ErrorKind::kUnsupported, "AWQ with 8 bits");
  expect_error(R"({"quant_method": "awq", "zero_point": false})", ErrorKind::kUnsupported, "zero_point");
  expect_error(R"({"quant_method": "awq", "group_size": 100})", ErrorKind::kUnsupported, "group_size 100");
  expect_error(R"({"quant_method": "awq", "group_size": "x"})", ErrorKind::kModelLoad, "group_size must be an integer");
}

TEST(QuantConfig, Gptq) {
  QuantConfig c = parse(R"({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": true, "sym": true})");
  EXPECT_EQ(c.method, QuantMethod::kGptq);
  EXPECT_TRUE(c.act_order);
  EXPECT_TRUE(c.gptq_v1_zeros);
  EXPECT_EQ(c.describe(), "gptq w4a16 g128 act-order");
  c = parse(R"({"quant_method": "gptq", "bits": 8, "group_size": -1, "checkpoint_format": "gptq_v2"})");
  EXPECT_EQ(c.scheme, QuantScheme::kW8A16);
  EXPECT_EQ(c.group_size, 0);
  EXPECT_FALSE(c.gptq_v1_zeros);
  expect_error(R"({"quant_method": "gptq", "bits": 3})", ErrorKind::kUnsupported, "GPTQ with 3 bits");
  expect_error(R"({"quant_method": "gptq", "bits": 2})", ErrorKind::kUnsupported, "GPTQ with 2 bits");
  expect_error(R"({"quant_method": "gptq", "checkpoint_format": "marlin"})", ErrorKind::kUnsupported, "'marlin'");
  expect_error(R"({"quant_method": "gptq", "is_marlin_format": true})", ErrorKind::kUnsupported, "Marlin");
  expect_error(R"({"quant_method": "gptq", "desc_act": 1})", ErrorKind::kModelLoad, "desc_act must be true or false");
}

std::string ct(const std::string& weights, const std::string& acts, const std::string& format,
               const std::string& extra = "") {
  return R"({"quant_method": "compressed-tensors", "quantization_status": "compressed", "format": ")" + format +
         R"(", "ignore": ["lm_head", "re:.*mlp\\.down_proj$"], "config_groups": {"group_0": {"targets": ["Linear"],
         "weights": )" + weights + R"(, "input_activations": )" + acts + R"(, "format": ")" + format + "\"}" + extra +
         "}}";
}

TEST(QuantConfig, CompressedTensorsSchemes) {
  const std::string w4 = R"({"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group", "group_size": 128})";
  QuantConfig c = parse(ct(w4, "null", "pack-quantized"));
  EXPECT_EQ(c.method, QuantMethod::kCompressedTensors);
  EXPECT_EQ(c.describe(), "compressed-tensors w4a16 g128");
  EXPECT_TRUE(c.ignored("lm_head"));
  EXPECT_TRUE(c.ignored("model.layers.3.mlp.down_proj"));  // "re:" pattern
  EXPECT_FALSE(c.ignored("model.layers.3.mlp.up_proj"));
  EXPECT_FALSE(c.ignored("model.layers.3.mlp.not_lm_head"));
  const std::string w8c = R"({"num_bits": 8, "type": "int", "symmetric": true, "strategy": "channel", "actorder": "group"})";
  c = parse(ct(w8c, "null", "pack-quantized"));
  EXPECT_EQ(c.describe(), "compressed-tensors w8a16 per-channel act-order");
  const std::string f8w = R"({"num_bits": 8, "type": "float", "symmetric": true, "strategy": "channel"})";
  const std::string f8a = R"({"num_bits": 8, "type": "float", "symmetric": true, "strategy": "token", "dynamic": true})";
  EXPECT_EQ(parse(ct(f8w, f8a, "float-quantized")).scheme, QuantScheme::kW8A8Fp8);
  const std::string f8s = R"({"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": false})";
  c = parse(ct(R"({"num_bits": 8, "type": "float", "strategy": "tensor"})", f8s, "float-quantized"));
  EXPECT_TRUE(c.static_input_scale);
  const std::string i8w = R"({"num_bits": 8, "type": "int", "symmetric": true, "strategy": "channel"})";
  const std::string i8a = R"({"num_bits": 8, "type": "int", "symmetric": true, "strategy": "token", "dynamic": true})";
  EXPECT_EQ(parse(ct(i8w, i8a, "int-quantized")).describe(), "compressed-tensors w8a8-int8");
  // Refusals name the scheme.
  expect_error(ct(w4, "null", "marlin-24"), ErrorKind::kUnsupported, "format 'marlin-24'");
  expect_error(ct(R"({"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16})", f8a,
                  "nvfp4-pack-quantized"),
               ErrorKind::kUnsupported, "weights float4/tensor_group");
  expect_error(ct(i8w, R"({"num_bits": 8, "type": "int", "strategy": "tensor", "dynamic": false})", "int-quantized"),
               ErrorKind::kUnsupported, "activations int8/tensor static");
  expect_error(ct(w4, "null", "pack-quantized", R"(, "group_1": {"weights": {"num_bits": 8}})"),
               ErrorKind::kUnsupported, "2 config groups");
  expect_error(R"({"quant_method": "compressed-tensors", "quantization_status": "frozen", "config_groups": {}})",
               ErrorKind::kUnsupported, "'frozen'");
  expect_error(R"({"quant_method": "compressed-tensors", "config_groups": {}})", ErrorKind::kModelLoad,
               "no config_groups");
}

TEST(QuantConfig, OtherMethodsAreRefusedByName) {
  for (const char* m : {"bitsandbytes", "hqq", "eetq", "aqlm", "marlin", "exl2", "quanto", "fp8", "torchao"}) {
    expect_error(std::string(R"({"quant_method": ")") + m + "\"}", ErrorKind::kUnsupported,
                 std::string("quant_method '") + m + "' is not supported");
  }
  expect_error(R"({"bits": 4})", ErrorKind::kModelLoad, "quant_method is missing");
  expect_error(R"([1])", ErrorKind::kModelLoad, "must be an object");
}

TEST(QuantConfig, OptionAgainstTheCheckpoint) {
  const QuantConfig none;
  const QuantConfig awq = parse(R"({"quant_method": "awq"})");
  EXPECT_EQ(resolve_quantization("auto", awq, true, "m").method, QuantMethod::kAwq);
  EXPECT_EQ(resolve_quantization("awq", awq, true, "m").method, QuantMethod::kAwq);
  EXPECT_EQ(resolve_quantization("none", none, true, "m").method, QuantMethod::kNone);
  for (const char* bad : {"gptq", "compressed-tensors", "none", "fp8"}) {
    EXPECT_THROW(resolve_quantization(bad, awq, true, "m"), Error) << bad;
  }
  EXPECT_THROW(resolve_quantization("awq", none, true, "m"), Error);
  EXPECT_THROW(resolve_quantization("int3", none, true, "m"), Error);
  const QuantConfig fp8 = resolve_quantization("fp8", none, true, "m");
  EXPECT_EQ(fp8.method, QuantMethod::kFp8Online);
  EXPECT_TRUE(fp8.ignored("lm_head"));
  EXPECT_THROW(resolve_quantization("fp8", none, false, "m.gguf"), Error);  // GGUF blocks: not a 16-bit checkpoint
}

}  // namespace
}  // namespace eli
