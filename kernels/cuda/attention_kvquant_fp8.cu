// kernels/cuda/attention_kvquant_fp8.cu: the compressed-KV attention kernel for fp8 e4m3 caches
// (one cache type per file; attention_kvquant_kernel.cuh).
#include "kernels/cuda/attention_kvquant_kernel.cuh"

ELI_KVQ_INSTANTIATE(__nv_fp8_e4m3)
