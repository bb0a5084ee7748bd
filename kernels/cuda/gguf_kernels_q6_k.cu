// kernels/cuda/gguf_kernels_q6_k.cu: the GGUF GEMV and GEMM instantiated for Q6_K and IQ4_XS
// (kernels/cuda/gguf_gemv.cuh, gguf_gemm.cuh; split by type so no translation unit is slow to build).
#include "kernels/cuda/gguf_gemm.cuh"
#include "kernels/cuda/gguf_gemv.cuh"
#include "kernels/cuda/gguf_kernels.h"

namespace eli {

void gguf_gemv_q6_k_cuda(const void* args, const ExecContext& ctx) { gguf::gemv_cuda<gguf::BlockQ6_K>(args, ctx); }
void gguf_gemm_q6_k_cuda(const void* args, const ExecContext& ctx) { gguf::gemm_cuda<gguf::BlockQ6_K>(args, ctx); }
void gguf_gemv_iq4_xs_cuda(const void* args, const ExecContext& ctx) { gguf::gemv_cuda<gguf::BlockIQ4_XS>(args, ctx); }
void gguf_gemm_iq4_xs_cuda(const void* args, const ExecContext& ctx) { gguf::gemm_cuda<gguf::BlockIQ4_XS>(args, ctx); }

}  // namespace eli
