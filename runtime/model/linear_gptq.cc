// runtime/model/linear_gptq.cc: the "gptq" LinearMethod: AutoGPTQ / GPTQModel's layout (4 or 8
// bits), read and repacked once into eli's kInt4Grouped / kInt8Grouped layout (kernels/wq_matrix.h).
//
// Published tensors of a linear (out n, in k, group g, b bits, p = 32 / b values per int32):
//   qweight  int32 [k/p, n]    value j of word (r, o) (bits b*j..) is input row p*r + j
//   qzeros   int32 [k/g, n/p]  value j of word (h, c) is the zero point of column p*c + j
//   scales   f16   [k/g, n]
//   g_idx    int32 [k]         group of each input row (act-order, desc_act); absent: row / g
// w[o, i] = (q[i, o] - z[g_idx[i], o]) * s[g_idx[i], o], where z is the stored zero + 1 for
// checkpoint_format "gptq" (v1 exporters store z - 1, so v1 cannot hold z = 0: that is what
// "gptq_v2" fixed) and the stored zero for "gptq_v2". Act-order
// is resolved at load (build_wq sorts the inputs by group; kernels never see g_idx).
#include <cstring>

#include "eli/error.h"
#include "runtime/model/linear_wq.h"
#include "runtime/model/weight_reader.h"

namespace eli {
namespace {

uint32_t word(const TensorInfo& t, int64_t i) {
  uint32_t v;
  std::memcpy(&v, t.data + 4 * i, 4);
  return v;
}

class GptqLinear final : public WqLinearBase {
 public:
  const char* name() const override { return "gptq"; }

  bool accepts(const LinearSpec& spec, const WeightReader& reader, DeviceKind) const override {
    return reader.quant().method == QuantMethod::kGptq && wq_parts_quantized(spec, reader, ".qweight");
  }

  LinearWeight load(const LinearSpec& spec, const WeightReader& reader, const LinearLoadContext&) const override {
    const QuantConfig& qc = reader.quant();
    const int bits = qc.bits;
    const int64_t pack = 32 / bits;
    const uint32_t mask = (1u << bits) - 1;
    const int64_t k = spec.cols;
    const int64_t gs = qc.group_size > 0 ? qc.group_size : k;
    ELI_CHECK_KIND(kModelLoad, k % gs == 0 && k % pack == 0, spec.name, ": GPTQ group_size ", gs, " / packing ", pack,
                   " does not divide ", k, " inputs");
    const int64_t groups = k / gs;
    std::vector<WqPart> parts;
    for (const LinearPart& lp : spec.parts) {
      const int64_t n = lp.rows;
      ELI_CHECK_KIND(kModelLoad, n % pack == 0, lp.name, ": GPTQ needs out_features divisible by ", pack, ", got ", n);
      const TensorInfo& qw = reader.need(lp.name + ".qweight");
      const TensorInfo& qz = reader.need(lp.name + ".qzeros");
      const TensorInfo& sc = reader.need(lp.name + ".scales");
      ELI_CHECK_KIND(kModelLoad, qw.dtype == DType::kI32 && qz.dtype == DType::kI32, lp.name,
                     ": GPTQ qweight / qzeros must be int32");
      wq_check_shape(reader, qw, {k / pack, n});
      wq_check_shape(reader, qz, {groups, n / pack});
      wq_check_shape(reader, sc, {groups, n});
      WqPart p;
      p.rows = n;
      p.q.resize(static_cast<size_t>(n * k));
      for (int64_t r = 0; r < k / pack; ++r) {
        for (int64_t o = 0; o < n; ++o) {
          const uint32_t v = word(qw, r * n + o);
          for (int64_t j = 0; j < pack; ++j) p.q[o * k + pack * r + j] = static_cast<uint8_t>((v >> (bits * j)) & mask);
        }
      }
      p.zeros.resize(static_cast<size_t>(n * groups));
      for (int64_t g = 0; g < groups; ++g) {
        for (int64_t c = 0; c < n / pack; ++c) {
          const uint32_t v = word(qz, g * (n / pack) + c);
          for (int64_t j = 0; j < pack; ++j) {
            const uint32_t z = (v >> (bits * j)) & mask;
            p.zeros[(pack * c + j) * groups + g] = static_cast<float>(z + (qc.gptq_v1_zeros ? 1 : 0));
          }
        }
      }
      const std::vector<float> s = read_f32(sc);
      p.scales.resize(static_cast<size_t>(n * groups));
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t o = 0; o < n; ++o) p.scales[o * groups + g] = s[g * n + o];
      if (const TensorInfo* gi = reader.find(lp.name + ".g_idx")) {
        wq_check_shape(reader, *gi, {k});
        p.g_idx = read_i32(*gi);
      } else {
        ELI_CHECK_KIND(kModelLoad, !qc.act_order, lp.name, ": desc_act is set but ", lp.name, ".g_idx is missing");
      }
      parts.push_back(std::move(p));
    }
    // A g_idx equal to row / g (exports write it even without act-order) is no permutation; for
    // per-channel checkpoints every entry is 0.
    return build_wq(spec, reader, bits == 4 ? WeightFormat::kInt4Grouped : WeightFormat::kInt8Grouped, gs,
                    std::move(parts));
  }
};

}  // namespace

const LinearMethod& gptq_linear_method() {
  static const GptqLinear kMethod;
  return kMethod;
}

}  // namespace eli
