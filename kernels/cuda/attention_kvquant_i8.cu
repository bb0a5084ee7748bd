// kernels/cuda/attention_kvquant_i8.cu: the compressed-KV attention kernel for int8 caches (one
// cache type per file so that the kernels compile in parallel; attention_kvquant_kernel.cuh).
#include "kernels/cuda/attention_kvquant_kernel.cuh"

ELI_KVQ_INSTANTIATE(int8_t)
