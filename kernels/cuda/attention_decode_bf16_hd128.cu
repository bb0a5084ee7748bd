// kernels/cuda/attention_decode_bf16_hd128.cu: the split-K decode attention kernels for bf16 KV
// caches with 64 < head_dim <= 128 (16-byte loads, 16 lanes per kv row). One (cache type, layout)
// per file, so that the kernels compile in parallel (the kernel: attention_decode_kernel.cuh; the
// dispatch: attention_decode.cu).
#include "kernels/cuda/attention_decode_kernel.cuh"

ELI_DECODE_INSTANTIATE(__nv_bfloat16, 16, true)
