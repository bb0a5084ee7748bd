// kernels/cuda/x_quant_tile.cuh: the activation prologue shared by the int8-x GEMVs (the GGUF
// kernels' gguf_quantize_x.cu and the W4A16 / W8A16 prep of wq_w4a16_gemv.cu): the RMSNorm factor
// of an x row, a lane's 4 (normalised, optionally gathered) elements, and one 32-element tile
// quantized by 8 aligned lanes of 4 elements each.
//
// Quantization (wq_w4a16.cuh's xq_* rules, which the host references use too): d = max|v| / 127,
// q = round-to-nearest-even(v / d) clamped to [-127, 127]; d = 0 and q = 0 for an all-zero tile. So
// |v - d q| <= d / 2 per element, the only error of the integer dot products that follow.
//
// Invariants: row_rms_inverse is called by every thread of the block (block_reduce_sum), with
// kThreads == blockDim.x; quantize_tile is called by every lane of the warp (8-lane shuffles), a
// lane past the row's last tile passing zeros and storing nothing.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/wq_w4a16.cuh"

namespace eli {
namespace cuda {

// 1 / sqrt(mean(x^2) + eps) over the k elements of row x (16-byte loads when `vec`: x 16-byte
// aligned and k % 4 == 0). Every thread gets it.
template <int kThreads>
__device__ __forceinline__ float row_rms_inverse(const float* x, int64_t k, float eps, bool vec) {
  float ss = 0.f;
  if (vec) {
    for (int64_t i = 4 * static_cast<int64_t>(threadIdx.x); i < k; i += 4 * kThreads) {
      const float4 v = *reinterpret_cast<const float4*>(x + i);
      ss = fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, ss))));
    }
  } else {
    for (int64_t i = threadIdx.x; i < k; i += kThreads) ss = fmaf(x[i], x[i], ss);
  }
  ss = block_reduce_sum(ss);
  return 1.0f / sqrtf(ss / static_cast<float>(k) + eps);
}

// One lane's 4 elements of x from e0 (e0 + j, or perm[e0 + j] with an act-order gather; 16 bytes at
// once when `vec`, which excludes a gather), times inv * (g + g_offset) with a norm weight g.
__device__ __forceinline__ void load_lane(const float* x, int64_t e0, const int32_t* perm, const float* g,
                                          float g_offset, float inv, bool vec, float v[4]) {
  int64_t src[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) src[j] = perm != nullptr ? static_cast<int64_t>(__ldg(perm + e0 + j)) : e0 + j;
  if (vec) {
    const float4 a = *reinterpret_cast<const float4*>(x + e0);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = x[src[j]];
  }
  if (g != nullptr) {
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = v[j] * inv * (__ldg(g + src[j]) + g_offset);
  }
}

// One lane's share of a 32-element tile: its 4 codes packed little-endian, and the tile's d and
// exact sum of codes (the same on the 8 lanes).
struct TileCodes {
  uint32_t packed;
  float d;
  int sum;
};

__device__ __forceinline__ TileCodes quantize_tile(const float v[4]) {
  float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
#pragma unroll
  for (int o = 1; o < 8; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float id = wq_cuda::xq_inv_scale(amax);
  int q[4], sum = 0;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    q[j] = wq_cuda::xq_code(v[j], id);
    sum += q[j];
  }
#pragma unroll
  for (int o = 1; o < 8; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  TileCodes t;
  t.packed = (static_cast<uint32_t>(q[0]) & 0xffu) | ((static_cast<uint32_t>(q[1]) & 0xffu) << 8) |
             ((static_cast<uint32_t>(q[2]) & 0xffu) << 16) | (static_cast<uint32_t>(q[3]) << 24);
  t.d = wq_cuda::xq_scale(amax);
  t.sum = sum;
  return t;
}

}  // namespace cuda
}  // namespace eli
