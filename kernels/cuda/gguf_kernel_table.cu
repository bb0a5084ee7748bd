// kernels/cuda/gguf_kernel_table.cu: registers the CUDA kernels of GGUF block-quantized weights
// (kernels/cuda/gguf_kernels.h) under (kGemv / kGemm, cuda, WeightFormat::kGgufBlocks, block dtype).
#include "kernels/cuda/gguf_kernels.h"

namespace eli {

void add_gguf_cuda_kernels(std::vector<KernelEntry>& table) {
  struct Row {
    DType dtype;
    KernelFn gemv, gemm;
  };
  const Row rows[] = {
      {DType::kQ8_0, gguf_gemv_q8_0_cuda, gguf_gemm_q8_0_cuda},
      {DType::kQ4_0, gguf_gemv_q4_0_cuda, gguf_gemm_q4_0_cuda},
      {DType::kQ4_1, gguf_gemv_q4_1_cuda, gguf_gemm_q4_1_cuda},
      {DType::kQ5_0, gguf_gemv_q5_0_cuda, gguf_gemm_q5_0_cuda},
      {DType::kQ5_1, gguf_gemv_q5_1_cuda, gguf_gemm_q5_1_cuda},
      {DType::kQ4_K, gguf_gemv_q4_k_cuda, gguf_gemm_q4_k_cuda},
      {DType::kQ5_K, gguf_gemv_q5_k_cuda, gguf_gemm_q5_k_cuda},
      {DType::kQ6_K, gguf_gemv_q6_k_cuda, gguf_gemm_q6_k_cuda},
      {DType::kQ2_K, gguf_gemv_q2_k_cuda, gguf_gemm_q2_k_cuda},
      {DType::kQ3_K, gguf_gemv_q3_k_cuda, gguf_gemm_q3_k_cuda},
      {DType::kIQ4_NL, gguf_gemv_iq4_nl_cuda, gguf_gemm_iq4_nl_cuda},
      {DType::kIQ4_XS, gguf_gemv_iq4_xs_cuda, gguf_gemm_iq4_xs_cuda},
  };
  for (const Row& r : rows) {
    table.push_back({Op::kGemv, DeviceKind::kCUDA, r.dtype, "cuda", 10, r.gemv, nullptr, WeightFormat::kGgufBlocks});
    table.push_back({Op::kGemm, DeviceKind::kCUDA, r.dtype, "cuda", 10, r.gemm, nullptr, WeightFormat::kGgufBlocks});
  }
}

}  // namespace eli
