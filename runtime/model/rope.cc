// runtime/model/rope.cc: see rope.h. Frequencies are computed in double and stored as float; HF
// computes them in float32, so the two agree to float rounding. GGUF freq_divisors (rope_freqs)
// are applied last, to every scaling type.
#include "runtime/model/rope.h"

#include <algorithm>
#include <cmath>

#include "eli/error.h"

namespace eli {

int64_t rope_rot_dim(const ModelSpec& spec) {
  int64_t d = static_cast<int64_t>(static_cast<double>(spec.head_dim) * spec.rope.partial_rotary_factor);
  return d - (d % 2);
}

bool rope_is_dynamic(const ModelSpec& spec) {
  return spec.rope.scaling == RopeScaling::kDynamic || spec.rope.scaling == RopeScaling::kLongRope;
}

static std::vector<double> base_inv_freq(double theta, int64_t dim) {
  std::vector<double> f(static_cast<size_t>(dim / 2));
  // HF: 1 / base ** (arange(0, dim, 2) / dim), the exponent in float32.
  for (int64_t i = 0; i < dim / 2; ++i) {
    float expo = static_cast<float>(2 * i) / static_cast<float>(dim);
    f[static_cast<size_t>(i)] = 1.0 / static_cast<float>(std::pow(theta, static_cast<double>(expo)));
  }
  return f;
}

RopeTable compute_rope_table(const ModelSpec& spec, int64_t seq_len) {
  const RopeSpec& r = spec.rope;
  const int64_t dim = rope_rot_dim(spec);
  ELI_CHECK(dim >= 2, "rotary dimension ", dim, " too small");
  const int64_t orig_max = r.original_max_position > 0 ? r.original_max_position : spec.max_position;
  RopeTable table;
  std::vector<double> inv;
  switch (r.scaling) {
    case RopeScaling::kNone:
      inv = base_inv_freq(r.theta, dim);
      break;
    case RopeScaling::kLinear:
      inv = base_inv_freq(r.theta, dim);
      for (double& f : inv) f /= r.factor;
      break;
    case RopeScaling::kDynamic: {
      // HF uses max_position_embeddings as the reference length and never scales below it.
      const double ref = static_cast<double>(spec.max_position);
      const double len = std::max<double>(static_cast<double>(seq_len), ref);
      double base = r.theta * std::pow(r.factor * len / ref - (r.factor - 1.0),
                                       static_cast<double>(dim) / static_cast<double>(dim - 2));
      inv = base_inv_freq(base, dim);
      break;
    }
    case RopeScaling::kLlama3: {
      inv = base_inv_freq(r.theta, dim);
      const double low_wavelen = static_cast<double>(orig_max) / r.low_freq_factor;
      const double high_wavelen = static_cast<double>(orig_max) / r.high_freq_factor;
      for (double& f : inv) {
        const double wavelen = 2.0 * M_PI / f;
        if (wavelen > low_wavelen) {
          f = f / r.factor;
        } else if (wavelen >= high_wavelen) {  // medium band: smooth interpolation
          const double smooth = (static_cast<double>(orig_max) / wavelen - r.low_freq_factor) /
                                (r.high_freq_factor - r.low_freq_factor);
          f = (1.0 - smooth) * f / r.factor + smooth * f;
        }
      }
      break;
    }
    case RopeScaling::kYarn: {
      std::vector<double> extra = base_inv_freq(r.theta, dim);
      auto correction_dim = [&](double rotations) {
        return static_cast<double>(dim) * std::log(static_cast<double>(orig_max) / (rotations * 2.0 * M_PI)) /
               (2.0 * std::log(r.theta));
      };
      double low = correction_dim(r.beta_fast), high = correction_dim(r.beta_slow);
      if (r.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, static_cast<double>(dim - 1));
      if (low == high) high += 0.001;
      inv.resize(extra.size());
      for (size_t i = 0; i < extra.size(); ++i) {
        double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
        double extrapolation_factor = 1.0 - ramp;
        double interp = extra[i] / r.factor;
        inv[i] = interp * (1.0 - extrapolation_factor) + extra[i] * extrapolation_factor;
      }
      double att = r.attention_factor;
      if (att <= 0.0) att = r.factor <= 1.0 ? 1.0 : 0.1 * std::log(r.factor) + 1.0;
      table.attention_scaling = static_cast<float>(att);
      break;
    }
    case RopeScaling::kLongRope: {
      // HF _compute_longrope_parameters: the short factors up to original_max_position, the long
      // ones beyond (seq_len = last position + 1); the attention factor does not depend on seq_len.
      const bool use_long = seq_len > orig_max;
      const std::vector<float>& ext = use_long ? r.long_factors : r.short_factors;
      inv = base_inv_freq(r.theta, dim);
      ELI_CHECK_KIND(kModelLoad, ext.size() == inv.size(), "longrope ", use_long ? "long" : "short", "_factor has ",
                     ext.size(), " values, rotary dimension ", dim, " needs ", inv.size());
      for (size_t i = 0; i < inv.size(); ++i) {
        ELI_CHECK_KIND(kModelLoad, std::isfinite(ext[i]) && ext[i] > 0.0f, "longrope factor [", i, "] = ", ext[i],
                       " must be finite and > 0");
        inv[i] /= static_cast<double>(ext[i]);
      }
      double att = r.attention_factor;
      if (att <= 0.0) {
        att = r.factor <= 1.0 ? 1.0
                              : std::sqrt(1.0 + std::log(r.factor) / std::log(static_cast<double>(orig_max)));
      }
      table.attention_scaling = static_cast<float>(att);
      break;
    }
  }
  // GGUF rope_freqs (llama.cpp semantics): divide each pair's frequency, whatever the scaling.
  if (!r.freq_divisors.empty()) {
    ELI_CHECK_KIND(kModelLoad, r.freq_divisors.size() == inv.size(), "rope freq_divisors has ",
                   r.freq_divisors.size(), " values, rotary dimension ", dim, " needs ", inv.size());
    for (size_t i = 0; i < inv.size(); ++i) {
      const float d = r.freq_divisors[i];
      ELI_CHECK_KIND(kModelLoad, std::isfinite(d) && d > 0.0f, "rope freq_divisors[", i, "] = ", d,
                     " must be finite and > 0");
      inv[i] /= static_cast<double>(d);
    }
  }
  table.inv_freq.assign(inv.begin(), inv.end());
  return table;
}

}  // namespace eli
