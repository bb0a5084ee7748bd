// kernels/cuda/wq_w8a8_table.cu: registers the W8A8 CUDA kernels (wq_w8a8.h) under
// (kGemv / kGemm, cuda, kInt8Channel / kI8 and kFp8Channel / kF8E4M3).
#include "kernels/cuda/wq_w8a8.h"
#include "kernels/registry.h"

namespace eli {

void add_wq_w8a8_cuda_kernels(std::vector<KernelEntry>& table) {
  table.push_back({Op::kGemv, DeviceKind::kCUDA, DType::kI8, "cuda", 10, wq_gemv_int8_channel_cuda, nullptr,
                   WeightFormat::kInt8Channel});
  table.push_back({Op::kGemm, DeviceKind::kCUDA, DType::kI8, "cuda", 10, wq_gemm_int8_channel_cuda, nullptr,
                   WeightFormat::kInt8Channel});
  table.push_back({Op::kGemv, DeviceKind::kCUDA, DType::kF8E4M3, "cuda", 10, wq_gemv_fp8_channel_cuda, nullptr,
                   WeightFormat::kFp8Channel});
  table.push_back({Op::kGemm, DeviceKind::kCUDA, DType::kF8E4M3, "cuda", 10, wq_gemm_fp8_channel_cuda, nullptr,
                   WeightFormat::kFp8Channel});
}

}  // namespace eli
