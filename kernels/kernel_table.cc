// kernels/kernel_table.cc: THE list of kernels of this build. Every kernel is added here,
// explicitly (static-library linking cannot drop them); registry.cc serves lookups from it.
//
// Priorities: ref 0, generic threaded CPU 10, AVX2 20, AVX-512 30; CUDA entries come from add_cuda_kernels().
#include <utility>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/quant_matmul.h"
#include "kernels/ref/dequant_ref.h"
#include "kernels/ref/ref_kernels.h"
#include "kernels/ref/wq_ref.h"
#include "kernels/cpu/wq_isa.h"
#include "kernels/registry.h"

#ifdef ELI_WITH_CUDA
#include "kernels/cuda/cuda_kernels.h"
#endif

namespace eli {

namespace {

constexpr int kPrioRef = 0;
constexpr int kPrioGeneric = 10;
constexpr int kPrioAvx2 = 20;
constexpr int kPrioAvx512 = 30;

// The optimized CPU kernels of one instruction set.
template <CpuIsaKind I>
void add_cpu_isa(std::vector<KernelEntry>& t, const char* variant, int prio, bool (*usable)()) {
  constexpr DeviceKind kCpu = DeviceKind::kCPU;
  t.push_back({Op::kEmbedding, kCpu, DType::kF32, variant, prio, embedding_cpu_f32<I>, usable});
  t.push_back({Op::kEmbedding, kCpu, DType::kBF16, variant, prio, embedding_cpu_bf16<I>, usable});
  t.push_back({Op::kGemm, kCpu, DType::kF32, variant, prio, gemm_cpu_f32<I>, usable});
  t.push_back({Op::kGemm, kCpu, DType::kBF16, variant, prio, gemm_cpu_bf16<I>, usable});
  t.push_back({Op::kGemv, kCpu, DType::kF32, variant, prio, gemv_cpu_f32<I>, usable});
  t.push_back({Op::kGemv, kCpu, DType::kBF16, variant, prio, gemv_cpu_bf16<I>, usable});
  t.push_back({Op::kNormCast, kCpu, DType::kF32, variant, prio, norm_cast_cpu<I>, usable});
  t.push_back({Op::kGatedAct, kCpu, DType::kF32, variant, prio, gated_act_cpu<I>, usable});
  t.push_back({Op::kRopeKvWrite, kCpu, DType::kF32, variant, prio, rope_kv_write_cpu<I>, usable});
  t.push_back({Op::kAttention, kCpu, DType::kF32, variant, prio, attention_cpu<I>, usable});
  // Quantized KV cache (int8 / fp8 e4m3 with per-(slot, kv head) scales).
  t.push_back({Op::kRopeKvWrite, kCpu, DType::kI8, variant, prio, rope_kv_write_cpu_i8<I>, usable});
  t.push_back({Op::kRopeKvWrite, kCpu, DType::kF8E4M3, variant, prio, rope_kv_write_cpu_fp8<I>, usable});
  t.push_back({Op::kAttention, kCpu, DType::kI8, variant, prio, attention_cpu_i8<I>, usable});
  t.push_back({Op::kAttention, kCpu, DType::kF8E4M3, variant, prio, attention_cpu_fp8<I>, usable});
}

// GGUF block matmuls (WeightFormat::kGgufBlocks): x quantized per block to 8 bits, integer dot
// products with `isa` (quant_matmul.h). AVX-512 machines run the AVX2 entries.
void add_cpu_quant(std::vector<KernelEntry>& t, CpuIsaKind isa, const char* variant, int prio, bool (*usable)()) {
  for (DType q : kGgufBlockTypes)
    for (Op op : {Op::kGemv, Op::kGemm})
      t.push_back({op, DeviceKind::kCPU, q, variant, prio, quant_matmul_cpu_kernel(op, q, isa), usable,
                   WeightFormat::kGgufBlocks});
}

// Hugging Face quantized layouts (kernels/wq_matrix.h): one key per (format, storage dtype).
void add_wq_kernels(std::vector<KernelEntry>& t) {
  constexpr DeviceKind kCpu = DeviceKind::kCPU;
  const std::pair<WeightFormat, DType> keys[] = {{WeightFormat::kInt4Grouped, DType::kU8},
                                                 {WeightFormat::kInt8Grouped, DType::kU8},
                                                 {WeightFormat::kInt8Channel, DType::kI8},
                                                 {WeightFormat::kFp8Channel, DType::kF8E4M3}};
  for (const auto& [f, dt] : keys) {
    t.push_back({Op::kGemv, kCpu, dt, "ref", kPrioRef, wq_gemv_ref, nullptr, f});
    t.push_back({Op::kGemm, kCpu, dt, "ref", kPrioRef, wq_gemm_ref, nullptr, f});
    t.push_back({Op::kGemv, kCpu, dt, "generic", kPrioGeneric, wq_gemv_cpu_generic, nullptr, f});
    t.push_back({Op::kGemm, kCpu, dt, "generic", kPrioGeneric, wq_gemm_cpu_generic, nullptr, f});
#ifdef ELI_X86
    t.push_back({Op::kGemv, kCpu, dt, "avx2", kPrioAvx2, wq_gemv_cpu_avx2, cpu_has_avx2, f});
    t.push_back({Op::kGemm, kCpu, dt, "avx2", kPrioAvx2, wq_gemm_cpu_avx2, cpu_has_avx2, f});
#endif
  }
}

}  // namespace

std::vector<KernelEntry> build_kernel_table() {
  constexpr DeviceKind kCpu = DeviceKind::kCPU;
  std::vector<KernelEntry> t;
  // References.
  t.push_back({Op::kEmbedding, kCpu, DType::kF32, "ref", kPrioRef, embedding_ref_f32, nullptr});
  t.push_back({Op::kEmbedding, kCpu, DType::kBF16, "ref", kPrioRef, embedding_ref_bf16, nullptr});
  t.push_back({Op::kEmbedding, kCpu, DType::kF16, "ref", kPrioRef, embedding_ref_f16, nullptr});
  t.push_back({Op::kAttention, kCpu, DType::kF32, "ref", kPrioRef, attention_ref, nullptr});
  t.push_back({Op::kAttention, kCpu, DType::kBF16, "ref", kPrioRef, attention_ref_bf16, nullptr});
  t.push_back({Op::kAttention, kCpu, DType::kF16, "ref", kPrioRef, attention_ref_f16, nullptr});
  t.push_back({Op::kGemv, kCpu, DType::kF32, "ref", kPrioRef, gemv_ref_f32, nullptr});
  t.push_back({Op::kGemv, kCpu, DType::kBF16, "ref", kPrioRef, gemv_ref_bf16, nullptr});
  t.push_back({Op::kGemv, kCpu, DType::kF16, "ref", kPrioRef, gemv_ref_f16, nullptr});
  t.push_back({Op::kGemm, kCpu, DType::kF32, "ref", kPrioRef, gemm_ref_f32, nullptr});
  t.push_back({Op::kGemm, kCpu, DType::kBF16, "ref", kPrioRef, gemm_ref_bf16, nullptr});
  t.push_back({Op::kGemm, kCpu, DType::kF16, "ref", kPrioRef, gemm_ref_f16, nullptr});
  t.push_back({Op::kNormCast, kCpu, DType::kF32, "ref", kPrioRef, norm_cast_ref, nullptr});
  t.push_back({Op::kGatedAct, kCpu, DType::kF32, "ref", kPrioRef, gated_act_ref, nullptr});
  t.push_back({Op::kRopeKvWrite, kCpu, DType::kF32, "ref", kPrioRef, rope_kv_write_ref_f32, nullptr});
  t.push_back({Op::kRopeKvWrite, kCpu, DType::kBF16, "ref", kPrioRef, rope_kv_write_ref_bf16, nullptr});
  t.push_back({Op::kRopeKvWrite, kCpu, DType::kF16, "ref", kPrioRef, rope_kv_write_ref_f16, nullptr});
  t.push_back({Op::kRopeKvWrite, kCpu, DType::kI8, "ref", kPrioRef, rope_kv_write_ref_i8, nullptr});
  t.push_back({Op::kRopeKvWrite, kCpu, DType::kF8E4M3, "ref", kPrioRef, rope_kv_write_ref_fp8, nullptr});
  t.push_back({Op::kAttention, kCpu, DType::kI8, "ref", kPrioRef, attention_ref_i8, nullptr});
  t.push_back({Op::kAttention, kCpu, DType::kF8E4M3, "ref", kPrioRef, attention_ref_fp8, nullptr});
  t.push_back({Op::kSample, kCpu, DType::kF32, "ref", kPrioRef, sample_ref, nullptr});
  t.push_back({Op::kScatterTokens, kCpu, DType::kF32, "ref", kPrioRef, scatter_tokens_ref, nullptr});
  for (DType q : kGgufBlockTypes) {
    t.push_back({Op::kDequant, kCpu, q, "ref", kPrioRef, dequant_ref_kernel(q), nullptr, WeightFormat::kGgufBlocks});
    for (Op op : {Op::kGemv, Op::kGemm})
      t.push_back({op, kCpu, q, "ref", kPrioRef, quant_matmul_ref_kernel(op, q), nullptr, WeightFormat::kGgufBlocks});
    // Row lookups of a block table (the token embedding kept as stored; one row dequantized per token).
    t.push_back({Op::kEmbedding, kCpu, q, "ref", kPrioRef, gguf_embedding_ref_kernel(q), nullptr,
                 WeightFormat::kGgufBlocks});
  }
  add_wq_kernels(t);
  // Optimized CPU kernels.
  t.push_back({Op::kSample, kCpu, DType::kF32, "cpu", kPrioGeneric, sample_cpu, nullptr});
  add_cpu_isa<CpuIsaKind::kGeneric>(t, "generic", kPrioGeneric, nullptr);
  add_cpu_quant(t, CpuIsaKind::kGeneric, "generic", kPrioGeneric, nullptr);
#ifdef ELI_X86
  add_cpu_isa<CpuIsaKind::kAvx2>(t, "avx2", kPrioAvx2, cpu_has_avx2);
  add_cpu_isa<CpuIsaKind::kAvx512>(t, "avx512", kPrioAvx512, cpu_has_avx512);
  add_cpu_quant(t, CpuIsaKind::kAvx2, "avx2", kPrioAvx2, cpu_has_avx2);
#endif
#ifdef ELI_WITH_CUDA
  add_cuda_kernels(t);
#endif
  return t;
}

void prepare_kernels(DeviceKind device, int index) {
#ifdef ELI_WITH_CUDA
  if (device == DeviceKind::kCUDA) prepare_cuda_kernels(index);
#else
  (void)device;
  (void)index;
#endif
}

}  // namespace eli
