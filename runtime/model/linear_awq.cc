// runtime/model/linear_awq.cc: the "awq" LinearMethod: AutoAWQ's GEMM layout, read and repacked
// once into eli's kInt4Grouped layout (kernels/wq_matrix.h).
//
// Published tensors of a linear (out n, in k, group g; one group of k for group_size -1):
//   qweight  int32 [k, n/8]    eight 4-bit values per int32, nibble i (bits 4i..4i+3) holding
//                              column 8c + kOrder[i] (AWQ's interleaved order 0 2 4 6 1 3 5 7)
//   qzeros   int32 [k/g, n/8]  zero points, packed the same way
//   scales   f16   [k/g, n]
// and w[o, i] = (q[i, o] - z[i / g, o]) * s[i / g, o]. Layers the config leaves unconverted
// (modules_to_not_convert, usually lm_head) carry a plain .weight and go to the dense method.
#include <cstring>

#include "eli/error.h"
#include "runtime/model/linear_wq.h"
#include "runtime/model/weight_reader.h"

namespace eli {
namespace {

constexpr int kOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

uint32_t word(const TensorInfo& t, int64_t i) {
  uint32_t v;
  std::memcpy(&v, t.data + 4 * i, 4);
  return v;
}

class AwqLinear final : public WqLinearBase {
 public:
  const char* name() const override { return "awq"; }

  bool accepts(const LinearSpec& spec, const WeightReader& reader, DeviceKind) const override {
    return reader.quant().method == QuantMethod::kAwq && wq_parts_quantized(spec, reader, ".qweight");
  }

  LinearWeight load(const LinearSpec& spec, const WeightReader& reader, const LinearLoadContext&) const override {
    const int64_t k = spec.cols;
    const int64_t gs = reader.quant().group_size > 0 ? reader.quant().group_size : k;
    ELI_CHECK_KIND(kModelLoad, k % gs == 0, spec.name, ": AWQ group_size ", gs, " does not divide ", k, " inputs");
    const int64_t groups = k / gs;
    std::vector<WqPart> parts;
    for (const LinearPart& lp : spec.parts) {
      const int64_t n = lp.rows;
      ELI_CHECK_KIND(kModelLoad, n % 8 == 0, lp.name, ": AWQ needs out_features divisible by 8, got ", n);
      const TensorInfo& qw = reader.need(lp.name + ".qweight");
      const TensorInfo& qz = reader.need(lp.name + ".qzeros");
      const TensorInfo& sc = reader.need(lp.name + ".scales");
      ELI_CHECK_KIND(kModelLoad, qw.dtype == DType::kI32 && qz.dtype == DType::kI32, lp.name,
                     ": AWQ qweight / qzeros must be int32");
      wq_check_shape(reader, qw, {k, n / 8});
      wq_check_shape(reader, qz, {groups, n / 8});
      wq_check_shape(reader, sc, {groups, n});
      WqPart p;
      p.rows = n;
      p.q.resize(static_cast<size_t>(n * k));
      for (int64_t i = 0; i < k; ++i) {
        for (int64_t c = 0; c < n / 8; ++c) {
          const uint32_t v = word(qw, i * (n / 8) + c);
          for (int j = 0; j < 8; ++j) p.q[(8 * c + kOrder[j]) * k + i] = static_cast<uint8_t>((v >> (4 * j)) & 15);
        }
      }
      p.zeros.resize(static_cast<size_t>(n * groups));
      for (int64_t g = 0; g < groups; ++g) {
        for (int64_t c = 0; c < n / 8; ++c) {
          const uint32_t v = word(qz, g * (n / 8) + c);
          for (int j = 0; j < 8; ++j) p.zeros[(8 * c + kOrder[j]) * groups + g] = static_cast<float>((v >> (4 * j)) & 15);
        }
      }
      const std::vector<float> s = read_f32(sc);
      p.scales.resize(static_cast<size_t>(n * groups));
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t o = 0; o < n; ++o) p.scales[o * groups + g] = s[g * n + o];
      parts.push_back(std::move(p));
    }
    return build_wq(spec, reader, WeightFormat::kInt4Grouped, gs, std::move(parts));
  }
};

}  // namespace

const LinearMethod& awq_linear_method() {
  static const AwqLinear kMethod;
  return kMethod;
}

}  // namespace eli
