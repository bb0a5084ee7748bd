// runtime/model/linear_wq.cc: see linear_wq.h.
#include "runtime/model/linear_wq.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "eli/error.h"
#include "kernels/cuda/wq_w8a8.h"
#define ELI_WQ_NO_KERNEL_DECLS
#include "kernels/cuda/wq_w4a16.cuh"  // host-side plans of the CUDA kernels (plain C++ here)
#include "kernels/ref/float_convert.h"
#include "kernels/registry.h"
#include "runtime/model/weight_reader.h"

namespace eli {

namespace {

bool grouped(WeightFormat f) { return f == WeightFormat::kInt4Grouped || f == WeightFormat::kInt8Grouped; }

// The CUDA route of the grouped formats (kernels/cuda/wq_w4a16.cuh): int8-activation GEMV (x rows
// quantized into the workspace) for m <= kGemvMaxRows,
// bf16 tensor-core GEMM beyond, both with a workspace in the kBlas slot.
bool cuda_grouped(const LinearWeight& w, DeviceKind device) { return device == DeviceKind::kCUDA && grouped(w.format); }

// The CUDA workspace of the grouped formats for any step of up to m rows (the plans depend on m;
// the mma route's split-K partials are not monotone in m, so its rows are all visited; the
// dequantize + cuBLASLt route's need grows with m).
size_t cuda_grouped_workspace(const LinearWeight& w, int64_t m) {
  size_t bytes = wq_cuda::gemv_workspace_bytes(std::min<int64_t>(m, kGemvMaxRows), w.cols);
  const int64_t dequant_rows = wq_cuda::dequant_gemm_rows();
  for (int64_t r = kGemvMaxRows + 1; r <= m && r < dequant_rows; ++r) {
    bytes = std::max(bytes, wq_cuda::gemm_x_bytes(r, w.cols, true) + wq_cuda::gemm_partial_bytes(r, w.rows, w.cols));
  }
  if (m >= dequant_rows) bytes = std::max(bytes, wq_cuda::gemm_workspace_bytes(m, w.rows, w.cols, true));
  return bytes;
}

DType storage_dtype(WeightFormat f) {
  return f == WeightFormat::kInt8Channel ? DType::kI8 : f == WeightFormat::kFp8Channel ? DType::kF8E4M3 : DType::kU8;
}

// The input permutation of act-order parts (empty: identity), checked: all parts share one g_idx
// and every group holds group_size columns.
std::vector<int32_t> act_order_perm(const LinearSpec& spec, std::vector<WqPart>& parts, int64_t k, int64_t gs) {
  for (WqPart& p : parts) {  // a g_idx of contiguous groups (row / g) is no permutation
    bool trivial = static_cast<int64_t>(p.g_idx.size()) == k;
    for (int64_t j = 0; trivial && j < k; ++j) trivial = p.g_idx[j] == j / gs;
    if (trivial) p.g_idx.clear();
  }
  const std::vector<int32_t>& g = parts[0].g_idx;
  for (const WqPart& p : parts) {
    ELI_CHECK_KIND(kUnsupported, p.g_idx == g, spec.name,
                   ": merged parts carry different g_idx (act-order) permutations; eli needs one per input");
  }
  if (g.empty()) return {};
  ELI_CHECK_KIND(kModelLoad, static_cast<int64_t>(g.size()) == k, spec.name, ": g_idx has ", g.size(),
                 " entries for ", k, " input columns");
  const int64_t groups = k / gs;
  for (int32_t v : g) {
    ELI_CHECK_KIND(kModelLoad, v >= 0 && v < groups, spec.name, ": g_idx value ", v, " outside [0, ", groups, ")");
  }
  std::vector<int32_t> perm(static_cast<size_t>(k));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return g[a] < g[b]; });
  bool identity = true;
  for (int64_t j = 0; j < k; ++j) {
    ELI_CHECK_KIND(kUnsupported, g[perm[j]] == j / gs, spec.name,
                   ": g_idx groups are not all of group_size ", gs, " columns");
    identity = identity && perm[j] == j;
  }
  if (identity) perm.clear();
  return perm;
}

}  // namespace

std::vector<float> read_f32(const TensorInfo& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  std::vector<float> out(static_cast<size_t>(n));
  if (n == 0) return out;
  if (t.dtype == DType::kF32 || t.dtype == DType::kF16 || t.dtype == DType::kBF16) {
    tensor_rows_to_f32(t, n, 0, 1, out.data());
  } else {
    ELI_THROW(kModelLoad, t.file, ": tensor ", t.name, " is ", dtype_name(t.dtype), ", expected a float tensor");
  }
  return out;
}

std::vector<int32_t> read_i32(const TensorInfo& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  std::vector<int32_t> out(static_cast<size_t>(n));
  if (t.dtype == DType::kI32) {
    std::memcpy(out.data(), t.data, static_cast<size_t>(n) * 4);
  } else if (t.dtype == DType::kI64) {
    for (int64_t i = 0; i < n; ++i) {
      int64_t v;
      std::memcpy(&v, t.data + 8 * i, 8);
      ELI_CHECK_KIND(kModelLoad, v >= INT32_MIN && v <= INT32_MAX, t.file, ": tensor ", t.name, " value ", v,
                     " out of range");
      out[i] = static_cast<int32_t>(v);
    }
  } else {
    ELI_THROW(kModelLoad, t.file, ": tensor ", t.name, " is ", dtype_name(t.dtype), ", expected int32");
  }
  return out;
}

LinearWeight build_wq(const LinearSpec& spec, const WeightReader& reader, WeightFormat format, int64_t group_size,
                      std::vector<WqPart> parts) {
  const int64_t k = spec.cols;
  const int64_t gs = grouped(format) ? (group_size > 0 ? group_size : k) : k;
  ELI_CHECK_KIND(kInternal, !parts.empty() && parts.size() == spec.parts.size(), spec.name, ": parts mismatch");
  ELI_CHECK_KIND(kUnsupported, k % gs == 0, spec.name, ": group size ", gs, " does not divide ", k, " input columns");
  if (format == WeightFormat::kInt4Grouped) {
    ELI_CHECK_KIND(kUnsupported, k % 32 == 0 && gs % 32 == 0, spec.name, ": eli's int4 layout needs the input size (",
                   k, ") and the group size (", gs, ") to be multiples of 32");
  }
  const int64_t groups = grouped(format) ? k / gs : 1;
  const std::vector<int32_t> perm = grouped(format) ? act_order_perm(spec, parts, k, gs) : std::vector<int32_t>{};
  LinearWeight w;
  w.name = spec.name;
  w.format = format;
  w.dtype = storage_dtype(format);
  w.rows = spec.rows();
  w.cols = k;
  w.group_size = grouped(format) ? gs : 0;
  const int64_t row_bytes = format == WeightFormat::kInt4Grouped ? k / 2 : k;
  w.data = Tensor::host(w.dtype, {w.rows, row_bytes});
  w.scales = Tensor::host(DType::kF32, {w.rows, groups});
  if (grouped(format)) w.zeros = Tensor::host(DType::kF32, {w.rows, groups});
  uint8_t* dst = w.data.ptr<uint8_t>();
  float* sc = w.scales.ptr<float>();
  float* zr = grouped(format) ? w.zeros.ptr<float>() : nullptr;
  std::vector<uint8_t> row(static_cast<size_t>(k));
  int64_t r0 = 0;
  for (size_t pi = 0; pi < parts.size(); ++pi) {
    const WqPart& p = parts[pi];
    ELI_CHECK_KIND(kInternal, p.rows == spec.parts[pi].rows && static_cast<int64_t>(p.q.size()) == p.rows * k &&
                                  static_cast<int64_t>(p.scales.size()) == p.rows * groups &&
                                  (!grouped(format) || static_cast<int64_t>(p.zeros.size()) == p.rows * groups),
                   spec.name, ": part ", pi, " has inconsistent sizes");
    if (format == WeightFormat::kFp8Channel) {  // kernels widen e4m3 without NaN handling
      for (uint8_t b : p.q) {
        ELI_CHECK_KIND(kModelLoad, (b & 0x7F) != 0x7F, spec.parts[pi].name, ": FP8 weight holds a NaN (e4m3 code ",
                       static_cast<int>(b), ")");
      }
    }
    for (int64_t r = 0; r < p.rows; ++r) {
      const uint8_t* src = p.q.data() + r * k;
      if (!perm.empty()) {
        for (int64_t j = 0; j < k; ++j) row[j] = src[perm[j]];
        src = row.data();
      }
      uint8_t* out = dst + (r0 + r) * row_bytes;
      if (format == WeightFormat::kInt4Grouped) {
        for (int64_t c = 0; c < k / 32; ++c) {
          for (int i = 0; i < 16; ++i) {
            out[16 * c + i] = static_cast<uint8_t>((src[32 * c + i] & 15) | ((src[32 * c + 16 + i] & 15) << 4));
          }
        }
      } else {
        std::memcpy(out, src, static_cast<size_t>(k));
      }
    }
    std::copy(p.scales.begin(), p.scales.end(), sc + r0 * groups);
    if (zr != nullptr) std::copy(p.zeros.begin(), p.zeros.end(), zr + r0 * groups);
    r0 += p.rows;
  }
  if (!perm.empty()) {
    w.perm = Tensor::host(DType::kI32, {k});
    std::copy(perm.begin(), perm.end(), w.perm.ptr<int32_t>());
  }
  if (spec.bias) {
    w.bias = Tensor::host(DType::kF32, {w.rows});
    float* b = w.bias.ptr<float>();
    for (const LinearPart& lp : spec.parts) {
      Tensor t = reader.vector(lp.name + ".bias", lp.rows);
      std::copy(t.ptr<float>(), t.ptr<float>() + lp.rows, b);
      b += lp.rows;
    }
  }
  return w;
}

WqMatrix wq_view(const LinearWeight& w) {
  WqMatrix m;
  m.q = w.ptr();
  m.scales = w.scales.ptr<const float>();
  const bool grouped_format = grouped(w.format);
  m.zeros = grouped_format && w.zeros.defined() ? w.zeros.ptr<const float>() : nullptr;
  // Channel formats keep a static input scale (one f32) in `zeros` (linear_wq.h).
  m.act_scale = !grouped_format && w.zeros.defined() ? w.zeros.ptr<const float>() : nullptr;
  m.group_size = w.group_size;
  m.format = w.format;
  m.perm = w.perm.defined() ? w.perm.ptr<const int32_t>() : nullptr;
  return m;
}

void WqLinearBase::repack(LinearWeight& w, const LinearLoadContext& ctx) const {
  // The CUDA kernels read the canonical layout as is (kernels/cuda/wq_w4a16.cuh); they need whole
  // 32-column tiles and groups.
  if (ctx.device == DeviceKind::kCUDA && grouped(w.format)) {
    ELI_CHECK_KIND(kUnsupported, w.cols % 32 == 0 && (w.group_size <= 0 || w.group_size % 32 == 0), w.name, ": ",
                   name(), " weights (", weight_format_name(w.format), ") need k (", w.cols, ") and the group size (",
                   w.group_size, ") to be multiples of 32 on cuda (run them on the CPU)");
  }
  for (Op op : {Op::kGemv, Op::kGemm}) {
    ELI_CHECK_KIND(kUnsupported, find_kernel(op, ctx.device, w.format, w.dtype) != nullptr, w.name, ": ", name(),
                   " weights (", weight_format_name(w.format), ") have no ", op_name(op), " kernel on ",
                   ctx.device == DeviceKind::kCUDA ? "cuda" : "cpu", " in this build (run them on the CPU)");
  }
}

// f32 everywhere. The CUDA GEMM reads bf16 rows, but asking the model for bf16 input rows is not
// safe here: the producer of an o_proj input is the attention kernel, whose f32-cache variant
// writes f32 whatever the request (a float32 model), and the method does not know the model's
// compute dtype. So the GEMM converts f32 rows to bf16 in its workspace (m * k, small beside the
// weight), and the norm prologue writes bf16 directly (NormCast). bf16 input rows are accepted too.
DType WqLinearBase::input_dtype(const LinearWeight&, int64_t, DeviceKind) const { return DType::kF32; }

void WqLinearBase::scratch_bytes(const LinearWeight& w, int64_t m, DeviceKind device, size_t* norm, size_t* mid,
                                 size_t* blas) const {
  *norm = static_cast<size_t>(m * w.cols) * sizeof(float);
  *mid = static_cast<size_t>(m * w.rows) * sizeof(float);
  // CUDA kernels' workspaces: the W8A8 kernels quantize x per token into theirs
  // (kernels/cuda/wq_w8a8.h); the grouped ones convert / gather x rows (kernels/cuda/wq_w4a16.cuh).
  const bool channel = w.format == WeightFormat::kInt8Channel || w.format == WeightFormat::kFp8Channel;
  *blas = channel && device == DeviceKind::kCUDA ? wq_w8a8_workspace_bytes(m, w.cols)
          : cuda_grouped(w, device)            ? cuda_grouped_workspace(w, m)
                                               : 0;
}

void WqLinearBase::apply(const LinearWeight& w, int64_t m, const LinearInput& in, const LinearOutput& out,
                         const LinearScratch& s, const ExecContext& ctx, DeviceKind device) const {
  ELI_CHECK_KIND(kInternal, w.format == WeightFormat::kInt4Grouped || w.format == WeightFormat::kInt8Grouped ||
                                w.format == WeightFormat::kInt8Channel || w.format == WeightFormat::kFp8Channel,
                 w.name, ": ", name(), " got a ", weight_format_name(w.format), " weight");
  const bool cuda_route = cuda_grouped(w, device);
  // The CUDA GEMM route also takes bf16 rows; everything else f32.
  const bool bf16_in = cuda_route && m > kGemvMaxRows && in.norm_weight == nullptr && in.dtype == DType::kBF16;
  // ... and a gated product's activation rows in the dtype the next product reads (bf16 on that route).
  const bool bf16_out =
      cuda_route && m > kGemvMaxRows && out.epilogue == LinearEpilogue::kGated && out.dtype == DType::kBF16;
  ELI_CHECK_KIND(kInternal, (in.dtype == DType::kF32 || bf16_in) && (out.dtype == DType::kF32 || bf16_out), w.name,
                 ": quantized products take and give float32 rows (bf16 rows on the CUDA GEMM route)");
  if (m == 0) return;
  const WqMatrix view = wq_view(w);
  const bool gated = out.epilogue == LinearEpilogue::kGated;
  if (cuda_route) {
    const size_t need = m <= kGemvMaxRows ? wq_cuda::gemv_workspace_bytes(m, w.cols)
                                          : wq_cuda::gemm_workspace_bytes(m, w.rows, w.cols, /*convert_x=*/true);
    ELI_CHECK_KIND(kInternal, s.blas != nullptr && s.blas_bytes >= need, w.name, ": CUDA workspace too small (",
                   s.blas_bytes, " < ", need, " bytes)");
  }
  if (m <= kGemvMaxRows) {
    GemvArgs a{};
    a.out = static_cast<float*>(out.out);
    a.x = static_cast<const float*>(in.x);
    a.w = &view;
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
    a.workspace = s.blas;
    a.workspace_bytes = s.blas_bytes;
    get_kernel(Op::kGemv, device, w.format, w.dtype).fn(&a, ctx);
    return;
  }
  const void* x = in.x;
  int64_t x_stride = in.stride;
  DType x_dtype = in.dtype;
  if (in.norm_weight != nullptr) {
    ELI_CHECK_KIND(kInternal, s.norm_bytes >= static_cast<size_t>(m * w.cols) * sizeof(float), w.name,
                   ": norm scratch too small");
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
    n.out_dtype = cuda_route ? DType::kBF16 : DType::kF32;  // the CUDA GEMM reads bf16 rows
    get_kernel(Op::kNormCast, device, DType::kF32).fn(&n, ctx);
    x = s.norm;
    x_stride = w.cols;
    x_dtype = n.out_dtype;
  }
  GemmArgs g{};
  g.x = x;
  g.w = &view;
  g.bias = w.bias_ptr();
  g.m = m;
  g.n = w.rows;
  g.k = w.cols;
  g.x_stride = x_stride;
  g.x_dtype = x_dtype;
  g.workspace = s.blas;
  g.workspace_bytes = s.blas_bytes;
  const KernelEntry& gemm = get_kernel(Op::kGemm, device, w.format, w.dtype);
  if (!gated) {
    g.out = out.out;
    g.out_stride = out.stride;
    g.out_dtype = DType::kF32;
    g.accumulate = out.epilogue == LinearEpilogue::kAccumulate;
    gemm.fn(&g, ctx);
    return;
  }
  ELI_CHECK_KIND(kInternal, s.mid_bytes >= static_cast<size_t>(m * w.rows) * sizeof(float), w.name,
                 ": gated scratch too small");
  g.out = s.mid;
  g.out_stride = w.rows;
  g.out_dtype = out.dtype;  // f32, or bf16 on the CUDA route when the activation is written in bf16
  gemm.fn(&g, ctx);
  GatedActArgs ga{out.out, s.mid, m, w.rows / 2, out.stride, w.rows, out.dtype, out.act};
  get_kernel(Op::kGatedAct, device, DType::kF32).fn(&ga, ctx);
}

}  // namespace eli

namespace eli {

bool wq_parts_quantized(const LinearSpec& spec, const WeightReader& reader, const char* suffix) {
  size_t have = 0;
  for (const LinearPart& p : spec.parts) {
    if (!reader.quant().ignored(p.name) && reader.find(p.name + suffix) != nullptr) ++have;
  }
  if (have == 0) return false;
  ELI_CHECK_KIND(kModelLoad, have == spec.parts.size(), reader.source()->path(), ": ", spec.name,
                 " merges quantized and unquantized parts (", have, " of ", spec.parts.size(), " have ", suffix, ")");
  return true;
}

void wq_check_shape(const WeightReader& reader, const TensorInfo& t, const std::vector<int64_t>& want) {
  reader.check_shape(t, want);
}

}  // namespace eli
