// kernels/cuda/attention_decode_i8_hd128.cu: the split-K decode attention kernels for int8 KV caches
// (bf16 or f32 q / out) with head_dim <= 128 in the vector layout (16 lanes per kv row, 8 bytes each).
// One (cache type, layout) per file (attention_decode_kernel.cuh; dispatch: attention_decode.cu).
#include "kernels/cuda/attention_decode_kernel.cuh"

ELI_DECODE_INSTANTIATE_KV(__nv_bfloat16, int8_t, 16, true)
