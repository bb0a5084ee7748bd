// kernels/cuda/cuda_kernels.h: the CUDA backend's contribution to the kernel registry. Plain C++
// (no CUDA includes); kernels/kernel_table.cc calls add_cuda_kernels under #ifdef ELI_WITH_CUDA.
//
// Every CUDA kernel reads ExecContext::stream as a cudaStream_t (nullptr: legacy default stream),
// takes device pointers in its args struct, and throws eli::Error(kDevice) if the launch fails.
#pragma once

#include <vector>

#include "kernels/registry.h"

namespace eli {

void add_cuda_kernels(std::vector<KernelEntry>& table);
// prepare_kernels (registry.h) for GPU `device`: its cuBLASLt handle (gemm_cublaslt.cu).
void prepare_cuda_kernels(int device);

// Individual launchers (registered by add_cuda_kernels; declared for benchmarks and tests).
void embedding_f32_cuda(const void* args, const ExecContext& ctx);   // EmbeddingArgs, f32 table
void embedding_bf16_cuda(const void* args, const ExecContext& ctx);  // EmbeddingArgs, bf16 table
void embedding_f16_cuda(const void* args, const ExecContext& ctx);   // EmbeddingArgs, f16 table
void attention_f32_cuda(const void* args, const ExecContext& ctx);   // AttentionArgs, f32 cache
// 16-bit path (kernels/cuda/attention_bf16.cu; bf16 or f16 cache): paged flash attention for
// prefill, split-K decode.
void attention_bf16_cuda(const void* args, const ExecContext& ctx);  // AttentionArgs, bf16 cache
void attention_f16_cuda(const void* args, const ExecContext& ctx);   // AttentionArgs, f16 cache
void attention_i8_cuda(const void* args, const ExecContext& ctx);    // int8 cache + scales (attention_kvquant.cu)
void attention_fp8_cuda(const void* args, const ExecContext& ctx);   // fp8 e4m3 cache + scales
// Decode GEMV (kernels/cuda/gemv.cu) and GEMM through cuBLASLt (kernels/cuda/gemm_cublaslt.cu).
void gemv_bf16_cuda(const void* args, const ExecContext& ctx);       // GemvArgs, bf16 weights
void gemv_f16_cuda(const void* args, const ExecContext& ctx);        // GemvArgs, f16 weights
void gemv_f32_cuda(const void* args, const ExecContext& ctx);        // GemvArgs, f32 weights
void gemm_bf16_cuda(const void* args, const ExecContext& ctx);       // GemmArgs, bf16 weights
void gemm_f16_cuda(const void* args, const ExecContext& ctx);        // GemmArgs, f16 weights
void gemm_f32_cuda(const void* args, const ExecContext& ctx);        // GemmArgs, f32 weights
// Elementwise ops (kernels/cuda/mixed_elementwise.cu).
void norm_cast_cuda(const void* args, const ExecContext& ctx);       // NormCastArgs
void gated_act_cuda(const void* args, const ExecContext& ctx);       // GatedActArgs
void rope_kv_write_f32_cuda(const void* args, const ExecContext& ctx);   // RopeKvWriteArgs, f32 cache
void rope_kv_write_bf16_cuda(const void* args, const ExecContext& ctx);  // RopeKvWriteArgs, bf16 cache
void rope_kv_write_f16_cuda(const void* args, const ExecContext& ctx);   // RopeKvWriteArgs, f16 cache
void rope_kv_write_i8_cuda(const void* args, const ExecContext& ctx);    // int8 cache + scales
void rope_kv_write_fp8_cuda(const void* args, const ExecContext& ctx);   // fp8 e4m3 cache + scales
// Sampling on the device (kernels/cuda/sampling.cu).
void sample_cuda(const void* args, const ExecContext& ctx);          // SampleArgs
void scatter_tokens_cuda(const void* args, const ExecContext& ctx);  // ScatterTokensArgs

}  // namespace eli
