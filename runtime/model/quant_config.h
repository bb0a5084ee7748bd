// runtime/model/quant_config.h: a Hugging Face checkpoint's `quantization_config` (config.json),
// normalised to what eli's quantized LinearMethods need (linear_awq.cc, linear_gptq.cc,
// linear_compressed.cc), and the engine's `quantization` option checked against it.
//
// Accepted (everything else is refused by name, kUnsupported, listing these):
//   awq                 version "gemm", bits 4, group_size 128 / 64 / 32 or -1 (per channel), zero_point
//   gptq                bits 4 or 8, group_size (or -1), desc_act (act-order: g_idx), sym or not,
//                       checkpoint_format "gptq" (stored zeros are z - 1) or "gptq_v2" (z)
//   compressed-tensors  one config group (status "compressed") of: pack-quantized int 4 / 8 weights
//                       (group or channel strategy) without activation quantization (W4A16 / W8A16);
//                       float-quantized FP8 weights (tensor or channel) with FP8 activations
//                       (dynamic per token, or static per tensor: input_scale); int-quantized INT8
//                       weights (channel, symmetric) with dynamic per-token INT8 activations; an
//                       `ignore` list (module names, or "re:" regular expressions)
// Invariant: a parsed config is internally consistent (bits / scheme / group size agree).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace eli {

class JsonValue;

enum class QuantMethod : uint8_t { kNone, kAwq, kGptq, kCompressedTensors, kFp8Online };
const char* quant_method_name(QuantMethod m);  // "none", "awq", "gptq", "compressed-tensors", "fp8"

// What a quantized linear computes.
enum class QuantScheme : uint8_t { kNone, kW4A16, kW8A16, kW8A8Int8, kW8A8Fp8 };
const char* quant_scheme_name(QuantScheme s);  // "none", "w4a16", "w8a16", "w8a8-int8", "w8a8-fp8"

struct QuantConfig {
  QuantMethod method = QuantMethod::kNone;
  QuantScheme scheme = QuantScheme::kNone;
  int bits = 0;
  int64_t group_size = 0;          // 0: one group per output channel (per channel)
  bool symmetric = true;           // compressed-tensors: no zero points stored
  bool act_order = false;          // a g_idx tensor per linear (GPTQ desc_act, compressed-tensors actorder)
  bool gptq_v1_zeros = true;       // GPTQ checkpoint_format "gptq": stored zeros are z - 1
  bool static_input_scale = false; // FP8: per-tensor input_scale instead of dynamic per-token scales
  std::string format;              // compressed-tensors: "pack-quantized", "float-quantized", "int-quantized"
  std::vector<std::string> ignore; // module names ("lm_head") or "re:<regex>" left unquantized

  bool quantized() const { return method != QuantMethod::kNone; }
  // Whether linear module `name` (canonical HF name without ".weight") is on the ignore list.
  bool ignored(const std::string& name) const;
  // One line: "awq w4a16 g128", "gptq w4a16 g128 act-order", "compressed-tensors w8a8-fp8", "none".
  std::string describe() const;
};

// The quantization_config of a parsed config.json (method kNone when absent or null). Throws
// kUnsupported naming an unknown method / scheme and what eli supports, kModelLoad for a
// malformed one; `source` names the file.
QuantConfig parse_quant_config(const JsonValue& config, const std::string& source);

// Applies the engine option `quantization` ("auto", "awq", "gptq", "compressed-tensors", "fp8",
// "none") to the checkpoint's config: "auto" keeps it; a named method must match it (kInvalidArgument
// naming both otherwise), except "fp8" on an unquantized checkpoint, which quantizes its linears to
// FP8 per channel at load (QuantMethod::kFp8Online). `checkpoint_dense` tells whether the checkpoint's
// linears are 16/32-bit floats (a GGUF is not).
QuantConfig resolve_quantization(const std::string& option, const QuantConfig& checkpoint, bool checkpoint_dense,
                                 const std::string& model);

}  // namespace eli
