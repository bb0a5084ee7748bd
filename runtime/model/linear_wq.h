// runtime/model/linear_wq.h: what the LinearMethods of Hugging Face quantized checkpoints share
// (linear_awq.cc, linear_gptq.cc, linear_compressed.cc, linear_fp8_online.cc): a reader turns each
// part's published tensors into a WqPart (eli's orientation, unpacked values), build_wq() merges
// the parts and repacks them once into eli's layout (kernels/wq_matrix.h), and WqLinearBase
// applies it through the registry's (kGemv / kGemm, device, format, dtype) kernels.
//
// Invariants: act-order (g_idx) is resolved in build_wq: columns are sorted by group so groups are
// contiguous and the weight keeps the input permutation (LinearWeight::perm); merged parts must
// share one g_idx (they read the same input). The published layouts are never seen by a kernel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/wq_matrix.h"
#include "runtime/model/linear_method.h"

namespace eli {

struct TensorInfo;

// One part of a linear, unpacked, (rows, k) in eli's orientation (out features x in features).
struct WqPart {
  int64_t rows = 0;
  std::vector<uint8_t> q;       // (rows, k): unsigned values (grouped), int8 bits, or e4m3 codes
  std::vector<float> scales;    // (rows, groups) grouped / (rows) channel
  std::vector<float> zeros;     // (rows, groups), grouped formats only
  std::vector<int32_t> g_idx;   // (k) group of each input column, or empty (groups of contiguous columns)
};

// Channel formats (W8A8) with a static per-tensor input scale keep it, one f32, in LinearWeight::zeros
// (WqMatrix::act_scale); their zeros are otherwise undefined.
// Merges `parts` (rows stacked in order) into a LinearWeight of `format` (kInt4Grouped: values
// < 16, packed two per byte; kInt8Grouped; kInt8Channel; kFp8Channel), with group_size columns
// per group (grouped formats; k for one group per row) and the parts' biases (spec.bias).
LinearWeight build_wq(const LinearSpec& spec, const WeightReader& reader, WeightFormat format, int64_t group_size,
                      std::vector<WqPart> parts);

// Reads tensor `t` (any float dtype, or i32 / i64) as f32 / int64 values (checked element count).
std::vector<float> read_f32(const TensorInfo& t);
std::vector<int32_t> read_i32(const TensorInfo& t);

// The kernels' view of a built weight.
WqMatrix wq_view(const LinearWeight& w);

// apply() through the registry: GEMV (fused RMSNorm prologue and gated / accumulating epilogue)
// for m <= kGemvMaxRows, else NormCast + GEMM (+ GatedAct). f32 input rows (input_dtype); on CUDA
// the grouped formats' GEMM reads bf16 (the norm prologue writes bf16, other f32 rows are converted
// by the kernel; bf16 rows and a bf16 gated output are accepted too) and takes a workspace in the
// kBlas scratch slot (kernels/cuda/wq_w4a16.cuh's plans).
class WqLinearBase : public LinearMethod {
 public:
  // The layout is built by load(); repack() only checks that the device has its kernels (kUnsupported
  // naming the format and device otherwise: on CUDA the channel formats need kernels/cuda/wq_w8a8*;
  // the grouped ones run kernels/cuda/wq_w4a16*, which read the canonical layout as is).
  void repack(LinearWeight& w, const LinearLoadContext& ctx) const override;
  DType input_dtype(const LinearWeight& w, int64_t m, DeviceKind device) const override;
  void scratch_bytes(const LinearWeight& w, int64_t m, DeviceKind device, size_t* norm, size_t* mid,
                     size_t* blas) const override;
  void apply(const LinearWeight& w, int64_t m, const LinearInput& in, const LinearOutput& out,
             const LinearScratch& scratch, const ExecContext& ctx, DeviceKind device) const override;
};

const LinearMethod& awq_linear_method();
const LinearMethod& gptq_linear_method();
const LinearMethod& compressed_linear_method();
const LinearMethod& fp8_online_linear_method();

}  // namespace eli

namespace eli {
// Whether `spec` is stored quantized under `suffix` (".qweight", ".weight_packed", ...): true when
// every part has the tensor and is not on the config's ignore list; false when none has it or all
// are ignored; kModelLoad naming the part for a mix (a merge of quantized and unquantized parts).
bool wq_parts_quantized(const LinearSpec& spec, const WeightReader& reader, const char* suffix);
// Checks a published tensor's shape (kModelLoad naming both).
void wq_check_shape(const WeightReader& reader, const TensorInfo& t, const std::vector<int64_t>& want);
}  // namespace eli
