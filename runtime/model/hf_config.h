// runtime/model/hf_config.h: Hugging Face config.json -> eli::ModelSpec, for LlamaForCausalLM
// (Llama 1/2/3/3.1/3.2), MistralForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM.
//
// Reads both the classic rope fields (rope_theta + rope_scaling {rope_type|type, ...}) and
// transformers v5's rope_parameters dict. Values are copied as written (e.g. yarn's factor and
// original_max_position_embeddings); RoPE tables are computed elsewhere. Never executes code: a
// config whose architecture is unknown (with or without auto_map custom code) is refused.
// Invariant: the returned spec has passed validate_model_spec (model_spec_check.h).
#pragma once

#include <string>

#include "eli/model_spec.h"

namespace eli {

class JsonValue;
struct QuantConfig;

// Throws eli::Error(kModelLoad) naming the file and the failed check. The file is read only if it
// is a regular file (opened non-blocking); `display` names it in messages (default: the path).
// Containment in a model directory is the caller's job (model_dir.h).
// quant (optional): receives the config's quantization_config (quant_config.h; refused methods throw).
ModelSpec parse_hf_config(const std::string& config_json_path, const std::string& display = "",
                          QuantConfig* quant = nullptr);

// As parse_hf_config, from an already parsed config (`source` names it in errors).
ModelSpec hf_config_to_spec(const JsonValue& config, const std::string& source);

}  // namespace eli
