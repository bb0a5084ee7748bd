// kernels/cuda/kv_quant.cuh: device side of the compressed KV cache (int8 / fp8 e4m3 values with
// one f32 scale per (slot, kv head) row), mirroring kernels/ref/kv_quant.h exactly:
//   scale = amax / qmax (127 or 448), q = round(x * (1 / scale)) (int8: __float2int_rn, ties to
//   even, clamped to +-127; e4m3: __nv_fp8_e4m3's round to nearest even, saturated to +-448),
//   a row with a NaN / infinity gets a NaN scale, a zero row scale 0.
// fp8 uses cuda_fp8.h's __nv_fp8_e4m3: a storage type on sm_80 (conversions in software) and
// hardware conversions on sm_89 / sm_90. KvQuant<C>::kQuant is false for f32 / bf16 / f16 caches.
#pragma once

#include <cuda_fp8.h>

#include <cstdint>

namespace eli {
namespace cuda {

template <typename C>
struct KvQuant {
  static constexpr bool kQuant = false;
};
template <>
struct KvQuant<int8_t> {
  static constexpr bool kQuant = true;
  static constexpr float kMax = 127.0f;
  static __device__ __forceinline__ int8_t encode(float x) {
    const int r = __float2int_rn(x);
    return static_cast<int8_t>(r > 127 ? 127 : (r < -127 ? -127 : r));
  }
  static __device__ __forceinline__ float decode(int8_t q) { return static_cast<float>(q); }
};
template <>
struct KvQuant<__nv_fp8_e4m3> {
  static constexpr bool kQuant = true;
  static constexpr float kMax = 448.0f;
  static __device__ __forceinline__ __nv_fp8_e4m3 encode(float x) { return __nv_fp8_e4m3(x); }
  static __device__ __forceinline__ float decode(__nv_fp8_e4m3 q) { return static_cast<float>(q); }
};

// One warp quantizes the row src[0, hd) (f32) into dst and writes its scale (lane 0). All 32
// lanes must call it (warp shuffles).
template <typename C>
__device__ __forceinline__ void kv_quantize_row_warp(C* dst, float* scale, const float* src, int hd, int lane) {
  float amax = 0.0f;
  bool bad = false;
  for (int d = lane; d < hd; d += 32) {
    const float a = fabsf(src[d]);
    bad = bad || !(a <= 3.4e38f);
    amax = fmaxf(amax, a);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if (__any_sync(0xffffffffu, bad)) amax = __int_as_float(0x7fffffff);  // NaN: never hide a bad value
  const float s = amax / KvQuant<C>::kMax;
  const float inv = s > 0.0f ? 1.0f / s : 0.0f;
  for (int d = lane; d < hd; d += 32) dst[d] = KvQuant<C>::encode(src[d] * inv);
  if (lane == 0) *scale = s;
}

}  // namespace cuda
}  // namespace eli
