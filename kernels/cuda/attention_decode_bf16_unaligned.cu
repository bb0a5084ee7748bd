// kernels/cuda/attention_decode_bf16_unaligned.cu: the split-K decode attention kernels for bf16 KV
// caches with a head_dim not a multiple of 8 or an unaligned cache (element loads, 32 lanes per kv
// row). One (cache type, layout) per file, so that the kernels compile in parallel (the kernel:
// attention_decode_kernel.cuh; the dispatch: attention_decode.cu).
#include "kernels/cuda/attention_decode_kernel.cuh"

ELI_DECODE_INSTANTIATE(__nv_bfloat16, 32, false)
