// kernels/cuda/gguf_kernels_q8_0.cu: the GGUF GEMV and GEMM instantiated for Q8_0 and IQ4_NL
// (kernels/cuda/gguf_gemv.cuh, gguf_gemm.cuh; split by type so no translation unit is slow to build).
#include "kernels/cuda/gguf_gemm.cuh"
#include "kernels/cuda/gguf_gemv.cuh"
#include "kernels/cuda/gguf_kernels.h"

namespace eli {

void gguf_gemv_q8_0_cuda(const void* args, const ExecContext& ctx) { gguf::gemv_cuda<gguf::BlockQ8_0>(args, ctx); }
void gguf_gemm_q8_0_cuda(const void* args, const ExecContext& ctx) { gguf::gemm_cuda<gguf::BlockQ8_0>(args, ctx); }
void gguf_gemv_iq4_nl_cuda(const void* args, const ExecContext& ctx) { gguf::gemv_cuda<gguf::BlockIQ4_NL>(args, ctx); }
void gguf_gemm_iq4_nl_cuda(const void* args, const ExecContext& ctx) { gguf::gemm_cuda<gguf::BlockIQ4_NL>(args, ctx); }

}  // namespace eli
