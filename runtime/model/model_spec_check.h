// runtime/model/model_spec_check.h: hard caps and consistency checks on a ModelSpec (RELIABILITY
// item 6), run before anything is sized from it, and the rule for tensor names that the spec does
// not account for (issue 20 item 18). Checks against tensor shapes are the weight loader's job.
//
// Tensor-name rule (check_tensor_names):
//   - A tensor of a decoder layer whose index is not below the layer count is refused: `blk.N.*`
//     in a GGUF, `model.layers.N.*` (also `language_model.model.layers.N.*` and
//     `model.language_model.layers.N.*`, the multimodal wrappers) in a Hugging Face checkpoint,
//     with N >= block_count / num_hidden_layers, or N not a plain decimal index. Such a file
//     contradicts its own config: either the config or the weights are wrong, and loading it would
//     silently drop weights.
//   - GGUF: every other tensor name must be one eli reads (hf_name_for_gguf_tensor maps it, or it is
//     `rope_freqs.weight`), or `blk.N.attn_rot_embd*` (old converters' rotary table, unused). GGUF
//     names form a closed per-architecture vocabulary, so an unknown one means a feature eli does
//     not implement (mixture-of-experts `ffn_*_exps`, a fused `attn_qkv` ...): refused, naming the
//     tensor.
//   - Hugging Face: other names are accepted and not read. Checkpoints legitimately carry extras
//     (`rotary_emb.inv_freq` buffers, vision towers and projectors of multimodal checkpoints,
//     multi-token-prediction heads); a tensor the model needs and lacks still fails at placement.
#pragma once

#include <cstdint>
#include <string>

#include "eli/model_spec.h"

namespace eli {

class WeightSource;

constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxHeadDim = 1024;
constexpr int64_t kMaxHidden = int64_t{1} << 17;
constexpr int64_t kMaxIntermediate = int64_t{1} << 20;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxPositions = int64_t{1} << 24;

// Throws eli::Error(kModelLoad) "SOURCE: <field> = <value> ..." for the first failed check.
void validate_model_spec(const ModelSpec& spec, const std::string& source);

enum class TensorNaming { kHuggingFace, kGguf };

// Applies the tensor-name rule above to every tensor of `weights`; throws eli::Error(kModelLoad)
// "SOURCE: tensor 'NAME' ..." for the first (in name order) that breaks it.
void check_tensor_names(const ModelSpec& spec, const WeightSource& weights, TensorNaming naming,
                        const std::string& source);

}  // namespace eli
