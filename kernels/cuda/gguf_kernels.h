// kernels/cuda/gguf_kernels.h: the CUDA kernels of GGUF block-quantized weights
// (WeightFormat::kGgufBlocks), as plain C++ declarations for the registry table
// (cuda_kernel_table.cu), tests and benchmarks.
//
// Op::kGemv (GemvArgs): x f32 is first quantized to 8-bit blocks in args.workspace (at least
// gguf_gemv_workspace_bytes(m, k), 16-byte aligned; kernels/cuda/gguf_quantize_x.cu, the RMSNorm
// prologue fused), then one MMVQ-style kernel reads the weight blocks as stored (integer dot
// products per 32 weights, per-block scales; kernels/cuda/gguf_gemv.cuh).
// Op::kGemm (GemmArgs, x bf16 or f32, out f32 or bf16): weight tiles dequantized to bf16 in shared
// memory feed tensor-core MMAs (kernels/cuda/gguf_gemm.cuh); f32 x is rounded to bf16 on the way.
// Both need k to be a multiple of the block size and w aligned to gcd(block bytes, 16), which any
// row or whole-block offset of a 16-byte aligned buffer is (checked: kInvalidArgument).
#pragma once

#include <cstddef>
#include <cstdint>

#include "eli/dtype.h"
#include "kernels/registry.h"

namespace eli {

// Workspace bytes the GEMV needs for m rows of k (x as 8-bit blocks: m * (k / 32) * 40).
size_t gguf_gemv_workspace_bytes(int64_t m, int64_t k);

// The launchers of one block type (dtype in the name); registered by add_gguf_cuda_kernels.
#define ELI_GGUF_CUDA_DECL(name)                                     \
  void gguf_gemv_##name##_cuda(const void* args, const ExecContext& ctx); \
  void gguf_gemm_##name##_cuda(const void* args, const ExecContext& ctx);
ELI_GGUF_CUDA_DECL(q8_0)
ELI_GGUF_CUDA_DECL(q4_0)
ELI_GGUF_CUDA_DECL(q4_1)
ELI_GGUF_CUDA_DECL(q5_0)
ELI_GGUF_CUDA_DECL(q5_1)
ELI_GGUF_CUDA_DECL(q4_k)
ELI_GGUF_CUDA_DECL(q5_k)
ELI_GGUF_CUDA_DECL(q6_k)
ELI_GGUF_CUDA_DECL(q2_k)
ELI_GGUF_CUDA_DECL(q3_k)
ELI_GGUF_CUDA_DECL(iq4_nl)
ELI_GGUF_CUDA_DECL(iq4_xs)
#undef ELI_GGUF_CUDA_DECL

// Adds (kGemv and kGemm, cuda, kGgufBlocks, dtype) for every block type above.
void add_gguf_cuda_kernels(std::vector<KernelEntry>& table);

}  // namespace eli
