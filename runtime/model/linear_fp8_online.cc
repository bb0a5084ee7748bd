// runtime/model/linear_fp8_online.cc: the "fp8-online" LinearMethod: quantization="fp8" on a 16/32-bit
// checkpoint quantizes each linear (except lm_head) at load to e4m3 with one scale per output
// channel (max|w| / 448, round to nearest even), as vLLM's online FP8; activations are quantized
// per token at run time (kFp8Channel, kernels/wq_matrix.h).
#include <cmath>

#include "eli/error.h"
#include "kernels/ref/fp8.h"
#include "runtime/core/thread_pool.h"
#include "runtime/model/linear_wq.h"
#include "runtime/model/weight_reader.h"

namespace eli {
namespace {

class Fp8OnlineLinear final : public WqLinearBase {
 public:
  const char* name() const override { return "fp8-online"; }

  bool accepts(const LinearSpec& spec, const WeightReader& reader, DeviceKind) const override {
    if (reader.quant().method != QuantMethod::kFp8Online) return false;
    for (const LinearPart& p : spec.parts) {
      if (reader.quant().ignored(p.name)) return false;
    }
    return !reader.any_quantized(spec);
  }

  LinearWeight load(const LinearSpec& spec, const WeightReader& reader, const LinearLoadContext& ctx) const override {
    const int64_t k = spec.cols;
    std::vector<WqPart> parts;
    for (const LinearPart& lp : spec.parts) {
      LinearSpec one;
      one.name = lp.name;
      one.parts = {lp};
      one.cols = k;
      const LinearWeight dense = reader.dense(one, DType::kF32, false, ctx.pool);
      const Tensor rows = dense.contiguous_host();
      const float* src = rows.ptr<const float>();
      WqPart p;
      p.rows = lp.rows;
      p.q.resize(static_cast<size_t>(lp.rows * k));
      p.scales.resize(static_cast<size_t>(lp.rows));
      parallel_for(ctx.pool, lp.rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* w = src + r * k;
          float amax = 0.0f;
          for (int64_t j = 0; j < k; ++j) amax = std::fmax(amax, std::fabs(w[j]));
          const float s = amax > 0.0f ? amax / 448.0f : 1.0f;
          p.scales[r] = s;
          for (int64_t j = 0; j < k; ++j) p.q[r * k + j] = f32_to_fp8_e4m3(w[j] / s);
        }
      }, 16);
      parts.push_back(std::move(p));
    }
    return build_wq(spec, reader, WeightFormat::kFp8Channel, 0, std::move(parts));
  }
};

}  // namespace

const LinearMethod& fp8_online_linear_method() {
  static const Fp8OnlineLinear kMethod;
  return kMethod;
}

}  // namespace eli
