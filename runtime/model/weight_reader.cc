// runtime/model/weight_reader.cc: see weight_reader.h.
#include "runtime/model/weight_reader.h"

#include <cstring>
#include <sstream>
#include <utility>

#include "eli/error.h"
#include "kernels/ref/float_convert.h"
#include "kernels/registry.h"
#include "runtime/core/thread_pool.h"

namespace eli {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

// Undo llama.cpp's Q/K permutation: stored rows of each head are (half, pair) interleaved; HF
// order is (pair, half). Row i of a head in HF order = stored row (i % (hd/2)) * 2 + i / (hd/2).
int64_t permuted_source_row(int64_t r, int64_t hd) {
  const int64_t head = r / hd, i = r % hd, half = hd / 2;
  return head * hd + (i % half) * 2 + i / half;
}

struct Part {
  const TensorInfo* info;
  int64_t rows;
  int64_t permute_heads;  // > 0: un-permute with this many heads
  int64_t row_begin;      // first stored row taken (a shard)
  int64_t full_rows;      // rows of the stored tensor
};

Part part_of(const TensorInfo& t, const LinearPart& p) {
  return Part{&t, p.rows, p.permute_heads, p.row_begin, p.full_rows()};
}

int64_t row_bytes_of(DType dt, int64_t cols) {
  const DTypeInfo& info = dtype_info(dt);
  return cols / info.block_elems * info.block_bytes;
}

// The stored row holding row r (in HF order, counted from the part's first row) of part p.
int64_t source_row(const Part& p, int64_t r) {
  const int64_t hd = p.permute_heads > 0 ? p.full_rows / p.permute_heads : 0;
  return p.row_begin + (hd > 0 ? permuted_source_row(r, hd) : r);
}

// Writes rows [r0, r1) of part `p` in HF order (un-permuted if needed), columns [c0, c0 + cols) of
// its full_cols, converted to `want` (f32, bf16 or f16; or p's own dtype for a copy), to `dst`
// (where row r0 goes). One pass: a row in the wanted dtype is copied, any other is converted
// through a one-row f32 buffer. A copy of block-quantized rows takes whole blocks (checked).
void part_rows(const Part& p, int64_t c0, int64_t cols, int64_t full_cols, DType want, int64_t r0, int64_t r1,
               uint8_t* dst) {
  const TensorInfo& t = *p.info;
  const int64_t in_row = row_bytes_of(t.dtype, full_cols);
  const int64_t out_row = row_bytes_of(want, cols);
  const int64_t in_off = row_bytes_of(t.dtype, c0);  // whole blocks (checked by the caller)
  if (p.permute_heads == 0 && t.dtype == want && c0 == 0 && cols == full_cols) {
    std::memcpy(dst, t.data + (p.row_begin + r0) * in_row, static_cast<size_t>((r1 - r0) * in_row));
    return;
  }
  std::vector<float> tmp(t.dtype == want ? 0 : static_cast<size_t>(full_cols));
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t src = source_row(p, r);
    uint8_t* out = dst + (r - r0) * out_row;
    if (t.dtype == want) {
      std::memcpy(out, t.data + src * in_row + in_off, static_cast<size_t>(out_row));
      continue;
    }
    if (want == DType::kF32 && cols == full_cols) {  // the whole row: converted in place
      tensor_rows_to_f32(t, full_cols, src, src + 1, reinterpret_cast<float*>(out));
      continue;
    }
    tensor_rows_to_f32(t, full_cols, src, src + 1, tmp.data());
    const float* x = tmp.data() + c0;
    if (want == DType::kF32) {
      std::memcpy(out, x, static_cast<size_t>(cols) * sizeof(float));
    } else {
      uint16_t* o = reinterpret_cast<uint16_t*>(out);
      if (want == DType::kF16) {
        for (int64_t c = 0; c < cols; ++c) o[c] = f32_to_f16(x[c]);
      } else {
        for (int64_t c = 0; c < cols; ++c) o[c] = f32_to_bf16(x[c]);
      }
    }
  }
}

}  // namespace

void tensor_rows_to_f32(const TensorInfo& t, int64_t cols, int64_t r0, int64_t r1, float* dst) {
  const DTypeInfo& info = dtype_info(t.dtype);
  const int64_t row_bytes = row_bytes_of(t.dtype, cols);
  if (info.is_quantized) {
    const KernelEntry* k = find_kernel(Op::kDequant, DeviceKind::kCPU, WeightFormat::kGgufBlocks, t.dtype);
    ELI_CHECK_KIND(kUnsupported, k != nullptr, t.file, ": tensor ", t.name, " is stored as ", info.name,
                   ", which this build cannot dequantize");
    DequantArgs a{dst, t.data + r0 * row_bytes, r1 - r0, cols};
    k->fn(&a, ExecContext{});
    return;
  }
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* src = t.data + r * row_bytes;
    float* out = dst + (r - r0) * cols;
    switch (t.dtype) {
      case DType::kF32: std::memcpy(out, src, cols * sizeof(float)); break;
      case DType::kF16:
        for (int64_t c = 0; c < cols; ++c) {
          uint16_t h;
          std::memcpy(&h, src + 2 * c, 2);
          out[c] = f16_to_f32(h);
        }
        break;
      case DType::kBF16:
        for (int64_t c = 0; c < cols; ++c) {
          uint16_t h;
          std::memcpy(&h, src + 2 * c, 2);
          out[c] = bf16_to_f32(h);
        }
        break;
      default:
        ELI_THROW(kModelLoad, t.file, ": tensor ", t.name, " has dtype ", info.name, ", which cannot hold weights");
    }
  }
}

WeightReader::WeightReader(std::shared_ptr<WeightSource> source, std::function<std::string(const std::string&)> name_of)
    : source_(std::move(source)), name_of_(std::move(name_of)) {}

const TensorInfo* WeightReader::find(const std::string& canonical) const {
  const std::string n = name_of_ ? name_of_(canonical) : canonical;
  return n.empty() ? nullptr : source_->find(n);
}

const TensorInfo& WeightReader::need(const std::string& canonical) const {
  const TensorInfo* t = find(canonical);
  if (t == nullptr) {
    const std::string n = name_of_ ? name_of_(canonical) : canonical;
    ELI_THROW(kModelLoad, source_->path(), ": required tensor ", canonical,
              (n != canonical && !n.empty() ? " (" + n + " in this file)" : std::string()), " is missing");
  }
  return *t;
}

void WeightReader::check_shape(const TensorInfo& t, const std::vector<int64_t>& want) const {
  ELI_CHECK_KIND(kModelLoad, t.shape == want, t.file, ": tensor ", t.name, " has shape ", shape_str(t.shape),
                 " but the model config implies ", shape_str(want));
}

DType WeightReader::stored_dtype(const LinearSpec& spec) const {
  DType dt = DType::kF32;
  for (size_t i = 0; i < spec.parts.size(); ++i) {
    const TensorInfo& t = need(spec.parts[i].name + ".weight");
    check_shape(t, {spec.parts[i].full_rows(), spec.full_cols()});
    if (i == 0) {
      dt = t.dtype;
    } else if (t.dtype != dt) {
      return DType::kF32;
    }
  }
  return dt;
}

bool WeightReader::any_quantized(const LinearSpec& spec) const {
  for (const LinearPart& p : spec.parts) {
    const TensorInfo& t = need(p.name + ".weight");
    check_shape(t, {p.full_rows(), spec.full_cols()});
    if (dtype_info(t.dtype).is_quantized) return true;
  }
  return false;
}

Tensor WeightReader::vector(const std::string& canonical, int64_t n, bool required) const {
  const TensorInfo* t = required ? &need(canonical) : find(canonical);
  if (t == nullptr) return Tensor();
  check_shape(*t, {n});
  Tensor out = Tensor::host(DType::kF32, {n});
  tensor_rows_to_f32(*t, n, 0, 1, out.ptr<float>());
  return out;
}

Tensor WeightReader::bias_of(const LinearSpec& spec) const {
  if (!spec.bias) return Tensor();
  Tensor out = Tensor::host(DType::kF32, {spec.rows()});
  float* dst = out.ptr<float>();
  for (const LinearPart& lp : spec.parts) {
    Tensor b = vector(lp.name + ".bias", lp.full_rows());
    const float* src = b.ptr<float>();
    const Part p{nullptr, lp.rows, lp.permute_heads, lp.row_begin, lp.full_rows()};
    for (int64_t r = 0; r < lp.rows; ++r) dst[r] = src[source_row(p, r)];
    dst += lp.rows;
  }
  return out;
}

LinearWeight WeightReader::dense(const LinearSpec& spec, DType want, bool defer_merges, ThreadPool* pool) const {
  ELI_CHECK_KIND(kInternal, want == DType::kF32 || want == DType::kBF16 || want == DType::kF16,
                 "dense weights are float32, bfloat16 or float16, not ", dtype_name(want));
  std::vector<Part> parts;
  const int64_t full_cols = spec.full_cols();
  ELI_CHECK_KIND(kInternal, spec.col_begin >= 0 && spec.col_begin + spec.cols <= full_cols, spec.name,
                 ": column shard outside the tensor");
  for (const LinearPart& p : spec.parts) {
    const TensorInfo& t = need(p.name + ".weight");
    check_shape(t, {p.full_rows(), full_cols});
    ELI_CHECK_KIND(kInternal, p.row_begin >= 0 && p.row_begin + p.rows <= p.full_rows(), spec.name,
                   ": row shard outside the tensor");
    ELI_CHECK_KIND(kUnsupported, spec.col_begin == 0 || !dtype_info(t.dtype).is_quantized ||
                                     (spec.col_begin % dtype_info(t.dtype).block_elems == 0 &&
                                      spec.cols % dtype_info(t.dtype).block_elems == 0),
                   spec.name, ": a column shard of ", spec.cols, " at ", spec.col_begin, " does not cut ",
                   dtype_info(t.dtype).name, " blocks of ", dtype_info(t.dtype).block_elems,
                   " whole; choose a tensor_parallel_size that divides the width in whole blocks");
    parts.push_back(part_of(t, p));
  }
  LinearWeight w;
  w.shard = spec.shard;
  w.name = spec.name;
  w.format = WeightFormat::kDense;
  w.dtype = want;
  w.rows = spec.rows();
  w.cols = spec.cols;
  w.bias = bias_of(spec);
  const int64_t elem = dtype_info(want).block_bytes;
  const int64_t row_bytes = spec.cols * elem;
  const bool all_cols = spec.col_begin == 0 && spec.cols == full_cols;
  auto first_byte = [&](const Part& p) { return p.info->data + p.row_begin * row_bytes; };
  auto as_is = [&](const Part& p) {
    return all_cols && p.permute_heads == 0 && p.info->dtype == want &&
           reinterpret_cast<uintptr_t>(p.info->data) % elem == 0;
  };
  bool all_as_is = true, adjacent = true;
  for (size_t i = 0; i < parts.size(); ++i) {
    all_as_is = all_as_is && as_is(parts[i]);
    if (i > 0) {
      const Part& prev = parts[i - 1];
      adjacent = adjacent && parts[i].info->file == prev.info->file &&
                 first_byte(parts[i]) == first_byte(prev) + prev.rows * row_bytes;
    }
  }
  if (all_as_is && (adjacent || defer_merges)) {
    // One part, or parts stored back to back in the file: a zero-copy view (the source stays
    // alive through the owner). Otherwise, for a device load, the merge is left to the upload.
    TensorView v = make_view_2d(const_cast<uint8_t*>(first_byte(parts[0])), want, DeviceId{}, w.rows, w.cols);
    w.data = Tensor(v, std::static_pointer_cast<void>(source_));
    w.file_view = true;
    if (!adjacent) {
      for (const Part& p : parts) w.parts.push_back(WeightPart{first_byte(p), p.rows});
    }
    return w;
  }
  w.data = Tensor::host(want, {w.rows, w.cols});
  uint8_t* dst = w.data.ptr<uint8_t>();
  for (const Part& p : parts) {
    parallel_for(pool, p.rows, [&](int64_t a, int64_t b) {
      part_rows(p, spec.col_begin, spec.cols, full_cols, want, a, b, dst + a * row_bytes);
    }, 16);
    dst += p.rows * row_bytes;
  }
  return w;
}

LinearWeight WeightReader::blocks(const LinearSpec& spec, bool defer_merges) const {
  const DType dt = stored_dtype(spec);
  const DTypeInfo& info = dtype_info(dt);
  ELI_CHECK_KIND(kInternal, info.is_quantized, spec.name, ": blocks() needs parts of one GGUF block type");
  ELI_CHECK_KIND(kModelLoad, spec.full_cols() % info.block_elems == 0, spec.name, ": ", spec.full_cols(),
                 " columns are not whole ", info.name, " blocks of ", info.block_elems);
  // A column shard keeps whole blocks (tensor parallelism shards quantized rows by blocks).
  ELI_CHECK_KIND(kUnsupported, spec.col_begin % info.block_elems == 0 && spec.cols % info.block_elems == 0, spec.name,
                 ": a column shard of ", spec.cols, " at ", spec.col_begin, " does not cut ", info.name,
                 " blocks of ", info.block_elems, " whole; choose a tensor_parallel_size that divides the width in "
                 "whole blocks");
  LinearWeight w;
  w.name = spec.name;
  w.format = WeightFormat::kGgufBlocks;
  w.dtype = dt;
  w.rows = spec.rows();
  w.cols = spec.cols;
  w.shard = spec.shard;
  w.bias = bias_of(spec);
  const int64_t full_cols = spec.full_cols();
  const int64_t row_bytes = row_bytes_of(dt, spec.cols);
  const bool all_cols = spec.col_begin == 0 && spec.cols == full_cols;
  auto first_byte = [&](const Part& p) { return p.info->data + p.row_begin * row_bytes; };
  std::vector<Part> parts;
  bool plain = all_cols, adjacent = true;
  for (const LinearPart& p : spec.parts) {
    const TensorInfo& t = need(p.name + ".weight");
    ELI_CHECK_KIND(kInternal, p.row_begin >= 0 && p.row_begin + p.rows <= p.full_rows(), spec.name,
                   ": row shard outside the tensor");
    const Part part = part_of(t, p);
    if (!parts.empty()) {
      adjacent = adjacent && t.file == parts.back().info->file &&
                 first_byte(part) == first_byte(parts.back()) + parts.back().rows * row_bytes;
    }
    parts.push_back(part);
    plain = plain && p.permute_heads == 0;
  }
  if (plain && (adjacent || defer_merges)) {
    TensorView v = make_view_2d(const_cast<uint8_t*>(first_byte(parts[0])), dt, DeviceId{}, w.rows, w.cols);
    w.data = Tensor(v, std::static_pointer_cast<void>(source_));
    w.file_view = true;
    if (!adjacent) {
      for (const Part& p : parts) w.parts.push_back(WeightPart{first_byte(p), p.rows});
    }
    return w;
  }
  w.data = Tensor::host(dt, {w.rows, w.cols});
  uint8_t* dst = w.data.ptr<uint8_t>();
  for (const Part& p : parts) {
    part_rows(p, spec.col_begin, spec.cols, full_cols, dt, 0, p.rows, dst);  // block rows: copied, un-permuted
    dst += p.rows * row_bytes;
  }
  return w;
}

LinearWeight WeightReader::block_segments(const LinearSpec& spec) const {
  LinearWeight w;
  w.name = spec.name;
  w.format = WeightFormat::kGgufBlocks;
  w.rows = spec.rows();
  w.cols = spec.cols;
  w.shard = spec.shard;
  w.bias = bias_of(spec);
  const int64_t full_cols = spec.full_cols();
  const bool all_cols = spec.col_begin == 0 && spec.cols == full_cols;
  std::vector<Part> parts;
  bool plain = all_cols, adjacent = true;
  uint64_t total = 0;
  int64_t row0 = 0;
  for (const LinearPart& p : spec.parts) {
    const TensorInfo& t = need(p.name + ".weight");
    const DTypeInfo& info = dtype_info(t.dtype);
    ELI_CHECK_KIND(kInternal, info.is_quantized, spec.name, ": block_segments() needs GGUF block parts, ", t.name,
                   " is ", info.name);
    ELI_CHECK_KIND(kModelLoad, full_cols % info.block_elems == 0, spec.name, ": ", full_cols,
                   " columns are not whole ", info.name, " blocks of ", info.block_elems);
    // A column shard keeps whole blocks (tensor parallelism shards quantized rows by blocks).
    ELI_CHECK_KIND(kUnsupported, spec.col_begin % info.block_elems == 0 && spec.cols % info.block_elems == 0,
                   spec.name, ": a column shard of ", spec.cols, " at ", spec.col_begin, " does not cut ", info.name,
                   " blocks of ", info.block_elems, " whole; choose a tensor_parallel_size that divides the width in "
                   "whole blocks");
    ELI_CHECK_KIND(kInternal, p.row_begin >= 0 && p.row_begin + p.rows <= p.full_rows(), spec.name,
                   ": row shard outside the tensor");
    const Part part = part_of(t, p);
    const uint8_t* first = t.data + p.row_begin * row_bytes_of(t.dtype, full_cols);
    if (!parts.empty()) {
      const Part& prev = parts.back();
      const uint8_t* prev_first = prev.info->data + prev.row_begin * row_bytes_of(prev.info->dtype, full_cols);
      adjacent = adjacent && t.file == prev.info->file &&
                 first == prev_first + prev.rows * row_bytes_of(prev.info->dtype, full_cols);
    }
    parts.push_back(part);
    plain = plain && p.permute_heads == 0;
    if (!w.segments.empty() && w.segments.back().dtype == t.dtype) {
      w.segments.back().rows += p.rows;
    } else {
      w.segments.push_back(WeightSegment{t.dtype, row0, p.rows, total});
    }
    row0 += p.rows;
    total += static_cast<uint64_t>(p.rows * row_bytes_of(t.dtype, spec.cols));
  }
  w.dtype = w.segments.front().dtype;
  if (plain && adjacent) {
    const Part& p0 = parts[0];
    uint8_t* first = const_cast<uint8_t*>(p0.info->data + p0.row_begin * row_bytes_of(p0.info->dtype, full_cols));
    TensorView v = make_view_2d(first, DType::kU8, DeviceId{}, 1, static_cast<int64_t>(total));
    w.data = Tensor(v, std::static_pointer_cast<void>(source_));
    w.file_view = true;
    return w;
  }
  w.data = Tensor::host(DType::kU8, {static_cast<int64_t>(total)});
  uint8_t* dst = w.data.ptr<uint8_t>();
  for (const Part& p : parts) {
    // Block rows: copied (whole blocks of the column shard), un-permuted.
    part_rows(p, spec.col_begin, spec.cols, full_cols, p.info->dtype, 0, p.rows, dst);
    dst += p.rows * row_bytes_of(p.info->dtype, spec.cols);
  }
  return w;
}

}  // namespace eli
