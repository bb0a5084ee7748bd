// kernels/cuda/peer_signal.cu: see peer_signal.h. One thread does each wait / post (a flag
// handshake is latency, not bandwidth); peer_reduce is a grid-stride loop.
#include "kernels/cuda/peer_signal.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "eli/error.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ bool aborted(const PeerSignalArgs& a) {
  return a.abort_word != nullptr && *a.abort_word != 0;
}

// Waits until the wrapping counter *word reaches `target`; false on abort or timeout (see the
// header: a timeout records the error and sets the abort word).
__device__ bool wait_reaches(const PeerSignalArgs& a, const volatile uint32_t* word, uint32_t target) {
  const uint64_t start = global_ns();
  uint32_t spins = 0;
  while (static_cast<int32_t>(*word - target) < 0) {
    if ((++spins & 63) == 0) {  // the abort word is host memory: poll it now and then
      if (aborted(a)) return false;
      if (static_cast<int64_t>(global_ns() - start) > a.timeout_ns) {
        if (a.error_word != nullptr) *a.error_word = a.error_code;
        if (a.abort_word != nullptr) *a.abort_word = 1;
        __threadfence_system();
        return false;
      }
    }
  }
  __threadfence_system();  // what the peer wrote before its signal, before what this rank does next
  return !aborted(a);
}

__device__ __forceinline__ void store_signal(uint32_t* word, uint32_t v) {
  __threadfence_system();  // this rank's writes (its copies came before, in stream order) first
  *static_cast<volatile uint32_t*>(word) = v;
  __threadfence_system();
}

__global__ void barrier_kernel(const PeerSignalArgs a) {
  if (aborted(a)) return;
  PeerSignals* mine = a.signals[a.rank];
  const uint32_t epoch = ++mine->barrier_count;
  for (int p = 0; p < a.n_ranks; ++p) store_signal(&a.signals[p]->barrier_slot[a.rank], epoch);
  for (int p = 0; p < a.n_ranks; ++p) {
    if (!wait_reaches(a, &mine->barrier_slot[p], epoch)) return;
  }
}

__global__ void send_wait_kernel(const PeerSignalArgs a, int dst) {
  PeerSignals* mine = a.signals[a.rank];
  const uint32_t k = ++mine->sent[dst];  // counted even when aborted: the group is dead anyway
  wait_reaches(a, &mine->freed[dst], k - 1);
}

__global__ void send_post_kernel(const PeerSignalArgs a, int dst) {
  if (aborted(a)) return;
  store_signal(&a.signals[dst]->full[a.rank], a.signals[a.rank]->sent[dst]);
}

__global__ void recv_wait_kernel(const PeerSignalArgs a, int src) {
  PeerSignals* mine = a.signals[a.rank];
  const uint32_t k = ++mine->recvd[src];
  wait_reaches(a, &mine->full[src], k);
}

__global__ void recv_post_kernel(const PeerSignalArgs a, int src) {
  if (aborted(a)) return;
  store_signal(&a.signals[src]->freed[a.rank], a.signals[a.rank]->recvd[src]);
}

template <typename T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <>
__device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half(v); }

struct ReduceArgs {
  const void* inputs[kMaxPeers];
  int n;
  void* out;
  int64_t count;
  const volatile int* abort_word;
};

template <typename T>
__global__ void reduce_kernel(const ReduceArgs a) {
  if (a.abort_word != nullptr && *a.abort_word != 0) return;
  T* out = static_cast<T*>(a.out);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < a.count; i += stride) {
    float s = to_f32(static_cast<const T*>(a.inputs[0])[i]);
    for (int p = 1; p < a.n; ++p) s += to_f32(static_cast<const T*>(a.inputs[p])[i]);
    out[i] = from_f32<T>(s);
  }
}

// peer == -1: a call without a peer (the barrier).
void check_args(const PeerSignalArgs& a, int peer, const char* what) {
  ELI_CHECK_ARG(a.n_ranks >= 1 && a.n_ranks <= kMaxPeers && a.rank >= 0 && a.rank < a.n_ranks, what, ": ",
                a.n_ranks, " ranks (at most ", kMaxPeers, "), rank ", a.rank);
  for (int p = 0; p < a.n_ranks; ++p) ELI_CHECK_ARG(a.signals[p] != nullptr, what, ": rank ", p, "'s signals are missing");
  ELI_CHECK_ARG(peer == -1 || (peer >= 0 && peer < a.n_ranks && peer != a.rank), what, ": bad peer ", peer);
  ELI_CHECK_ARG(a.timeout_ns > 0, what, ": the timeout must be positive");
}

}  // namespace

void peer_barrier(const PeerSignalArgs& a, void* stream) {
  check_args(a, -1, "peer_barrier");
  barrier_kernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(a);
  ELI_CUDA_CHECK_LAUNCH();
}

void peer_send_wait(const PeerSignalArgs& a, int dst, void* stream) {
  check_args(a, dst, "peer_send_wait");
  send_wait_kernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(a, dst);
  ELI_CUDA_CHECK_LAUNCH();
}

void peer_send_post(const PeerSignalArgs& a, int dst, void* stream) {
  check_args(a, dst, "peer_send_post");
  send_post_kernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(a, dst);
  ELI_CUDA_CHECK_LAUNCH();
}

void peer_recv_wait(const PeerSignalArgs& a, int src, void* stream) {
  check_args(a, src, "peer_recv_wait");
  recv_wait_kernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(a, src);
  ELI_CUDA_CHECK_LAUNCH();
}

void peer_recv_post(const PeerSignalArgs& a, int src, void* stream) {
  check_args(a, src, "peer_recv_post");
  recv_post_kernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(a, src);
  ELI_CUDA_CHECK_LAUNCH();
}

void peer_reduce(const void* const* inputs, int n_inputs, void* out, size_t count, DType dtype,
                 const volatile int* abort_word, void* stream) {
  ELI_CHECK_ARG(n_inputs >= 1 && n_inputs <= kMaxPeers && out != nullptr, "peer_reduce: ", n_inputs, " inputs");
  if (count == 0) return;
  ReduceArgs a{};
  for (int p = 0; p < n_inputs; ++p) {
    ELI_CHECK_ARG(inputs[p] != nullptr, "peer_reduce: input ", p, " is null");
    a.inputs[p] = inputs[p];
  }
  a.n = n_inputs;
  a.out = out;
  a.count = static_cast<int64_t>(count);
  a.abort_word = abort_word;
  const int threads = 256;
  const int64_t want = (a.count + threads - 1) / threads;
  const dim3 grid(static_cast<unsigned>(want < 1024 ? want : 1024));
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::kF32: reduce_kernel<float><<<grid, threads, 0, s>>>(a); break;
    case DType::kBF16: reduce_kernel<__nv_bfloat16><<<grid, threads, 0, s>>>(a); break;
    case DType::kF16: reduce_kernel<__half><<<grid, threads, 0, s>>>(a); break;
    default: ELI_THROW(kUnsupported, "peer_reduce takes float32, bfloat16 or float16, not ", dtype_name(dtype));
  }
  ELI_CUDA_CHECK_LAUNCH();
}

}  // namespace eli
