// kernels/cuda/rmsnorm.cu: fused (optional residual add +) RMSNorm over f32 rows.
//
// One block per row. Pass 1 reads x (and, with a residual, writes residual += x) and accumulates
// the sum of squares; a warp-shuffle block reduction gives rsqrt(mean + eps); pass 2 re-reads the
// row (each thread touches the same elements as in pass 1, so out may alias x) and writes
// out = v * inv_rms * (weight + weight_offset). float4 loads when every pointer is 16-byte
// aligned and hidden and both strides are multiples of 4; a scalar path otherwise.
// The residual buffer is (rows, hidden) contiguous (row stride = hidden), as in RmsNormArgs.
#include <climits>
#include <cstdint>

#include "eli/error.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

template <typename V>
__device__ __forceinline__ float sum_sq(V v);
template <>
__device__ __forceinline__ float sum_sq<float>(float v) { return v * v; }
template <>
__device__ __forceinline__ float sum_sq<float4>(float4 v) { return v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w; }

__device__ __forceinline__ float add(float a, float b) { return a + b; }
__device__ __forceinline__ float4 add(float4 a, float4 b) {
  return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}
__device__ __forceinline__ float scale(float v, float inv, float w, float off) { return v * inv * (w + off); }
__device__ __forceinline__ float4 scale(float4 v, float inv, float4 w, float off) {
  return make_float4(v.x * inv * (w.x + off), v.y * inv * (w.y + off), v.z * inv * (w.z + off),
                     v.w * inv * (w.w + off));
}

// V = float (kWidth 1) or float4 (kWidth 4). Sizes and strides are in floats.
template <typename V, int kWidth>
__global__ void rmsnorm_kernel(float* __restrict__ out, float* residual, const float* x,
                               const float* __restrict__ weight, int64_t hidden, int64_t out_stride,
                               int64_t x_stride, float eps, float weight_offset) {
  const int64_t row = blockIdx.x;
  const int64_t n = hidden / kWidth;
  const V* xr = reinterpret_cast<const V*>(x + row * x_stride);
  V* rr = residual ? reinterpret_cast<V*>(residual + row * hidden) : nullptr;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    V v = xr[i];
    if (rr) {
      v = add(v, rr[i]);
      rr[i] = v;
    }
    ss += sum_sq(v);
  }
  ss = cuda::block_reduce_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(hidden) + eps);
  const V* src = rr ? rr : xr;
  const V* w = reinterpret_cast<const V*>(weight);
  V* o = reinterpret_cast<V*>(out + row * out_stride);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = scale(src[i], inv, w[i], weight_offset);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

void rmsnorm_f32_cuda(const void* args_ptr, const ExecContext& ctx) {
  const RmsNormArgs& a = *static_cast<const RmsNormArgs*>(args_ptr);
  ELI_CHECK(a.rows >= 0 && a.hidden > 0, "rmsnorm: bad shape rows=", a.rows, " hidden=", a.hidden);
  ELI_CHECK(a.rows <= INT_MAX, "rmsnorm: ", a.rows, " rows exceed the grid limit");
  ELI_CHECK(a.out_stride >= a.hidden && a.x_stride >= a.hidden, "rmsnorm: stride below hidden");
  if (a.rows == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const bool vec = a.hidden % 4 == 0 && a.out_stride % 4 == 0 && a.x_stride % 4 == 0 &&
                   aligned16(a.out) && aligned16(a.x) && aligned16(a.weight) &&
                   (a.residual == nullptr || aligned16(a.residual));
  const dim3 grid(static_cast<unsigned>(a.rows));
  if (vec) {
    const int threads = cuda::threads_for(a.hidden / 4);
    rmsnorm_kernel<float4, 4><<<grid, threads, 0, stream>>>(a.out, a.residual, a.x, a.weight, a.hidden,
                                                           a.out_stride, a.x_stride, a.eps, a.weight_offset);
  } else {
    const int threads = cuda::threads_for(a.hidden);
    rmsnorm_kernel<float, 1><<<grid, threads, 0, stream>>>(a.out, a.residual, a.x, a.weight, a.hidden,
                                                          a.out_stride, a.x_stride, a.eps, a.weight_offset);
  }
  ELI_CUDA_CHECK_LAUNCH();
}

}  // namespace eli
