// kernels/cuda/gguf_kernels_q2_k.cu: the GGUF GEMV and GEMM instantiated for Q2_K and Q3_K
// (kernels/cuda/gguf_gemv.cuh, gguf_gemm.cuh; split by type so no translation unit is slow to build).
#include "kernels/cuda/gguf_gemm.cuh"
#include "kernels/cuda/gguf_gemv.cuh"
#include "kernels/cuda/gguf_kernels.h"

namespace eli {

void gguf_gemv_q2_k_cuda(const void* args, const ExecContext& ctx) { gguf::gemv_cuda<gguf::BlockQ2_K>(args, ctx); }
void gguf_gemm_q2_k_cuda(const void* args, const ExecContext& ctx) { gguf::gemm_cuda<gguf::BlockQ2_K>(args, ctx); }
void gguf_gemv_q3_k_cuda(const void* args, const ExecContext& ctx) { gguf::gemv_cuda<gguf::BlockQ3_K>(args, ctx); }
void gguf_gemm_q3_k_cuda(const void* args, const ExecContext& ctx) { gguf::gemm_cuda<gguf::BlockQ3_K>(args, ctx); }

}  // namespace eli
