// runtime/model/transformer_weights.h: the weights of one decoder-only transformer, placed in
// the layout the forward pass wants, whatever file they came from.
//
// Layout (all row-major, matrices are (out_features, in_features) like nn.Linear):
//   embed      (V, H)                      matrix dtype
//   qkv        ((nh + 2 nkv) * hd, H)      q rows, then k rows, then v rows (merged at load)
//   o          (H, nh * hd)
//   gate_up    (2 I, H)                    gate rows, then up rows (merged at load)
//   down       (H, I)
//   lm_head    (V, H)                      aliases embed when tied
// Vectors (norm weights, biases) are always f32. Matrices are f32 or bf16 (`matrix_dtype`).
// Invariants: every shape was checked against the ModelSpec before any copy; Q/K rows of llama
// GGUF files are un-permuted back to the HF (rotate-half) order.
//
// Deferred merges (WeightLoadOptions::defer_merges, device loads only): a merged matrix whose parts
// are all stored in the wanted dtype and need no permutation is not concatenated on the host; it
// keeps the list of its parts (views of the mapped file) and upload_weights() writes each part at
// its row offset on the device. Such a matrix's data() is only an identity (see WeightMatrix).
//
// Placement: the forward pass reads weights only through PlacedWeights (raw pointers on one
// device). place_on_host() points into the TransformerWeights themselves (it needs contiguous
// matrices: no deferred ones); upload_weights() copies every matrix and vector to a device (tied
// embed/lm_head stay one allocation) through the staged uploader and owns the copies.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "eli/dtype.h"
#include "eli/model_spec.h"
#include "runtime/core/tensor.h"

namespace eli {

class ThreadPool;
class WeightSource;

// `rows` contiguous rows of a deferred matrix, in the matrix dtype (a view of the mapped file, kept
// alive by TransformerWeights::source).
struct WeightPart {
  const void* data = nullptr;
  int64_t rows = 0;
};

struct WeightMatrix {
  // (rows, cols) in matrix dtype; may alias a memory-mapped file. For a deferred matrix (parts
  // non-empty) only its shape, dtype and address are meaningful: the address is parts[0].data, an
  // identity (aliases share it) and NOT the matrix contents, which are the parts' rows in order.
  Tensor t;
  std::vector<WeightPart> parts;  // empty: `t` holds the whole matrix contiguously
  int64_t rows() const { return t.dim(0); }
  int64_t cols() const { return t.dim(1); }
  const void* data() const { return t.view().data; }
  DType dtype() const { return t.view().dtype; }
  bool deferred() const { return !parts.empty(); }
  uint64_t row_bytes() const { return rows() > 0 ? t.nbytes() / static_cast<uint64_t>(rows()) : 0; }
  // The whole matrix, contiguous, in a fresh host tensor (a deferred one is concatenated).
  Tensor contiguous_host() const;
};

struct LayerWeights {
  WeightMatrix qkv, o, gate_up, down;
  std::vector<float> qkv_bias;      // ((nh + 2 nkv) * hd) or empty
  std::vector<float> o_bias;        // (H) or empty
  std::vector<float> gate_up_bias;  // (2 I) or empty
  std::vector<float> down_bias;     // (H) or empty
  std::vector<float> q_norm, k_norm;       // (hd) or empty (Qwen3)
  std::vector<float> attn_norm, mlp_norm;  // (H)
};

struct TransformerWeights {
  DType matrix_dtype = DType::kF32;
  WeightMatrix embed, lm_head;
  std::vector<float> final_norm;  // (H)
  std::vector<LayerWeights> layers;
  std::shared_ptr<WeightSource> source;  // keeps zero-copy views alive
  uint64_t n_params = 0;
};

// Where the weights come from: HF names (model.layers.N...) are the canonical names; a GGUF
// source is read through the name map.
struct WeightLoadOptions {
  DType matrix_dtype = DType::kF32;   // f32 or bf16
  bool gguf_llama_permuted = false;   // undo llama.cpp's Q/K row permutation
  // The weights go to a device (upload_weights) and never feed the CPU forward pass: merges that
  // need no conversion are deferred to the upload (no host copy). Off for the CPU path.
  bool defer_merges = false;
  ThreadPool* pool = nullptr;
};

// `name_of(hf_name)` gives the source's name for a canonical HF tensor name ("" if unknown).
TransformerWeights load_transformer_weights(const ModelSpec& spec, std::shared_ptr<WeightSource> source,
                                            const std::function<std::string(const std::string&)>& name_of,
                                            const WeightLoadOptions& options);

class Device;

// The pointers of every weight on one device. Empty vectors (absent biases, q/k norms) are nullptr.
struct PlacedLayer {
  const void* qkv = nullptr;
  const void* o = nullptr;
  const void* gate_up = nullptr;
  const void* down = nullptr;
  const float* qkv_bias = nullptr;
  const float* o_bias = nullptr;
  const float* gate_up_bias = nullptr;
  const float* down_bias = nullptr;
  const float* q_norm = nullptr;
  const float* k_norm = nullptr;
  const float* attn_norm = nullptr;
  const float* mlp_norm = nullptr;
};
struct PlacedWeights {
  DType matrix_dtype = DType::kF32;
  const void* embed = nullptr;
  const void* lm_head = nullptr;
  const float* final_norm = nullptr;
  std::vector<PlacedLayer> layers;
  std::vector<Tensor> storage;  // device copies owned by this placement (empty on the host)
  uint64_t device_bytes = 0;    // bytes of `storage`
};

// Pointers into `w` itself: valid while `w` (or what it was moved into) lives, since a move keeps
// the vectors' buffers and the Tensors' shared storage in place.
PlacedWeights place_on_host(const TransformerWeights& w);
// Copies of every weight on `device` (through its allocator), on `stream` (nullptr: the device's
// default stream), through pinned staging buffers filled on `pool` (may be null); every copy is
// complete when it returns, so the host weights may be dropped then.
PlacedWeights upload_weights(const TransformerWeights& w, Device& device, void* stream = nullptr,
                             ThreadPool* pool = nullptr);

}  // namespace eli
