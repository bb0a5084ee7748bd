// kernels/cuda/cuda_kernel_table.cu: registers every CUDA kernel (the only list of them).
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/gguf_kernels.h"
#include "kernels/cuda/wq_w8a8.h"
#include "kernels/cuda/wq_w4a16.cuh"

namespace eli {

void add_cuda_kernels(std::vector<KernelEntry>& table) {
  table.push_back({Op::kEmbedding, DeviceKind::kCUDA, DType::kF32, "cuda", 10, embedding_f32_cuda, nullptr});
  table.push_back({Op::kEmbedding, DeviceKind::kCUDA, DType::kBF16, "cuda", 10, embedding_bf16_cuda, nullptr});
  table.push_back({Op::kEmbedding, DeviceKind::kCUDA, DType::kF16, "cuda", 10, embedding_f16_cuda, nullptr});
  table.push_back({Op::kAttention, DeviceKind::kCUDA, DType::kF32, "cuda", 10, attention_f32_cuda, nullptr});
  table.push_back({Op::kAttention, DeviceKind::kCUDA, DType::kBF16, "cuda", 10, attention_bf16_cuda, nullptr});
  table.push_back({Op::kAttention, DeviceKind::kCUDA, DType::kF16, "cuda", 10, attention_f16_cuda, nullptr});
  table.push_back({Op::kAttention, DeviceKind::kCUDA, DType::kI8, "cuda", 10, attention_i8_cuda, nullptr});
  table.push_back({Op::kAttention, DeviceKind::kCUDA, DType::kF8E4M3, "cuda", 10, attention_fp8_cuda, nullptr});
  table.push_back({Op::kGemv, DeviceKind::kCUDA, DType::kBF16, "cuda", 10, gemv_bf16_cuda, nullptr});
  table.push_back({Op::kGemv, DeviceKind::kCUDA, DType::kF16, "cuda", 10, gemv_f16_cuda, nullptr});
  table.push_back({Op::kGemv, DeviceKind::kCUDA, DType::kF32, "cuda", 10, gemv_f32_cuda, nullptr});
  table.push_back({Op::kGemm, DeviceKind::kCUDA, DType::kBF16, "cublaslt", 10, gemm_bf16_cuda, nullptr});
  table.push_back({Op::kGemm, DeviceKind::kCUDA, DType::kF16, "cublaslt", 10, gemm_f16_cuda, nullptr});
  table.push_back({Op::kGemm, DeviceKind::kCUDA, DType::kF32, "cublaslt", 10, gemm_f32_cuda, nullptr});
  table.push_back({Op::kNormCast, DeviceKind::kCUDA, DType::kF32, "cuda", 10, norm_cast_cuda, nullptr});
  table.push_back({Op::kGatedAct, DeviceKind::kCUDA, DType::kF32, "cuda", 10, gated_act_cuda, nullptr});
  table.push_back({Op::kRopeKvWrite, DeviceKind::kCUDA, DType::kF32, "cuda", 10, rope_kv_write_f32_cuda, nullptr});
  table.push_back({Op::kRopeKvWrite, DeviceKind::kCUDA, DType::kBF16, "cuda", 10, rope_kv_write_bf16_cuda, nullptr});
  table.push_back({Op::kRopeKvWrite, DeviceKind::kCUDA, DType::kF16, "cuda", 10, rope_kv_write_f16_cuda, nullptr});
  table.push_back({Op::kRopeKvWrite, DeviceKind::kCUDA, DType::kI8, "cuda", 10, rope_kv_write_i8_cuda, nullptr});
  table.push_back({Op::kRopeKvWrite, DeviceKind::kCUDA, DType::kF8E4M3, "cuda", 10, rope_kv_write_fp8_cuda, nullptr});
  table.push_back({Op::kSample, DeviceKind::kCUDA, DType::kF32, "cuda", 10, sample_cuda, nullptr});
  table.push_back({Op::kScatterTokens, DeviceKind::kCUDA, DType::kF32, "cuda", 10, scatter_tokens_cuda, nullptr});
  add_gguf_cuda_kernels(table);  // GGUF block-quantized weights (kernels/cuda/gguf_kernel_table.cu)
  add_wq_w8a8_cuda_kernels(table);  // W8A8 int8 / e4m3 channel weights (kernels/cuda/wq_w8a8_table.cu)
  // Weight-only grouped integer layouts (kernels/cuda/wq_w4a16.cuh).
  table.push_back({Op::kGemv, DeviceKind::kCUDA, DType::kU8, "cuda", 10, wq_w4a16_gemv_cuda, nullptr, WeightFormat::kInt4Grouped});
  table.push_back({Op::kGemm, DeviceKind::kCUDA, DType::kU8, "cuda", 10, wq_w4a16_gemm_cuda, nullptr, WeightFormat::kInt4Grouped});
  table.push_back({Op::kGemv, DeviceKind::kCUDA, DType::kU8, "cuda", 10, wq_w8a16_gemv_cuda, nullptr, WeightFormat::kInt8Grouped});
  table.push_back({Op::kGemm, DeviceKind::kCUDA, DType::kU8, "cuda", 10, wq_w8a16_gemm_cuda, nullptr, WeightFormat::kInt8Grouped});
}

}  // namespace eli
