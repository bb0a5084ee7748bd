// kernels/cuda/block_reduce.cuh: warp-shuffle and block-wide sum reductions shared by kernels.
//
// Invariants: block_reduce_sum must be called by every thread of the block (it uses
// __syncthreads); blockDim.x is a multiple of 32 and at most 1024. Every thread gets the total.
#pragma once

#include <cuda_runtime.h>

namespace eli {
namespace cuda {

__device__ __forceinline__ float warp_reduce_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float block_reduce_sum(float v) {
  __shared__ float partial[32];  // one per warp
  __shared__ float total;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  v = warp_reduce_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int n_warps = (blockDim.x + 31) >> 5;
    float w = lane < n_warps ? partial[lane] : 0.f;
    w = warp_reduce_sum(w);
    if (lane == 0) total = w;
  }
  __syncthreads();
  return total;
}

// Threads for a one-block-per-row kernel over `n` items: a multiple of 32 in [32, 1024].
inline int threads_for(long long n) {
  long long t = (n + 31) / 32 * 32;
  if (t < 32) t = 32;
  if (t > 1024) t = 1024;
  return static_cast<int>(t);
}

}  // namespace cuda
}  // namespace eli
