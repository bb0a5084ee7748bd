// runtime/quantize/channel_quant.cc: see channel_quant.h.
#include "runtime/quantize/channel_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "eli/error.h"
#include "kernels/ref/fp8.h"

namespace eli {

ChannelQuantResult quantize_channel(const float* w, int64_t n, int64_t k, const char* kind) {
  const bool fp8 = std::strcmp(kind, "fp8") == 0;
  ELI_CHECK_ARG(fp8 || std::strcmp(kind, "int8") == 0, "channel quantization kind must be int8 or fp8, got ", kind);
  ChannelQuantResult r;
  r.codes.resize(static_cast<size_t>(n * k));
  r.scales.resize(static_cast<size_t>(n));
  for (int64_t row = 0; row < n; ++row) {
    const float* wr = w + row * k;
    float amax = 0.0f;
    for (int64_t j = 0; j < k; ++j) amax = std::fmax(amax, std::fabs(wr[j]));
    const float s = amax > 0.0f ? amax / (fp8 ? 448.0f : 127.0f) : 1.0f;
    r.scales[row] = s;
    uint8_t* out = &r.codes[row * k];
    for (int64_t j = 0; j < k; ++j) {
      if (fp8) {
        out[j] = f32_to_fp8_e4m3(wr[j] / s);
      } else {
        const float q = std::min(127.0f, std::max(-127.0f, std::nearbyint(wr[j] / s)));
        out[j] = static_cast<uint8_t>(static_cast<int8_t>(q));
      }
    }
  }
  return r;
}

}  // namespace eli
