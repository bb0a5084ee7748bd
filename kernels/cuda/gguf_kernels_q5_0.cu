// kernels/cuda/gguf_kernels_q5_0.cu: the GGUF GEMV and GEMM instantiated for Q5_0 and Q5_1
// (kernels/cuda/gguf_gemv.cuh, gguf_gemm.cuh; split by type so no translation unit is slow to build).
#include "kernels/cuda/gguf_gemm.cuh"
#include "kernels/cuda/gguf_gemv.cuh"
#include "kernels/cuda/gguf_kernels.h"

namespace eli {

void gguf_gemv_q5_0_cuda(const void* args, const ExecContext& ctx) { gguf::gemv_cuda<gguf::BlockQ5_0>(args, ctx); }
void gguf_gemm_q5_0_cuda(const void* args, const ExecContext& ctx) { gguf::gemm_cuda<gguf::BlockQ5_0>(args, ctx); }
void gguf_gemv_q5_1_cuda(const void* args, const ExecContext& ctx) { gguf::gemv_cuda<gguf::BlockQ5_1>(args, ctx); }
void gguf_gemm_q5_1_cuda(const void* args, const ExecContext& ctx) { gguf::gemm_cuda<gguf::BlockQ5_1>(args, ctx); }

}  // namespace eli
