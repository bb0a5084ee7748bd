// runtime/model/models/models.h: the factory of each architecture file (one per family). Only
// runtime/model/model_registry.cc maps architecture names to these.
#pragma once

#include <memory>

#include "runtime/model/model.h"

namespace eli {

// runtime/model/models/llama.cc: llama, mistral, qwen2, qwen3 (and SmolLM2, a llama).
std::unique_ptr<Model> create_llama_model(const ModelSpec& spec, const WeightReader& reader,
                                          const ModelLoadOptions& options);
// runtime/model/models/phi3.cc: phi3 (fused qkv / gate_up, LongRoPE).
std::unique_ptr<Model> create_phi3_model(const ModelSpec& spec, const WeightReader& reader,
                                         const ModelLoadOptions& options);
// runtime/model/models/gemma3.cc: gemma3 text (sandwich norms, GeGLU, local / global layers).
std::unique_ptr<Model> create_gemma3_model(const ModelSpec& spec, const WeightReader& reader,
                                           const ModelLoadOptions& options);

}  // namespace eli
