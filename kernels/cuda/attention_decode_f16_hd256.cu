// kernels/cuda/attention_decode_f16_hd256.cu: the split-K decode attention kernels for f16 KV
// caches with 128 < head_dim <= 256 (16-byte loads, 32 lanes per kv row). One (cache type, layout)
// per file, so that the kernels compile in parallel (the kernel: attention_decode_kernel.cuh; the
// dispatch: attention_decode.cu).
#include "kernels/cuda/attention_decode_kernel.cuh"

ELI_DECODE_INSTANTIATE(__half, 32, true)
