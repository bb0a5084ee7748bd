// runtime/quantize/int_quant.h: integer weight quantization on a (n rows = output channels, k
// input columns) f32 matrix: the grid of one group (scale, zero point), round-to-nearest (RTN),
// dequantization and the output error of a quantized matrix on calibration statistics.
//
// Conventions (those of the GPTQ / AWQ exporters, so the codes pack into their layouts as is):
//   w ~ (q - z) * s, q in [0, 2^bits - 1], one (s, z) per (row, group of group_size columns);
//   symmetric: s = 2 max|w| / (2^bits - 1), z = 2^(bits - 1);
//   asymmetric: lo = min(w, 0), hi = max(w, 0), s = (hi - lo) / (2^bits - 1),
//               z = clamp(round(-lo / s), zero_min, 2^bits - 1);
//   rounding is to nearest, ties to even; s is rounded to float16 first when f16_scales (the
//   exporters store f16 scales: the codes are chosen against the stored scale). An all-zero group
//   gets s = 1.
// Groups are column ranges [g * group_size, (g + 1) * group_size) unless a g_idx is given.
//
// Invariants: every function validates its arguments (bits 4 or 8, group_size dividing k) and
// throws eli::Error(kInvalidArgument) naming the bad one; nothing here allocates beyond its result.
#pragma once

#include <cstdint>
#include <vector>

namespace eli {

struct IntQuantSpec {
  int bits = 4;                // 4 or 8
  int64_t group_size = 128;    // > 0 and dividing k; -1: one group per row (per channel)
  bool sym = true;
  int zero_min = 0;            // smallest zero point (GPTQ's v1 format stores z - 1: use 1)
  bool f16_scales = true;      // scales rounded to float16 (GPTQ / AWQ store f16)
};

struct IntQuantResult {
  int64_t n = 0, k = 0, group_size = 0, groups = 0;
  std::vector<uint8_t> q;       // (n, k) codes, original column order
  std::vector<float> scales;    // (n, groups)
  std::vector<int32_t> zeros;   // (n, groups)
  std::vector<int32_t> g_idx;   // (k) group of each column
};

// Checks the spec against k (throws kInvalidArgument) and returns the effective group size.
int64_t checked_group_size(const IntQuantSpec& spec, int64_t k);

// The grid (s, z) of a group of `len` values of one row (values[i * stride]).
void int_group_params(const float* values, int64_t len, int64_t stride, const IntQuantSpec& spec, float* scale,
                      int32_t* zero);
// One code: clamp(round(w / s) + z, 0, 2^bits - 1).
uint8_t int_quant_value(float w, float scale, int32_t zero, int bits);

// Round-to-nearest over contiguous groups.
IntQuantResult quantize_rtn(const float* w, int64_t n, int64_t k, const IntQuantSpec& spec);

// A result of (n, k) with group size gs, every array sized (values zero, g_idx to be filled).
IntQuantResult sized_int_quant_result(int64_t n, int64_t k, int64_t gs);

// (n, k) f32: (q - z) * s per element, through g_idx.
std::vector<float> dequantize(const IntQuantResult& r);

// Output error of w_hat against w on inputs whose second moment is H = sum_t x_t x_t^T (k, k):
// sum_t ||(w_hat - w) x_t||^2 = sum_rows d^T H d, d = w_hat_row - w_row (double accumulation).
double output_error(const float* w, const float* w_hat, int64_t n, int64_t k, const float* H);

}  // namespace eli
