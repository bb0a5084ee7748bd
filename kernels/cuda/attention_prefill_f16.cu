// kernels/cuda/attention_prefill_f16.cu: the tensor-core prefill attention for f16 KV caches (the
// kernel: attention_prefill_kernel.cuh; one cache type per file, so the two compile in parallel).
#include "kernels/cuda/attention_prefill_kernel.cuh"

template void eli::attn::launch_prefill<__half>(const eli::attn::Params<__half>& p, int64_t q_tiles,
                                            cudaStream_t stream);
