// kernels/cuda/peer_all_reduce.cu: see peer_all_reduce.h.
#include "kernels/cuda/peer_all_reduce.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "eli/error.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

template <typename T>
__device__ __forceinline__ float load_f(const T* p, int64_t i);
template <>
__device__ __forceinline__ float load_f<float>(const float* p, int64_t i) { return p[i]; }
template <>
__device__ __forceinline__ float load_f<__nv_bfloat16>(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
template <>
__device__ __forceinline__ float load_f<__half>(const __half* p, int64_t i) { return __half2float(p[i]); }

template <typename T>
__device__ __forceinline__ void store_f(T* p, int64_t i, float v);
template <>
__device__ __forceinline__ void store_f<float>(float* p, int64_t i, float v) { p[i] = v; }
template <>
__device__ __forceinline__ void store_f<__nv_bfloat16>(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16(v); }
template <>
__device__ __forceinline__ void store_f<__half>(__half* p, int64_t i, float v) { p[i] = __float2half(v); }

// Block-wide barrier across ranks (see the header): thread 0 signals and waits, the block follows.
__device__ bool rank_barrier(const PeerAllReduceArgs& a, uint32_t epoch) {
  __shared__ int ok;
  __syncthreads();
  if (threadIdx.x == 0) {
    ok = 1;
    __threadfence_system();  // this rank's writes before the signal
    for (int p = 0; p < a.n_ranks; ++p) {
      volatile uint32_t* slot = a.signals[p] + kPeerBlocks + a.rank * kPeerBlocks + blockIdx.x;
      *slot = epoch;
    }
    const long long start = clock64();
    uint32_t spins = 0;
    for (int p = 0; p < a.n_ranks && ok; ++p) {
      volatile uint32_t* mine = a.signals[a.rank] + kPeerBlocks + p * kPeerBlocks + blockIdx.x;
      while (static_cast<int32_t>(*mine - epoch) < 0) {
        // The abort word is host memory: polled now and then, not on every spin.
        if (a.abort_word != nullptr && (++spins & 63) == 0 && *a.abort_word != 0) {
          ok = 0;
          break;
        }
        if (clock64() - start > a.timeout_cycles) {
          ok = 0;
          if (a.error != nullptr) *static_cast<volatile int*>(a.error) = 1;  // may be mapped host memory
          if (a.abort_word != nullptr) {
            *a.abort_word = 1;
            __threadfence_system();
          }
          break;
        }
      }
    }
    __threadfence_system();
  }
  __syncthreads();
  return ok != 0;
}

template <typename T>
__global__ void peer_all_reduce_kernel(const PeerAllReduceArgs a) {
  __shared__ uint32_t epoch;
  if (threadIdx.x == 0) epoch = ++a.signals[a.rank][blockIdx.x];  // this block's launch number
  __syncthreads();
  const uint32_t e0 = epoch * 3;  // three barriers per launch
  if (!rank_barrier(a, e0 + 1)) return;  // every input is ready
  const int64_t n = a.count;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  T* out = static_cast<T*>(a.out);
  if (!a.two_shot) {
    for (int64_t i = first; i < n; i += stride) {
      float s = load_f(static_cast<const T*>(a.inputs[0]), i);
      for (int p = 1; p < a.n_ranks; ++p) s += load_f(static_cast<const T*>(a.inputs[p]), i);
      store_f(out, i, s);
    }
  } else {
    // Shot 1: this rank's slice of every input, summed into its scratch.
    const int64_t chunk = (n + a.n_ranks - 1) / a.n_ranks;
    const int64_t lo = a.rank * chunk, hi = lo + chunk < n ? lo + chunk : n;
    T* mine = static_cast<T*>(a.scratch[a.rank]);
    for (int64_t i = lo + first; i < hi; i += stride) {
      float s = load_f(static_cast<const T*>(a.inputs[0]), i);
      for (int p = 1; p < a.n_ranks; ++p) s += load_f(static_cast<const T*>(a.inputs[p]), i);
      store_f(mine, i, s);
    }
    if (!rank_barrier(a, e0 + 2)) return;  // every slice is reduced
    // Shot 2: gather every rank's slice, each block the elements the same block of the owner
    // wrote (the per-block barrier covers exactly those).
    for (int q = 0; q < a.n_ranks; ++q) {
      const int64_t qlo = q * chunk, qhi = qlo + chunk < n ? qlo + chunk : n;
      const T* theirs = static_cast<const T*>(a.scratch[q]);
      for (int64_t i = qlo + first; i < qhi; i += stride) store_f(out, i, load_f(theirs, i));
    }
  }
  rank_barrier(a, e0 + 3);  // no rank reuses its buffers while a peer reads them
}

}  // namespace

bool peer_all_reduce_fits(size_t bytes, int n_ranks, bool* two_shot) {
  if (bytes > (size_t{32} << 20)) return false;
  *two_shot = n_ranks > 2 ? bytes > (size_t{512} << 10) : bytes > (size_t{2} << 20);
  return true;
}

void peer_all_reduce(const PeerAllReduceArgs& a, void* stream) {
  ELI_CHECK_ARG(a.n_ranks >= 1 && a.n_ranks <= kMaxPeers && a.rank >= 0 && a.rank < a.n_ranks,
                "peer_all_reduce: ", a.n_ranks, " ranks (at most ", kMaxPeers, "), rank ", a.rank);
  ELI_CHECK_ARG(a.count >= 0 && a.out != nullptr, "peer_all_reduce: bad count or output");
  for (int p = 0; p < a.n_ranks; ++p) {
    ELI_CHECK_ARG(a.inputs[p] != nullptr && a.signals[p] != nullptr && (!a.two_shot || a.scratch[p] != nullptr),
                  "peer_all_reduce: rank ", p, "'s buffers are missing");
  }
  // One-shot writes the sum while peers still read the inputs: it needs a separate output.
  ELI_CHECK_ARG(a.two_shot || a.out != a.inputs[a.rank], "peer_all_reduce: one-shot cannot run in place");
  const int threads = 512;
  const dim3 grid(kPeerBlocks), block(threads);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (a.dtype) {
    case DType::kF32: peer_all_reduce_kernel<float><<<grid, block, 0, s>>>(a); break;
    case DType::kBF16: peer_all_reduce_kernel<__nv_bfloat16><<<grid, block, 0, s>>>(a); break;
    case DType::kF16: peer_all_reduce_kernel<__half><<<grid, block, 0, s>>>(a); break;
    default: ELI_THROW(kUnsupported, "peer_all_reduce takes float32, bfloat16 or float16, not ", dtype_name(a.dtype));
  }
  ELI_CUDA_CHECK_LAUNCH();
}

}  // namespace eli
