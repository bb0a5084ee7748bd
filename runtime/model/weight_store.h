// runtime/model/weight_store.h: every weight of a model, per tensor, and where each one lives.
//
// A model's weights are LinearWeights (matrices read by a LinearMethod: format, dtype, shape, data,
// quantization metadata, shard, bias) and VectorWeights (f32 norm weights, embeddings are dense
// LinearWeights read by the embedding kernel). The WeightStore owns them all; a model keeps plain
// pointers into it (addresses are stable: the store never moves an element).
//
// Life of a weight: loaded on the host by its LinearMethod (a zero-copy view of the mapped file, a
// deferred merge of row parts, or a converted host tensor), repacked once by the method, then
// placed: place() moves every weight to its Placement in one staged upload and drops the host
// copies (on the CPU placing keeps the host data as is), except the layers an OffloadTarget holds
// off the device: their matrices go to pinned host memory or stay in the file as layer images
// (weight_offload.cc), and their LinearWeights view a device ring slot that the runner's streamer
// fills before the layer runs.
// The placement map (placements()) is filled then: which device and memory tier holds each tensor,
// and how many bytes.
//
// Invariants: weights are immutable after place(); an alias (a tied lm_head, whose data is the
// embedding's) is uploaded once and shares the device copy; nothing is read from a deferred weight
// before it is placed.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "eli/device.h"
#include "eli/dtype.h"
#include "runtime/core/tensor.h"
#include "runtime/core/weight_format.h"
#include "runtime/device/buffer.h"

namespace eli {

class Device;
class LinearMethod;
class MappedFile;
class ThreadPool;
class WeightSource;

// `rows` contiguous rows of a deferred weight, in its dtype (a view of the mapped file).
struct WeightPart {
  const void* data = nullptr;
  int64_t rows = 0;
};

// Which slice of the full (unsharded) matrix a weight holds: rows (dim 0) or cols (dim 1) split
// evenly over `world` ranks; world 1 is the whole matrix.
struct ShardSpec {
  int dim = 0;
  int rank = 0;
  int world = 1;
};

// Where a tensor lives after placement.
enum class MemoryTier : uint8_t { kDevice, kHost, kMappedFile };
const char* memory_tier_name(MemoryTier tier);
struct Placement {
  std::string name;
  DeviceId device{};
  MemoryTier tier = MemoryTier::kHost;
  uint64_t bytes = 0;
};

// Rows [row0, row0 + rows) of a GGUF weight whose parts have different block types (a merged
// projection of a mixed file: q/k stored as Q4_K, v as Q6_K): `dtype` blocks at byte `offset` of
// the weight's data.
struct WeightSegment {
  DType dtype = DType::kF32;
  int64_t row0 = 0, rows = 0;
  uint64_t offset = 0;
};

struct LinearWeight {
  std::string name;                    // canonical name, e.g. "model.layers.3.self_attn.qkv_proj"
  WeightFormat format = WeightFormat::kDense;
  DType dtype = DType::kF32;           // element (dense) or block (GGUF) type of `data`
  int64_t rows = 0, cols = 0;          // logical (out_features, in_features)
  // (rows, cols) in `dtype` and `format`. For a deferred weight (parts non-empty) only its address
  // is meaningful: parts[0].data, an identity (aliases share it), not the contents.
  Tensor data;
  std::vector<WeightPart> parts;       // deferred merge: these rows in order are the matrix
  Tensor scales, zeros;                // quantized formats (empty for dense and GGUF blocks)
  Tensor perm;                         // (cols) i32: input column j of the stored matrix is x[perm[j]] (act-order), or undefined
  int64_t group_size = 0;
  ShardSpec shard;
  Tensor bias;                         // (rows) f32, or undefined
  const LinearMethod* method = nullptr;
  const LinearWeight* alias_of = nullptr;  // same data as another weight (tied embeddings)
  bool file_view = false;              // data is a zero-copy view of the mapped model file
  // GGUF blocks of several types (data: their bytes as u8, dtype: the first segment's); empty when
  // the whole matrix is `dtype`.
  std::vector<WeightSegment> segments;

  bool deferred() const { return !parts.empty(); }
  const void* ptr() const { return data.view().data; }
  const float* bias_ptr() const { return bias.defined() ? bias.ptr<const float>() : nullptr; }
  // Bytes of data (whole matrix) plus bias and quantization metadata.
  uint64_t nbytes() const;
  // The whole matrix, contiguous, in a fresh host tensor (a deferred one is concatenated).
  Tensor contiguous_host() const;
};

struct VectorWeight {
  std::string name;
  Tensor data;  // (n) f32
  const float* ptr() const { return data.defined() ? data.ptr<const float>() : nullptr; }
  int64_t size() const { return data.defined() ? data.numel() : 0; }
};

// The model layer a weight belongs to: N for canonical names "model.layers.N.<...>", else -1
// (embedding, final norm, lm_head).
int64_t weight_layer(const std::string& name);

// ---- weight offloading (docs/offloading.md; runtime/runner/weight_streamer.h streams them) ----
// One tensor's bytes inside a layer image.
struct ImagePiece {
  uint64_t offset = 0, bytes = 0;    // in the image
  const void* host = nullptr;        // where the bytes are now (a mapped-file view or host memory)
  const MappedFile* file = nullptr;  // set when `host` is a view of this model file
  uint64_t file_offset = 0;          // then: where in it
};
// Every matrix tensor (data, bias, scales, zeros, perm) of one layer held off the device, packed at
// kImageAlignment-aligned offsets in store order: the same bytes in the host image and in the
// device ring slot the layer is streamed into before it runs. Norm vectors stay on the device.
struct LayerImage {
  int64_t layer = 0;
  MemoryTier tier = MemoryTier::kHost;  // kHost: `pinned` holds the image; kMappedFile: read per step
  uint64_t bytes = 0;
  std::vector<ImagePiece> pieces;
  Buffer pinned;             // kHost
  std::vector<Tensor> keep;  // kMappedFile: host tensors behind pieces that are not file views
};
constexpr uint64_t kImageAlignment = 256;
// What place() needs to hold layers off the device: their tiers and the device ring they run from.
// Offloaded layer j (in increasing layer order) runs from slots[j % slots.size()]: its weights'
// tensors are views at fixed offsets of that slot, filled by the streamer before the layer runs.
struct OffloadTarget {
  std::map<int64_t, MemoryTier> tier_of_layer;  // kHost or kMappedFile; layers not named stay on the device
  std::vector<void*> slots;                     // device memory, each at least every image's bytes
  std::shared_ptr<void> slots_owner;            // keeps the slots alive while weights view them
};

class WeightStore {
 public:
  explicit WeightStore(std::shared_ptr<WeightSource> source = nullptr) : source_(std::move(source)) {}

  LinearWeight* add(LinearWeight w);
  VectorWeight* add(VectorWeight v);
  // A vector from host values (norm weights after an offset was folded in, merged biases).
  VectorWeight* add_vector(std::string name, std::vector<float> values);

  const std::deque<LinearWeight>& linears() const { return linears_; }
  const std::deque<VectorWeight>& vectors() const { return vectors_; }
  uint64_t n_params() const { return n_params_; }
  void add_params(uint64_t n) { n_params_ += n; }
  // Bytes place() will put on a device: every distinct matrix once (aliases share), every vector.
  uint64_t placed_bytes() const;
  bool placed() const { return placed_; }
  const std::vector<Placement>& placements() const { return placements_; }

  // Bytes of each layer's image as place() packs it (layer -> bytes), for every layer.
  std::map<int64_t, uint64_t> layer_image_bytes() const;
  // Bytes of `layer`'s image that are not views of the mapped model file (converted or repacked
  // data, biases, scales; alignment padding excluded): a disk-tier layer keeps them in host memory
  // and reads only the rest from the file at each step.
  uint64_t layer_unmapped_bytes(int64_t layer) const;

  // Places every weight on `device`: a device other than the CPU gets one staged upload (on
  // `stream`, nullptr: its default; pinned staging filled on `pool`), complete when this returns;
  // the host data and the mapped file are then released. On the CPU the data stays where it is
  // (deferred weights are materialised). With `offload`, the layers it names are not uploaded:
  // their images go to pinned host memory (kHost) or stay in the file (kMappedFile; the source is
  // then kept), their weights view their ring slot, and take_layer_images() hands the images to
  // the streamer. Call once.
  void place(Device& device, void* stream = nullptr, ThreadPool* pool = nullptr, const OffloadTarget* offload = nullptr);
  // The offloaded layers' images, in increasing layer order (once, after place()).
  std::vector<LayerImage> take_layer_images();
  // The checkpoint's files (kept after place() only while a layer streams from them).
  const std::shared_ptr<WeightSource>& source() const { return source_; }

 private:
  void place_offloaded_layers(Device& device, const OffloadTarget& target, ThreadPool* pool);  // weight_offload.cc
  void add_image_placements();
  std::shared_ptr<WeightSource> source_;  // keeps zero-copy views alive until placement
  std::deque<LinearWeight> linears_;
  std::deque<VectorWeight> vectors_;
  std::vector<Placement> placements_;
  std::vector<LayerImage> images_;
  uint64_t n_params_ = 0;
  bool placed_ = false;
};

}  // namespace eli
