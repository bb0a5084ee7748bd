// runtime/model/model_registry.cc: the one table of architecture name -> model implementation
// (explicit, so static-library linking cannot drop an architecture), and Model's defaults.
#include <string>
#include <utility>
#include <vector>

#include "eli/error.h"
#include "runtime/model/model.h"
#include "runtime/model/models/models.h"

namespace eli {
namespace {

const std::vector<std::pair<std::string, ModelFactory>>& registry() {
  static const std::vector<std::pair<std::string, ModelFactory>> kModels = {
      {"llama", create_llama_model},
      {"mistral", create_llama_model},
      {"qwen2", create_llama_model},
      {"qwen3", create_llama_model},
      {"phi3", create_phi3_model},
      {"gemma3", create_gemma3_model},
  };
  return kModels;
}

}  // namespace

KvSpec Model::kv_spec() const {
  KvSpec k;
  k.n_layers = spec_.n_layers;
  k.n_kv_heads = spec_.n_kv_heads;
  k.head_dim = spec_.head_dim;
  return k;
}

std::vector<std::string> registered_architectures() {
  std::vector<std::string> names;
  for (const auto& [name, factory] : registry()) names.push_back(name);
  return names;
}

std::unique_ptr<Model> create_model(const ModelSpec& spec, const WeightReader& reader, const ModelLoadOptions& options) {
  for (const auto& [name, factory] : registry()) {
    if (name != spec.architecture) continue;
    if (options.shard.sharded()) return factory(spec, reader, options);
    ModelLoadOptions whole = options;
    whole.shard = make_rank_shard(spec, 0, 1, 0, 1);
    return factory(spec, reader, whole);
  }
  std::string known;
  for (const std::string& n : registered_architectures()) known += (known.empty() ? "" : ", ") + n;
  ELI_THROW(kUnsupported, "architecture '", spec.architecture, "' has no model implementation (known: ", known, ")");
}

}  // namespace eli
