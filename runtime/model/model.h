// runtime/model/model.h: the interface every architecture implements, and the registry that maps
// a ModelSpec's architecture name to its implementation.
//
// A model is loaded (its weights declared and read through a WeightReader into a WeightStore), then
// placed on a device by the runner, then run step after step: forward() reads the step's inputs and
// the KV cache and writes the logits rows. One file per architecture family under
// runtime/model/models/, built from the shared blocks in runtime/model/blocks.h: a new architecture
// is a new file and one line in model_registry.cc, not a flag in another model's loop.
//
// Invariants: after construction the model's weights are complete (every tensor checked against
// the spec); forward() is the only per-step entry point and follows forward.h's contract.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "eli/model_spec.h"
#include "runtime/model/forward.h"
#include "runtime/model/weight_store.h"
#include "runtime/model/shard_plan.h"

namespace eli {

class ThreadPool;
class WeightReader;

// What a model needs of the KV cache.
struct KvSpec {
  int64_t n_layers = 0, n_kv_heads = 0, head_dim = 0;
  int64_t first_layer = 0;  // the model's index of this model's layer 0 (a pipeline stage's first)
};

struct ModelLoadOptions {
  DType compute_dtype = DType::kF32;   // dtype of dense matrices (f32, bf16, f16)
  DeviceKind device = DeviceKind::kCPU;
  bool defer_merges = false;           // device loads: merges needing no conversion happen at upload
  bool gguf_llama_permuted = false;    // undo llama.cpp's Q/K row permutation (llama GGUF files)
  ThreadPool* pool = nullptr;
  // The part of the model this rank holds (tensor / pipeline parallelism; see shard_plan.h).
  // create_model() fills an unsharded one (every layer, head and vocab row) when tp = pp = 1.
  RankShard shard;
};

class Model {
 public:
  virtual ~Model() = default;
  const ModelSpec& spec() const { return spec_; }
  WeightStore& weights() { return store_; }
  const WeightStore& weights() const { return store_; }

  virtual KvSpec kv_spec() const;
  // The RoPE configurations the forward reads (StepInputs::rope[i] is built from rope_sets()[i]):
  // one ModelSpec per set (the model's spec with that set's RopeSpec), at most kMaxRopeSets.
  virtual std::vector<ModelSpec> rope_sets() const { return {spec_}; }
  // Workspace bytes per slot for steps of up to max_tokens tokens and max_logits logits rows.
  virtual WorkspaceSizes workspace(int64_t max_tokens, int64_t max_logits, DeviceKind device) const = 0;
  // One step: logits rows for StepInputs::logits_indices.
  virtual void forward(const ForwardContext& f) const = 0;

 protected:
  explicit Model(ModelSpec spec, std::shared_ptr<WeightSource> source)
      : spec_(std::move(spec)), store_(std::move(source)) {}
  ModelSpec spec_;
  WeightStore store_;
};

using ModelFactory = std::function<std::unique_ptr<Model>(const ModelSpec&, const WeightReader&, const ModelLoadOptions&)>;

// The architecture names the registry knows ("llama", "mistral", "qwen2", "qwen3", ...).
std::vector<std::string> registered_architectures();
// Builds and loads the model for spec.architecture; kUnsupported naming the known ones otherwise.
std::unique_ptr<Model> create_model(const ModelSpec& spec, const WeightReader& reader, const ModelLoadOptions& options);

}  // namespace eli
