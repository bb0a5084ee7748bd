// kernels/cuda/gguf_kernels_q4_0.cu: the GGUF GEMV and GEMM instantiated for Q4_0 and Q4_1
// (kernels/cuda/gguf_gemv.cuh, gguf_gemm.cuh; split by type so no translation unit is slow to build).
#include "kernels/cuda/gguf_gemm.cuh"
#include "kernels/cuda/gguf_gemv.cuh"
#include "kernels/cuda/gguf_kernels.h"

namespace eli {

void gguf_gemv_q4_0_cuda(const void* args, const ExecContext& ctx) { gguf::gemv_cuda<gguf::BlockQ4_0>(args, ctx); }
void gguf_gemm_q4_0_cuda(const void* args, const ExecContext& ctx) { gguf::gemm_cuda<gguf::BlockQ4_0>(args, ctx); }
void gguf_gemv_q4_1_cuda(const void* args, const ExecContext& ctx) { gguf::gemv_cuda<gguf::BlockQ4_1>(args, ctx); }
void gguf_gemm_q4_1_cuda(const void* args, const ExecContext& ctx) { gguf::gemm_cuda<gguf::BlockQ4_1>(args, ctx); }

}  // namespace eli
