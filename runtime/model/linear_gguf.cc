// runtime/model/linear_gguf.cc: the LinearMethods of GGUF block-quantized weights.
//
// "gguf-native": the blocks stay as stored (a zero-copy view of the mapped file where the parts
// need no un-permutation and lie back to back) and apply() calls the registry's kGemv / kGemm of
// (device, WeightFormat::kGgufBlocks, block type), which quantize x per block into the workspace
// (the kBlas scratch slot: m * k / 32 * 40 bytes, rounded up to 256) and take integer dot products.
// m <= kGemvMaxRows goes through kGemv (RMSNorm prologue and gated / accumulating epilogue fused);
// more rows through NormCast (f32) + kGemm + GatedAct. A merged projection whose parts have
// different block types (Q4_K_M: q/k Q4_K, v Q6_K) is loaded as segments, each applied with its
// own kernel into its column range of the output. Chosen where the registry has both kernels for
// every part's type on the device (find_kernel, no device branches); ELI_GGUF_NATIVE=0 in the
// environment turns it off (the dequantizing fallback then loads every GGUF weight).
//
// "gguf-dequant": the fallback where no native kernel exists. load() keeps the blocks exactly as
// stored in the file (a zero-copy view, or merged / un-permuted block rows) when every part has
// one block type; parts of different types (a Q4_K_M file may store q and k as Q4_K, v as Q6_K)
// are converted to dense rows at load instead. repack() dequantizes
// block weights once (the registry's kDequant) into the model's compute dtype; from then on the
// weight is dense and applied exactly as the dense method applies it.
#include <cstdlib>
#include <cstring>
#include <vector>

#include "eli/error.h"
#include "kernels/registry.h"
#include "kernels/ref/float_convert.h"
#include "runtime/core/thread_pool.h"
#include "runtime/model/linear_method.h"
#include "runtime/model/weight_reader.h"

namespace eli {
namespace {

constexpr size_t kActBytesPer32 = 40;  // quantized-x workspace per 32 values (CPU and CUDA kernels)

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

bool native_disabled() {
  const char* v = std::getenv("ELI_GGUF_NATIVE");
  return v != nullptr && std::strcmp(v, "0") == 0;
}

bool has_native_kernels(DeviceKind device, DType dt) {
  return dtype_info(dt).is_quantized && find_kernel(Op::kGemv, device, WeightFormat::kGgufBlocks, dt) != nullptr &&
         find_kernel(Op::kGemm, device, WeightFormat::kGgufBlocks, dt) != nullptr;
}

// The row ranges of `w` with one block type each.
std::vector<WeightSegment> segments_of(const LinearWeight& w) {
  if (!w.segments.empty()) return w.segments;
  return {WeightSegment{w.dtype, 0, w.rows, 0}};
}

class GgufNativeLinear final : public LinearMethod {
 public:
  const char* name() const override { return "gguf-native"; }

  bool accepts(const LinearSpec& spec, const WeightReader& reader, DeviceKind device) const override {
    if (native_disabled() || !reader.any_quantized(spec)) return false;
    for (const LinearPart& p : spec.parts) {
      if (!has_native_kernels(device, reader.need(p.name + ".weight").dtype)) return false;
    }
    return true;
  }

  LinearWeight load(const LinearSpec& spec, const WeightReader& reader, const LinearLoadContext& ctx) const override {
    if (dtype_info(reader.stored_dtype(spec)).is_quantized) return reader.blocks(spec, ctx.defer_merges);
    return reader.block_segments(spec);
  }

  DType input_dtype(const LinearWeight&, int64_t, DeviceKind) const override { return DType::kF32; }

  void scratch_bytes(const LinearWeight& w, int64_t m, DeviceKind, size_t* norm, size_t* mid,
                     size_t* blas) const override {
    const bool gemm = m > kGemvMaxRows;
    *blas = align256(static_cast<size_t>(m) * static_cast<size_t>(w.cols / 32) * kActBytesPer32);
    *norm = gemm ? static_cast<size_t>(m * w.cols) * sizeof(float) : 0;
    // Gated products go through `mid` on the GEMM route, and on the GEMV route when the gate and
    // up rows are of different block types.
    *mid = gemm || w.segments.size() > 1 ? static_cast<size_t>(m * w.rows) * sizeof(float) : 0;
  }

  void apply(const LinearWeight& w, int64_t m, const LinearInput& in, const LinearOutput& out,
             const LinearScratch& s, const ExecContext& ctx, DeviceKind device) const override {
    ELI_CHECK_KIND(kInternal, w.format == WeightFormat::kGgufBlocks, w.name, ": the gguf-native method got a ",
                   weight_format_name(w.format), " weight");
    ELI_CHECK_KIND(kInternal, in.dtype == DType::kF32 && out.dtype == DType::kF32, w.name,
                   ": GGUF block products take and give float32 rows");
    if (m == 0) return;
    const size_t ws = static_cast<size_t>(m) * static_cast<size_t>(w.cols / 32) * kActBytesPer32;
    ELI_CHECK_KIND(kInternal, s.blas != nullptr && s.blas_bytes >= ws, w.name, ": quantized-x workspace too small (",
                   s.blas_bytes, " < ", ws, " bytes)");
    const bool gated = out.epilogue == LinearEpilogue::kGated;
    const std::vector<WeightSegment> segs = segments_of(w);
    const auto* base = static_cast<const uint8_t*>(w.ptr());
    const float* bias = w.bias_ptr();
    // Gated with the gate and up rows in one block type: the kernel's own gated epilogue.
    const bool fused_gate = gated && segs.size() == 1;
    if (gated && (!fused_gate || m > kGemvMaxRows)) {
      ELI_CHECK_KIND(kInternal, s.mid_bytes >= static_cast<size_t>(m * w.rows) * sizeof(float), w.name,
                     ": gated scratch too small");
    }
    if (m <= kGemvMaxRows) {
      float* dst = gated && !fused_gate ? static_cast<float*>(s.mid) : static_cast<float*>(out.out);
      const int64_t dst_stride = gated && !fused_gate ? w.rows : out.stride;
      for (const WeightSegment& g : segs) {
        GemvArgs a{};
        a.out = dst + g.row0;
        a.x = static_cast<const float*>(in.x);
        a.w = base + g.offset;
        a.bias = bias != nullptr ? bias + g.row0 : nullptr;
        a.norm_weight = in.norm_weight;
        a.m = m;
        a.n = g.rows;
        a.k = w.cols;
        a.out_stride = dst_stride;
        a.x_stride = in.stride;
        a.norm_eps = in.norm_eps;
        a.gated = fused_gate ? out.act : GatedAct::kNone;
        a.accumulate = out.epilogue == LinearEpilogue::kAccumulate;
        a.workspace = s.blas;
        a.workspace_bytes = s.blas_bytes;
        get_kernel(Op::kGemv, device, WeightFormat::kGgufBlocks, g.dtype).fn(&a, ctx);
      }
      if (gated && !fused_gate) gated_act(w, m, s.mid, out, ctx, device);
      return;
    }
    const float* x = static_cast<const float*>(in.x);
    int64_t x_stride = in.stride;
    if (in.norm_weight != nullptr) {
      ELI_CHECK_KIND(kInternal, s.norm_bytes >= static_cast<size_t>(m * w.cols) * sizeof(float), w.name,
                     ": norm scratch too small");
      NormCastArgs n{};
      n.out = s.norm;
      n.x = x;
      n.weight = in.norm_weight;
      n.rows = m;
      n.hidden = w.cols;
      n.out_stride = w.cols;
      n.x_stride = in.stride;
      n.eps = in.norm_eps;
      n.weight_offset = 0.0f;
      n.out_dtype = DType::kF32;
      get_kernel(Op::kNormCast, device, DType::kF32).fn(&n, ctx);
      x = static_cast<const float*>(s.norm);
      x_stride = w.cols;
    }
    for (const WeightSegment& g : segs) {
      GemmArgs a{};
      a.out = gated ? static_cast<float*>(s.mid) + g.row0 : static_cast<float*>(out.out) + g.row0;
      a.x = x;
      a.w = base + g.offset;
      a.bias = bias != nullptr ? bias + g.row0 : nullptr;
      a.m = m;
      a.n = g.rows;
      a.k = w.cols;
      a.out_stride = gated ? w.rows : out.stride;
      a.x_stride = x_stride;
      a.x_dtype = DType::kF32;
      a.out_dtype = DType::kF32;
      a.accumulate = !gated && out.epilogue == LinearEpilogue::kAccumulate;
      a.workspace = s.blas;
      a.workspace_bytes = s.blas_bytes;
      get_kernel(Op::kGemm, device, WeightFormat::kGgufBlocks, g.dtype).fn(&a, ctx);
    }
    if (gated) gated_act(w, m, s.mid, out, ctx, device);
  }

 private:
  // out = act(mid[:, :rows/2]) * mid[:, rows/2:], f32.
  static void gated_act(const LinearWeight& w, int64_t m, void* mid, const LinearOutput& out, const ExecContext& ctx,
                        DeviceKind device) {
    GatedActArgs ga{out.out, mid, m, w.rows / 2, out.stride, w.rows, DType::kF32, out.act};
    get_kernel(Op::kGatedAct, device, DType::kF32).fn(&ga, ctx);
  }
};

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

const LinearMethod& gguf_native_linear_method() {
  static const GgufNativeLinear kMethod;
  return kMethod;
}

const LinearMethod& gguf_dequant_linear_method() {
  static const GgufDequantLinear kMethod;
  return kMethod;
}

}  // namespace eli
