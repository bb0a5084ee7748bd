// kernels/cuda/attention_decode_fp8_hd256.cu: the split-K decode attention kernels for fp8 e4m3 KV caches
// (bf16 or f32 q / out) with head_dim <= 256 in the vector layout (32 lanes per kv row, 8 bytes each).
// One (cache type, layout) per file (attention_decode_kernel.cuh; dispatch: attention_decode.cu).
#include "kernels/cuda/attention_decode_kernel.cuh"

ELI_DECODE_INSTANTIATE_KV(__nv_bfloat16, __nv_fp8_e4m3, 32, true)
