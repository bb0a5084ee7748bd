// runtime/quantize/channel_quant.h: per-output-channel 8-bit weights for W8A8 checkpoints
// (compressed-tensors): int8 codes with s = max|w| / 127 (round half to even, clamp +-127), or
// e4m3 codes with s = max|w| / 448 (round to nearest even, saturating; kernels/ref/fp8.h). One f32
// scale per row; an all-zero row gets s = 1. The same rules as eli's online FP8 (linear_fp8_online.cc).
#pragma once

#include <cstdint>
#include <vector>

namespace eli {

struct ChannelQuantResult {
  std::vector<uint8_t> codes;  // (n, k): int8 two's complement, or e4m3 bytes
  std::vector<float> scales;   // (n)
};

// kind: "int8" or "fp8" (else kInvalidArgument).
ChannelQuantResult quantize_channel(const float* w, int64_t n, int64_t k, const char* kind);

}  // namespace eli
