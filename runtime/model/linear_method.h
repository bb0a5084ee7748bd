// runtime/model/linear_method.h: how a matrix product with one weight format is loaded, repacked
// and applied (the weight-format seam: a new format is a new LinearMethod plus its kernels).
//
// A model asks for y = epilogue(prologue(x) @ W^T + b) through ForwardContext::linear(); the
// LinearMethod chosen for W at load time (select_linear_method: from the stored tensor types and
// the checkpoint's quantization config) decides which kernels run:
//   prologue  optional RMSNorm of f32 residual-stream rows (norm_weight set)
//   epilogue  kStore (out = y), kAccumulate (out += y, f32 out: the residual add), kGated
//             (out = act(y[:, :N/2]) * y[:, N/2:], a gated MLP's activation)
// Methods registered today: "dense" (f32 / bf16 / f16 weights; GEMV for a few rows, GEMM beyond),
// "gguf-native" (GGUF blocks kept as stored, applied by the registry's block kernels where the
// device has them) and "gguf-dequant" (GGUF blocks dequantized once at repack, then dense): the
// fallback where no native kernel exists.
//
// Invariants: load() only reads the checkpoint and builds host data (no device work); repack()
// runs once before placement; apply() allocates nothing and runs on the stream of its context, so
// it can be captured in a CUDA graph.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eli/device.h"
#include "eli/dtype.h"
#include "kernels/ops.h"
#include "runtime/model/weight_store.h"

namespace eli {

class WeightReader;

// One row range of a linear weight in the checkpoint: the tensor `name` (canonical HF name,
// without ".weight") holds `rows` rows; permute_heads > 0 undoes llama.cpp's Q/K row permutation
// for that many heads.
// A tensor-parallel shard takes rows [row_begin, row_begin + rows) of a tensor of stored_rows rows
// (whole heads where permute_heads > 0).
struct LinearPart {
  std::string name;
  int64_t rows = 0;
  int64_t permute_heads = 0;
  int64_t row_begin = 0;    // first stored row taken
  int64_t stored_rows = 0;  // rows of the stored tensor; 0: `rows` (the whole tensor)
  int64_t full_rows() const { return stored_rows > 0 ? stored_rows : rows; }
};

// What a model asks for: a (rows, cols) matrix made of parts stacked along rows, with or without
// a bias (the parts' ".bias" tensors, merged the same way).
struct LinearSpec {
  std::string name;  // canonical name of the merged matrix (for errors and the placement map)
  std::vector<LinearPart> parts;
  int64_t cols = 0;
  bool bias = false;
  // A column shard (a row-parallel product under tensor parallelism): columns [col_begin,
  // col_begin + cols) of tensors of stored_cols columns; 0: `cols` (every column).
  int64_t col_begin = 0, stored_cols = 0;
  ShardSpec shard;          // recorded on the loaded weight
  int64_t rows() const;
  int64_t full_cols() const { return stored_cols > 0 ? stored_cols : cols; }
};

// Load-time context: the dtype dense weights are held in, the device they will run on, whether
// merges may be deferred to the upload.
struct LinearLoadContext {
  DType compute_dtype = DType::kF32;  // f32, bf16 or f16
  DeviceKind device = DeviceKind::kCPU;
  bool defer_merges = false;
  ThreadPool* pool = nullptr;
};

enum class LinearEpilogue : uint8_t { kStore, kAccumulate, kGated };

struct LinearInput {
  const void* x = nullptr;            // (m, cols) rows, stride `stride` elements
  DType dtype = DType::kF32;          // f32 when norm_weight is set (the residual stream)
  int64_t stride = 0;
  const float* norm_weight = nullptr; // (cols) RMSNorm prologue, or nullptr
  float norm_eps = 1e-6f;
};

struct LinearOutput {
  void* out = nullptr;                // (m, kGated ? rows / 2 : rows), stride `stride` elements
  DType dtype = DType::kF32;          // f32 for kAccumulate
  int64_t stride = 0;
  LinearEpilogue epilogue = LinearEpilogue::kStore;
  GatedAct act = GatedAct::kSilu;     // kGated only
};

// Device scratch apply() may use (sized by LinearMethod::scratch_bytes for the largest step).
struct LinearScratch {
  void* norm = nullptr;  // normalised input rows
  size_t norm_bytes = 0;
  void* mid = nullptr;   // pre-activation rows of a gated product
  size_t mid_bytes = 0;
  void* blas = nullptr;  // the BLAS library's workspace
  size_t blas_bytes = 0;
};

class LinearMethod {
 public:
  virtual ~LinearMethod() = default;
  virtual const char* name() const = 0;
  // Whether this method takes a weight stored as `stored` (the parts' checkpoint dtype, or
  // kF32 when they differ) for `device`; the first method in registry order that accepts wins.
  virtual bool accepts(const LinearSpec& spec, const WeightReader& reader, DeviceKind device) const = 0;
  // create + load: the host weight of `spec` from the checkpoint.
  virtual LinearWeight load(const LinearSpec& spec, const WeightReader& reader, const LinearLoadContext& ctx) const = 0;
  // Post-load repack into the layout apply() reads (once, on the host, before placement).
  virtual void repack(LinearWeight& w, const LinearLoadContext& ctx) const {}
  // The dtype apply() wants un-normalised input rows in for an m-row product on `device`.
  virtual DType input_dtype(const LinearWeight& w, int64_t m, DeviceKind device) const = 0;
  // Scratch for m rows: norm buffer, mid buffer (gated), BLAS workspace.
  virtual void scratch_bytes(const LinearWeight& w, int64_t m, DeviceKind device, size_t* norm, size_t* mid,
                             size_t* blas) const = 0;
  virtual void apply(const LinearWeight& w, int64_t m, const LinearInput& in, const LinearOutput& out,
                     const LinearScratch& scratch, const ExecContext& ctx, DeviceKind device) const = 0;
};

// The registered methods, in the order select_linear_method() tries them.
const std::vector<const LinearMethod*>& linear_methods();
// The first registered method that accepts `spec`; kUnsupported naming the stored type if none.
const LinearMethod& select_linear_method(const LinearSpec& spec, const WeightReader& reader, DeviceKind device);
// Loads `spec` with its selected method and repacks it.
LinearWeight load_linear(const LinearSpec& spec, const WeightReader& reader, const LinearLoadContext& ctx);

const LinearMethod& dense_linear_method();
const LinearMethod& gguf_native_linear_method();
const LinearMethod& gguf_dequant_linear_method();

}  // namespace eli
