// runtime/model/linear_gguf.cc: the "gguf-dequant" LinearMethod, the explicit fallback for GGUF
// block-quantized weights until native quantized kernels register methods of their own.
//
// load() keeps the blocks exactly as stored in the file (a zero-copy view, or merged / un-permuted
// block rows) when every part has one block type; parts of different types (a Q4_K_M file may store
// q and k as Q4_K, v as Q6_K) are converted to dense rows at load instead. repack() dequantizes
// block weights once (the registry's kDequant) into the model's compute dtype; from then on the
// weight is dense and applied exactly as the dense method applies it.
#include <cstring>

#include "eli/error.h"
#include "kernels/ref/float_convert.h"
#include "runtime/core/thread_pool.h"
#include "runtime/model/linear_method.h"
#include "runtime/model/weight_reader.h"

namespace eli {
namespace {

class GgufDequantLinear final : public LinearMethod {
 public:
  const char* name() const override { return "gguf-dequant"; }

  bool accepts(const LinearSpec& spec, const WeightReader& reader, DeviceKind) const override {
    return reader.any_quantized(spec);
  }

  LinearWeight load(const LinearSpec& spec, const WeightReader& reader, const LinearLoadContext& ctx) const override {
    if (dtype_info(reader.stored_dtype(spec)).is_quantized) return reader.blocks(spec, /*defer_merges=*/false);
    return reader.dense(spec, ctx.compute_dtype, ctx.defer_merges, ctx.pool);
  }

  void repack(LinearWeight& w, const LinearLoadContext& ctx) const override {
    if (w.format != WeightFormat::kGgufBlocks) return;
    const DType want = ctx.compute_dtype;
    Tensor dense = Tensor::host(want, {w.rows, w.cols});
    const DTypeInfo& info = dtype_info(w.dtype);
    const int64_t in_row = w.cols / info.block_elems * info.block_bytes;
    const int64_t out_row = w.cols * dtype_info(want).block_bytes;
    TensorInfo t;  // the blocks as a one-tensor source for the row converter
    t.name = w.name;
    t.dtype = w.dtype;
    t.shape = {w.rows, w.cols};
    t.data = static_cast<const uint8_t*>(w.ptr());
    t.nbytes = static_cast<uint64_t>(w.rows * in_row);
    uint8_t* dst = dense.ptr<uint8_t>();
    parallel_for(ctx.pool, w.rows, [&](int64_t r0, int64_t r1) {
      std::vector<float> row(static_cast<size_t>(w.cols));
      for (int64_t r = r0; r < r1; ++r) {
        float* out = want == DType::kF32 ? reinterpret_cast<float*>(dst + r * out_row) : row.data();
        tensor_rows_to_f32(t, w.cols, r, r + 1, out);
        if (want == DType::kF32) continue;
        uint16_t* o = reinterpret_cast<uint16_t*>(dst + r * out_row);
        for (int64_t c = 0; c < w.cols; ++c) o[c] = want == DType::kF16 ? f32_to_f16(row[c]) : f32_to_bf16(row[c]);
      }
    }, 16);
    w.data = std::move(dense);
    w.format = WeightFormat::kDense;
    w.dtype = want;
    w.file_view = false;
  }

  DType input_dtype(const LinearWeight& w, int64_t m, DeviceKind device) const override {
    return dense_linear_method().input_dtype(w, m, device);
  }
  void scratch_bytes(const LinearWeight& w, int64_t m, DeviceKind device, size_t* norm, size_t* mid,
                     size_t* blas) const override {
    dense_linear_method().scratch_bytes(w, m, device, norm, mid, blas);
  }
  void apply(const LinearWeight& w, int64_t m, const LinearInput& in, const LinearOutput& out,
             const LinearScratch& s, const ExecContext& ctx, DeviceKind device) const override {
    dense_linear_method().apply(w, m, in, out, s, ctx, device);
  }
};

}  // namespace

const LinearMethod& gguf_dequant_linear_method() {
  static const GgufDequantLinear kMethod;
  return kMethod;
}

}  // namespace eli
