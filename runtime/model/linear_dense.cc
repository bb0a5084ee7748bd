// runtime/model/linear_dense.cc: the "dense" LinearMethod: f32 / bf16 / f16 weights (held in the
// model's compute dtype), through the registry's kGemv (a few rows: the fused decode GEMV with the
// RMSNorm prologue and the gated / accumulating epilogue inside) or NormCast + kGemm + GatedAct.
//
// GEMM operands: a device whose kGemm takes 16-bit activations (CUDA) gets them in the weight's
// dtype (normalised rows cast by NormCast, a gated product written in that dtype and activated in
// place); the CPU's kGemm takes f32 activations with f32 or bf16 weights. The GEMV route always
// reads f32 rows. input_dtype() tells the model which dtype to write a product's input in.
#include "eli/error.h"
#include "kernels/registry.h"
#include "runtime/model/linear_method.h"
#include "runtime/model/weight_reader.h"

namespace eli {
namespace {

constexpr size_t kBlasWorkspaceBytes = size_t{32} << 20;

bool is_float(DType dt) { return dt == DType::kF32 || dt == DType::kBF16 || dt == DType::kF16; }

class DenseLinear final : public LinearMethod {
 public:
  const char* name() const override { return "dense"; }

  bool accepts(const LinearSpec& spec, const WeightReader& reader, DeviceKind) const override {
    return !reader.any_quantized(spec);
  }

  LinearWeight load(const LinearSpec& spec, const WeightReader& reader, const LinearLoadContext& ctx) const override {
    return reader.dense(spec, ctx.compute_dtype, ctx.defer_merges, ctx.pool);
  }

  // The dtype of GEMM activations for this weight on `device`.
  static DType gemm_act_dtype(const LinearWeight& w, DeviceKind device) {
    return device == DeviceKind::kCPU ? DType::kF32 : w.dtype;
  }
  static bool gemv_route(int64_t m) { return m <= kGemvMaxRows; }

  DType input_dtype(const LinearWeight& w, int64_t m, DeviceKind device) const override {
    return gemv_route(m) ? DType::kF32 : gemm_act_dtype(w, device);
  }

  void scratch_bytes(const LinearWeight& w, int64_t m, DeviceKind device, size_t* norm, size_t* mid,
                     size_t* blas) const override {
    const size_t act = dtype_info(gemm_act_dtype(w, device)).block_bytes;
    *norm = static_cast<size_t>(m * w.cols) * act;
    *mid = static_cast<size_t>(m * w.rows) * act;
    *blas = device == DeviceKind::kCPU ? 0 : kBlasWorkspaceBytes;
  }

  void apply(const LinearWeight& w, int64_t m, const LinearInput& in, const LinearOutput& out,
             const LinearScratch& s, const ExecContext& ctx, DeviceKind device) const override {
    ELI_CHECK_KIND(kInternal, is_float(w.dtype) && w.format == WeightFormat::kDense, w.name,
                   ": the dense method got a ", weight_format_name(w.format), " ", dtype_name(w.dtype), " weight");
    if (m == 0) return;
    ELI_CHECK_KIND(kInternal, w.ptr() != nullptr && in.x != nullptr && out.out != nullptr, w.name, ": null ",
                   w.ptr() == nullptr ? "weight data" : in.x == nullptr ? "input rows" : "output rows", " (m ", m, ")");
    const bool gated = out.epilogue == LinearEpilogue::kGated;
    if (gemv_route(m) && in.dtype == DType::kF32 && out.dtype == DType::kF32) {
      GemvArgs a{};
      a.out = static_cast<float*>(out.out);
      a.x = static_cast<const float*>(in.x);
      a.w = w.ptr();
      a.bias = w.bias_ptr();
      a.norm_weight = in.norm_weight;
      a.m = m;
      a.n = w.rows;
      a.k = w.cols;
      a.out_stride = out.stride;
      a.x_stride = in.stride;
      a.norm_eps = in.norm_eps;
      a.gated = gated ? out.act : GatedAct::kNone;
      a.accumulate = out.epilogue == LinearEpilogue::kAccumulate;
      get_kernel(Op::kGemv, device, w.dtype).fn(&a, ctx);
      return;
    }
    const DType act = gemm_act_dtype(w, device);
    const void* x = in.x;
    int64_t x_stride = in.stride;
    if (in.norm_weight != nullptr) {
      ELI_CHECK_KIND(kInternal, in.dtype == DType::kF32, w.name, ": a normalised input must be float32");
      ELI_CHECK_KIND(kInternal, s.norm_bytes >= static_cast<size_t>(m * w.cols) * dtype_info(act).block_bytes,
                     w.name, ": norm scratch too small");
      NormCastArgs n{};
      n.out = s.norm;
      n.x = static_cast<const float*>(in.x);
      n.weight = in.norm_weight;
      n.rows = m;
      n.hidden = w.cols;
      n.out_stride = w.cols;
      n.x_stride = in.stride;
      n.eps = in.norm_eps;
      n.weight_offset = 0.0f;
      n.out_dtype = act;
      get_kernel(Op::kNormCast, device, DType::kF32).fn(&n, ctx);
      x = s.norm;
      x_stride = w.cols;
    } else {
      ELI_CHECK_KIND(kInternal, in.dtype == act, w.name, ": input rows are ", dtype_name(in.dtype), ", the GEMM takes ",
                     dtype_name(act));
    }
    GemmArgs g{};
    g.x = x;
    g.w = w.ptr();
    g.bias = w.bias_ptr();
    g.m = m;
    g.n = w.rows;
    g.k = w.cols;
    g.x_stride = x_stride;
    g.x_dtype = act;
    g.workspace = s.blas;
    g.workspace_bytes = s.blas_bytes;
    const KernelEntry& gemm = get_kernel(Op::kGemm, device, w.dtype);
    if (!gated) {
      g.out = out.out;
      g.out_stride = out.stride;
      g.out_dtype = out.dtype;
      g.accumulate = out.epilogue == LinearEpilogue::kAccumulate;
      gemm.fn(&g, ctx);
      return;
    }
    ELI_CHECK_KIND(kInternal, out.dtype == act, w.name, ": a gated output must be ", dtype_name(act));
    ELI_CHECK_KIND(kInternal, s.mid_bytes >= static_cast<size_t>(m * w.rows) * dtype_info(act).block_bytes, w.name,
                   ": gated scratch too small");
    g.out = s.mid;
    g.out_stride = w.rows;
    g.out_dtype = act;
    gemm.fn(&g, ctx);
    GatedActArgs ga{out.out, s.mid, m, w.rows / 2, out.stride, w.rows, act, out.act};
    get_kernel(Op::kGatedAct, device, DType::kF32).fn(&ga, ctx);
  }
};

}  // namespace

const LinearMethod& dense_linear_method() {
  static const DenseLinear kMethod;
  return kMethod;
}

}  // namespace eli
