// runtime/model/weight_reader.h: reads a model's tensors from its checkpoint by canonical (HF)
// names, checks every shape against what the model asked for before anything is copied, and
// builds host tensors in the layout a LinearMethod wants (dense rows in a dtype, or GGUF blocks as
// stored).
//
// Dense matrices: a part already stored in the wanted dtype (and needing no permutation) stays a
// zero-copy view of the mapped file when it is the only part or the parts lie back to back; with
// defer_merges its other merges stay lists of such views (written at their row offsets by the
// upload); anything else is built in one pass per row (copied, or converted through a one-row f32
// buffer, un-permuted on the fly). GGUF rows are dequantized by the registry's kDequant kernel.
// Rows of GGUF blocks are independent, so Q/K un-permutation and merges work on block rows too.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/model/linear_method.h"
#include "runtime/model/quant_config.h"
#include "runtime/model/weight_source.h"
#include "runtime/model/weight_store.h"

namespace eli {

class ThreadPool;

class WeightReader {
 public:
  WeightReader(std::shared_ptr<WeightSource> source, std::function<std::string(const std::string&)> name_of);

  const std::shared_ptr<WeightSource>& source() const { return source_; }
  // The checkpoint's quantization (resolved against the engine's `quantization` option); the
  // quantized LinearMethods (linear_awq.cc, linear_gptq.cc, linear_compressed.cc) select on it.
  void set_quant(QuantConfig q) { quant_ = std::move(q); }
  const QuantConfig& quant() const { return quant_; }
  // nullptr if absent (or the source has no name for it).
  const TensorInfo* find(const std::string& canonical) const;
  // Throws kModelLoad "required tensor NAME (FILE NAME in this file) is missing".
  const TensorInfo& need(const std::string& canonical) const;
  // kModelLoad naming the tensor, its shape and the shape the config implies.
  void check_shape(const TensorInfo& t, const std::vector<int64_t>& want) const;

  // The parts' stored dtype when they all share one, else kF32 (mixed types; checked shapes).
  DType stored_dtype(const LinearSpec& spec) const;
  // Whether any part is stored in a GGUF block type (checked shapes).
  bool any_quantized(const LinearSpec& spec) const;

  // A dense (rows, cols) matrix in `want` (f32, bf16 or f16) with the parts' biases (f32).
  LinearWeight dense(const LinearSpec& spec, DType want, bool defer_merges, ThreadPool* pool) const;
  // The parts' GGUF block rows as stored (all parts of one block type), un-permuted, merged.
  LinearWeight blocks(const LinearSpec& spec, bool defer_merges) const;
  // Parts of different GGUF block types: their rows as stored (un-permuted) one after the other
  // in u8 data, with one WeightSegment per run of parts of one type; a zero-copy view of the file
  // when the parts need no permutation and lie back to back.
  LinearWeight block_segments(const LinearSpec& spec) const;
  // An f32 vector of n values; required == false: an empty tensor when absent.
  Tensor vector(const std::string& canonical, int64_t n, bool required = true) const;

 private:
  Tensor bias_of(const LinearSpec& spec) const;
  std::shared_ptr<WeightSource> source_;
  std::function<std::string(const std::string&)> name_of_;
  QuantConfig quant_;
};

// Rows [r0, r1) of a 2-D (or 1-D: one row) tensor of `cols` columns converted to f32 (GGUF blocks
// through the registry's kDequant kernel).
void tensor_rows_to_f32(const TensorInfo& t, int64_t cols, int64_t r0, int64_t r1, float* dst);

}  // namespace eli
