// kernels/cuda/cuda_kernel_table.cu: registers every CUDA kernel (the only list of them).
#include "kernels/cuda/cuda_kernels.h"

namespace eli {

void add_cuda_kernels(std::vector<KernelEntry>& table) {
  table.push_back({Op::kRmsNorm, DeviceKind::kCUDA, DType::kF32, "cuda", 10, rmsnorm_f32_cuda, nullptr});
  table.push_back({Op::kEmbedding, DeviceKind::kCUDA, DType::kF32, "cuda", 10, embedding_f32_cuda, nullptr});
  table.push_back({Op::kEmbedding, DeviceKind::kCUDA, DType::kBF16, "cuda", 10, embedding_bf16_cuda, nullptr});
}

}  // namespace eli
