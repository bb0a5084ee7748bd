// kernels/cuda/attention_decode.cu: host side of the split-K decode attention whose kernel is in
// attention_decode_kernel.cuh (instantiated per cache type and head-dim layout in
// attention_decode_<type>_<layout>.cu): the split counters and their slots per workspace, and the
// one dispatch from (kv_vec, head_dim) to a layout's instantiation.
#include <atomic>
#include <cstdint>
#include <mutex>

#include "eli/error.h"
#include "kernels/cuda/attention_bf16.cuh"
#include "kernels/cuda/attention_decode.cuh"
#include "kernels/cuda/kv_quant.cuh"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace attn {
namespace {

using decode::kCounterSlots;
using decode::kMaxSplits;

// Arrival counters of the split groups: kCounterSlots slots of kDecodeSlotCounters (512 KiB), zero
// when the module loads (PTX initialises .global variables without initialiser to zero), left at
// zero by every launch. One array for every instantiation: the kernels get its address.
__device__ unsigned int g_split_counters[kCounterSlots * kDecodeSlotCounters];

// The device address of g_split_counters on the current device (cached per device).
unsigned int* split_counters() {
  static std::atomic<unsigned int*> cached[64] = {};
  int dev = 0;
  ELI_CUDA_CHECK(cudaGetDevice(&dev));
  const bool cacheable = dev >= 0 && dev < 64;
  if (cacheable) {
    unsigned int* c = cached[dev].load(std::memory_order_relaxed);
    if (c != nullptr) return c;
  }
  void* ptr = nullptr;
  ELI_CUDA_CHECK(cudaGetSymbolAddress(&ptr, g_split_counters));
  if (cacheable) cached[dev].store(static_cast<unsigned int*>(ptr), std::memory_order_relaxed);
  return static_cast<unsigned int*>(ptr);
}

// The one place that maps (kv_vec, head_dim) to an instantiation: calls f.template
// operator()<TPR, VEC>().
template <typename T, typename F>
void with_layout(const Params<T>& p, F&& f) {
  if (p.kv_vec && p.head_dim <= 64) {
    f.template operator()<8, true>();
  } else if (p.kv_vec && p.head_dim <= 128) {
    f.template operator()<16, true>();
  } else if (p.kv_vec) {
    f.template operator()<32, true>();
  } else {
    f.template operator()<32, false>();
  }
}

// A compressed cache (KV int8_t / __nv_fp8_e4m3) has instances of the 16-byte layouts only (the
// host sends anything else to attention_kvquant.cu's kernel).
template <typename T, typename KV>
constexpr bool has_layout(bool vec) {
  return vec || cuda::KvQuant<KV>::kQuant == false;
}

template <typename T, typename KV>
struct Launch {
  const Params<T>& p;
  int qmax;
  dim3 grid;
  unsigned int* counters;
  cudaStream_t stream;
  template <int TPR, bool VEC>
  void operator()() const {
    if constexpr (has_layout<T, KV>(VEC)) {
      decode::launch_layout<T, TPR, VEC, KV>(p, qmax, grid, counters, stream);
    } else {
      ELI_CHECK(false, "attention decode: a compressed cache needs the 16-byte layout");
    }
  }
};

template <typename T, typename KV>
struct Occupancy {
  int qmax;
  int* out;
  template <int TPR, bool VEC>
  void operator()() const {
    if constexpr (has_layout<T, KV>(VEC)) *out = decode::ctas_layout<T, TPR, VEC, KV>(qmax);
  }
};

}  // namespace

int decode_counter_slot(const void* workspace) {
  struct Entry {
    const void* ws = nullptr;
    uint64_t used = 0;
  };
  static std::mutex mu;
  static Entry table[64][kCounterSlots];
  static uint64_t tick = 0;
  int dev = 0;
  ELI_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64 || workspace == nullptr) return -1;
  std::lock_guard<std::mutex> lock(mu);
  Entry* row = table[dev];
  ++tick;
  int victim = 0;
  for (int i = 0; i < kCounterSlots; ++i) {
    if (row[i].ws == workspace) {
      row[i].used = tick;
      return i;
    }
    if (row[i].used < row[victim].used) victim = i;
  }
  row[victim].ws = workspace;
  row[victim].used = tick;
  return victim;
}

template <typename T, typename KV>
void launch_decode(const Params<T>& p, int qmax, cudaStream_t stream) {
  ELI_CHECK(p.n_splits == 1 || (p.n_splits <= kMaxSplits && p.counter_slot >= 0 && p.counter_slot < kCounterSlots &&
                                static_cast<int64_t>(p.n_seqs) * p.n_kv_heads * p.n_qchunks_cap <= kDecodeSlotCounters),
            "attention decode: bad split-K setup");
  const dim3 grid(static_cast<unsigned>(p.n_splits), static_cast<unsigned>(p.n_kv_heads * p.n_qchunks),
                  static_cast<unsigned>(p.n_seqs));
  with_layout(p, Launch<T, KV>{p, qmax, grid, p.n_splits > 1 ? split_counters() : nullptr, stream});
  ELI_CUDA_CHECK_LAUNCH();
}

template <typename T, typename KV>
int decode_ctas_per_sm(const Params<T>& p, int qmax) {
  int n = 1;
  with_layout(p, Occupancy<T, KV>{qmax, &n});
  return n;
}

template void launch_decode<__nv_bfloat16>(const Params<__nv_bfloat16>& p, int qmax, cudaStream_t stream);
template void launch_decode<__half>(const Params<__half>& p, int qmax, cudaStream_t stream);
template int decode_ctas_per_sm<__nv_bfloat16>(const Params<__nv_bfloat16>& p, int qmax);
template int decode_ctas_per_sm<__half>(const Params<__half>& p, int qmax);
template void launch_decode<__nv_bfloat16, int8_t>(const Params<__nv_bfloat16>& p, int qmax, cudaStream_t stream);
template void launch_decode<__nv_bfloat16, __nv_fp8_e4m3>(const Params<__nv_bfloat16>& p, int qmax, cudaStream_t stream);
template int decode_ctas_per_sm<__nv_bfloat16, int8_t>(const Params<__nv_bfloat16>& p, int qmax);
template int decode_ctas_per_sm<__nv_bfloat16, __nv_fp8_e4m3>(const Params<__nv_bfloat16>& p, int qmax);

}  // namespace attn
}  // namespace eli
