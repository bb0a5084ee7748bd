// runtime/model/linear_compressed.cc: the "compressed-tensors" LinearMethod (llm-compressor
// checkpoints), read and repacked once into eli's layouts (kernels/wq_matrix.h).
//
// Published tensors of a linear (out n, in k):
//   W4A16 / W8A16 (pack-quantized, symmetric): weight_packed int32 [n, k / p] (p = 32 / bits values
//     per word along k, lowest bits first, stored as q + 2^(bits-1)), weight_scale [n, k / g] (or
//     [n, 1] per channel), weight_shape [2] = (n, k), weight_g_idx [k] with actorder "group".
//     w = (stored - 2^(bits-1)) * s  ->  kInt4Grouped / kInt8Grouped with zero 2^(bits-1).
//   FP8 W8A8 (float-quantized): weight e4m3 [n, k], weight_scale [n, 1] (channel) or [1] / []
//     (tensor: broadcast to the part's rows), input_scale [1] / [] when activations are static
//     (merged parts: their largest, as their activations are one tensor)  ->  kFp8Channel.
//   INT8 W8A8 (int-quantized): weight int8 [n, k], weight_scale [n, 1]  ->  kInt8Channel.
// Modules on the config's ignore list (lm_head, ...) keep a plain .weight and go to the dense method.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "eli/error.h"
#include "runtime/model/linear_wq.h"
#include "runtime/model/weight_reader.h"

namespace eli {
namespace {

int64_t numel(const TensorInfo& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  return n;
}

class CompressedLinear final : public WqLinearBase {
 public:
  const char* name() const override { return "compressed-tensors"; }

  bool accepts(const LinearSpec& spec, const WeightReader& reader, DeviceKind) const override {
    const QuantConfig& qc = reader.quant();
    if (qc.method != QuantMethod::kCompressedTensors) return false;
    const bool packed = qc.scheme == QuantScheme::kW4A16 || qc.scheme == QuantScheme::kW8A16;
    return wq_parts_quantized(spec, reader, packed ? ".weight_packed" : ".weight_scale");
  }

  LinearWeight load(const LinearSpec& spec, const WeightReader& reader, const LinearLoadContext&) const override {
    const QuantConfig& qc = reader.quant();
    if (qc.scheme == QuantScheme::kW4A16 || qc.scheme == QuantScheme::kW8A16) return load_packed(spec, reader, qc);
    return load_w8a8(spec, reader, qc);
  }

 private:
  static LinearWeight load_packed(const LinearSpec& spec, const WeightReader& reader, const QuantConfig& qc) {
    const int bits = qc.bits;
    const int64_t pack = 32 / bits, k = spec.cols;
    const uint32_t mask = (1u << bits) - 1;
    const int64_t gs = qc.group_size > 0 ? qc.group_size : k;
    ELI_CHECK_KIND(kModelLoad, k % gs == 0 && k % pack == 0, spec.name, ": group size ", gs, " / packing ", pack,
                   " does not divide ", k, " inputs");
    ELI_CHECK_KIND(kUnsupported, qc.symmetric, spec.name,
                   ": asymmetric pack-quantized compressed-tensors weights (zero points) are not supported");
    const int64_t groups = k / gs;
    std::vector<WqPart> parts;
    for (const LinearPart& lp : spec.parts) {
      const int64_t n = lp.rows;
      const TensorInfo& qw = reader.need(lp.name + ".weight_packed");
      const TensorInfo& sc = reader.need(lp.name + ".weight_scale");
      ELI_CHECK_KIND(kModelLoad, qw.dtype == DType::kI32, lp.name, ": weight_packed must be int32");
      wq_check_shape(reader, qw, {n, k / pack});
      wq_check_shape(reader, sc, {n, groups});
      if (const TensorInfo* ws = reader.find(lp.name + ".weight_shape")) {
        const std::vector<int32_t> shape = read_i32(*ws);
        ELI_CHECK_KIND(kModelLoad, shape.size() == 2 && shape[0] == n && shape[1] == k, ws->file, ": ", ws->name,
                       " does not say (", n, ", ", k, ")");
      }
      WqPart p;
      p.rows = n;
      p.q.resize(static_cast<size_t>(n * k));
      for (int64_t o = 0; o < n; ++o) {
        for (int64_t c = 0; c < k / pack; ++c) {
          uint32_t v;
          std::memcpy(&v, qw.data + 4 * (o * (k / pack) + c), 4);
          for (int64_t j = 0; j < pack; ++j) p.q[o * k + pack * c + j] = static_cast<uint8_t>((v >> (bits * j)) & mask);
        }
      }
      p.scales = read_f32(sc);
      p.zeros.assign(static_cast<size_t>(n * groups), static_cast<float>(1 << (bits - 1)));
      if (const TensorInfo* gi = reader.find(lp.name + ".weight_g_idx")) {
        wq_check_shape(reader, *gi, {k});
        p.g_idx = read_i32(*gi);
      } else {
        ELI_CHECK_KIND(kModelLoad, !qc.act_order, lp.name, ": actorder is \"group\" but ", lp.name,
                       ".weight_g_idx is missing");
      }
      parts.push_back(std::move(p));
    }
    return build_wq(spec, reader, bits == 4 ? WeightFormat::kInt4Grouped : WeightFormat::kInt8Grouped, gs,
                    std::move(parts));
  }

  static LinearWeight load_w8a8(const LinearSpec& spec, const WeightReader& reader, const QuantConfig& qc) {
    const bool fp8 = qc.scheme == QuantScheme::kW8A8Fp8;
    const int64_t k = spec.cols;
    std::vector<WqPart> parts;
    float input_scale = 0.0f;
    for (const LinearPart& lp : spec.parts) {
      const int64_t n = lp.rows;
      const TensorInfo& qw = reader.need(lp.name + ".weight");
      const TensorInfo& sc = reader.need(lp.name + ".weight_scale");
      ELI_CHECK_KIND(kModelLoad, qw.dtype == (fp8 ? DType::kF8E4M3 : DType::kI8), qw.file, ": tensor ", qw.name,
                     " is ", dtype_name(qw.dtype), ", the ", quant_scheme_name(qc.scheme), " scheme stores ",
                     fp8 ? "F8_E4M3" : "I8");
      reader.check_shape(qw, {n, k});
      const int64_t ns = numel(sc);
      ELI_CHECK_KIND(kModelLoad, ns == n || ns == 1, sc.file, ": tensor ", sc.name, " has ", ns,
                     " values; expected one per output channel (", n, ") or one per tensor");
      ELI_CHECK_KIND(kUnsupported, fp8 || ns == n, sc.name, ": INT8 W8A8 needs per-channel weight scales");
      WqPart p;
      p.rows = n;
      p.q.assign(qw.data, qw.data + n * k);
      const std::vector<float> s = read_f32(sc);
      p.scales = ns == n ? s : std::vector<float>(static_cast<size_t>(n), s[0]);
      if (qc.static_input_scale) {
        const TensorInfo& is = reader.need(lp.name + ".input_scale");
        ELI_CHECK_KIND(kModelLoad, numel(is) == 1, is.file, ": tensor ", is.name, " must hold one value");
        const float v = read_f32(is)[0];
        ELI_CHECK_KIND(kModelLoad, v > 0.0f && std::isfinite(v), is.file, ": tensor ", is.name, " = ", v,
                       " is not a positive scale");
        input_scale = std::max(input_scale, v);
      }
      parts.push_back(std::move(p));
    }
    LinearWeight w = build_wq(spec, reader, fp8 ? WeightFormat::kFp8Channel : WeightFormat::kInt8Channel, 0,
                              std::move(parts));
    if (input_scale > 0.0f) {
      w.zeros = Tensor::host(DType::kF32, {1});
      *w.zeros.ptr<float>() = input_scale;
    }
    return w;
  }
};

}  // namespace

const LinearMethod& compressed_linear_method() {
  static const CompressedLinear kMethod;
  return kMethod;
}

}  // namespace eli
