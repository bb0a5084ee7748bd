// kernels/cuda/attention_decode.cuh: what the decode attention's dispatch (attention_decode.cu)
// needs of its kernels, which are instantiated per (cache type, head-dim layout) in
// attention_decode_<type>_<layout>.cu from attention_decode_kernel.cuh. Internal to those files.
//
// Layouts (TPR lanes per kv row, VEC 16-byte loads): <8, true> head_dim <= 64, <16, true> <= 128,
// <32, true> <= 256 (all with hd % 8 == 0 and an aligned cache), <32, false> anything else.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/attention_bf16.cuh"

namespace eli {
namespace attn {
namespace decode {

constexpr int kCounterSlots = 16;  // split-counter slots per device (decode_counter_slot)
constexpr int kMaxSplits = static_cast<int>(kAttentionMaxSplits);

// Launches the kernel of layout <TPR, VEC> for qmax (4 or 8) on grid (n_splits, nkv * n_qchunks,
// n_seqs); counters: the device's split counters (may be null when p.n_splits == 1).
// KV: the stored element type (T, or int8_t / __nv_fp8_e4m3 for a compressed cache: VEC layouts
// only, instantiated in attention_decode_{i8,fp8}_<layout>.cu).
template <typename T, int TPR, bool VEC, typename KV = T>
void launch_layout(const Params<T>& p, int qmax, dim3 grid, unsigned int* counters, cudaStream_t stream);
// Resident CTAs per SM of the kernel launch_layout picks for qmax on the current device.
template <typename T, int TPR, bool VEC, typename KV = T>
int ctas_layout(int qmax);

}  // namespace decode
}  // namespace attn
}  // namespace eli
