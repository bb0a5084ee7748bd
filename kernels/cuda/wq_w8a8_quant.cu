// kernels/cuda/wq_w8a8_quant.cu: per-token activation quantization of the W8A8 kernels
// (wq_w8a8.h): one CTA per x row; optional RMSNorm prologue, then amax, scale and codes written to
// the workspace (wq_w8a8_internal.cuh's ActView), the row padded with zero codes to kp.
//
// Numerics as kernels/ref/wq_ref.cc (so the codes match the CPU's): the norm's sum of squares and
// 1/rms in double, xn = float(x * inv * (g + offset)) in double; scale = amax / 127 (or / 448) or
// the static scale; codes by wq_w8a8_numerics.cuh (correctly rounded division, half to even).
// The normalised row is recomputed in the second pass (same inputs, same values) instead of stored.
#include <cuda_runtime.h>

#include "eli/error.h"
#include "kernels/cuda/wq_w8a8_internal.cuh"
#include "kernels/cuda/wq_w8a8_numerics.cuh"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace w8a8 {
namespace {

constexpr int kThreads = 256;

struct QuantParams {
  const float* x;
  const float* g;             // norm weight (k) or nullptr
  const float* static_scale;  // device, or nullptr
  uint8_t* codes;
  float* scales;
  int64_t k, kp, x_stride;
  float eps, g_offset;
  bool fp8;
};

__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__global__ void __launch_bounds__(kThreads) quantize_rows_kernel(const QuantParams p) {
  __shared__ double part_d[kThreads / 32];
  __shared__ float part_f[kThreads / 32];
  __shared__ double inv_s;
  __shared__ float scale_s;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t r = blockIdx.x;
  const float* x = p.x + r * p.x_stride;

  double inv = 1.0;
  if (p.g != nullptr) {
    double ss = 0.0;
    for (int64_t j = tid; j < p.k; j += kThreads) ss += static_cast<double>(x[j]) * x[j];
    ss = warp_sum_d(ss);
    if (lane == 0) part_d[warp] = ss;
    __syncthreads();
    if (tid == 0) {
      double t = 0.0;
      for (int w = 0; w < kThreads / 32; ++w) t += part_d[w];
      inv_s = 1.0 / sqrt(t / static_cast<double>(p.k) + static_cast<double>(p.eps));
    }
    __syncthreads();
    inv = inv_s;
  }
  auto value = [&](int64_t j) -> float {
    return p.g != nullptr
               ? static_cast<float>(static_cast<double>(x[j]) * inv * (static_cast<double>(p.g[j]) + p.g_offset))
               : x[j];
  };

  float amax = 0.0f;
  for (int64_t j = tid; j < p.k; j += kThreads) amax = fmaxf(amax, fabsf(value(j)));
  amax = warp_max(amax);
  if (lane == 0) part_f[warp] = amax;
  __syncthreads();
  if (tid == 0) {
    float t = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) t = fmaxf(t, part_f[w]);
    const float st = p.static_scale != nullptr ? *p.static_scale : 0.0f;
    const float s = row_scale(t, p.fp8 ? 448.0f : 127.0f, st);
    scale_s = s;
    p.scales[r] = s;
  }
  __syncthreads();
  const float s = scale_s;
  uint8_t* q = p.codes + r * p.kp;
  for (int64_t j = tid; j < p.kp; j += kThreads) {
    uint8_t c = 0;
    if (j < p.k) {
      const float v = value(j);
      c = p.fp8 ? f32_to_e4m3(div_rn(v, s)) : static_cast<uint8_t>(quant_int8(v, s));
    }
    q[j] = c;
  }
}

}  // namespace

void quantize_rows(const float* x, int64_t x_stride, int64_t m, int64_t k, const float* norm_weight, float norm_eps,
                   float norm_offset, bool fp8, const float* static_scale, const ActView& v, cudaStream_t stream) {
  if (m == 0) return;
  ELI_CHECK_ARG(m <= 0x7FFFFFFF, "w8a8 quantize: too many rows (", m, ")");
  QuantParams p;
  p.x = x;
  p.g = norm_weight;
  p.static_scale = static_scale;
  p.codes = v.codes;
  p.scales = v.scales;
  p.k = k;
  p.kp = v.kp;
  p.x_stride = x_stride;
  p.eps = norm_eps;
  p.g_offset = norm_offset;
  p.fp8 = fp8;
  quantize_rows_kernel<<<static_cast<unsigned>(m), kThreads, 0, stream>>>(p);
  ELI_CUDA_CHECK_LAUNCH();
}

void check_weight(const WqMatrix& w, bool fp8, const char* op) {
  const WeightFormat want = fp8 ? WeightFormat::kFp8Channel : WeightFormat::kInt8Channel;
  ELI_CHECK_ARG(w.format == want, "w8a8 ", op, ": expected a ", weight_format_name(want), " weight, got ",
                weight_format_name(w.format));
  ELI_CHECK_ARG(w.q != nullptr && w.scales != nullptr, "w8a8 ", op, ": weight without data or scales");
  ELI_CHECK_KIND(kUnsupported, w.perm == nullptr, "w8a8 ", op, ": channel formats take no input permutation");
}

void check_shape(int64_t m, int64_t n, int64_t k, const char* op) {
  ELI_CHECK_ARG(m >= 0 && n >= 0 && k > 0, "w8a8 ", op, ": bad shape m=", m, " n=", n, " k=", k);
  ELI_CHECK_ARG(k <= (int64_t{1} << 17), "w8a8 ", op, ": k=", k, " overflows the int32 dot products");
}

void check_workspace(const void* ws, size_t bytes, int64_t m, int64_t k, const char* op) {
  const size_t need = wq_w8a8_workspace_bytes(m, k);
  ELI_CHECK_ARG(ws != nullptr && bytes >= need && (reinterpret_cast<uintptr_t>(ws) & 15u) == 0, "w8a8 ", op,
                ": needs a 16-byte aligned workspace of ", need, " bytes (wq_w8a8_workspace_bytes), got ", bytes);
}

}  // namespace w8a8
}  // namespace eli
