// kernels/cpu/cpu_kernels.h: the optimized CPU kernels (registry signature). Each is a template
// over the instruction set whose inner loops it uses (cpu_isa.h); the drivers are shared, the
// instantiations for kGeneric (any CPU), kAvx2 and kAvx512 (x86 builds) live in the driver files.
// Semantics are exactly those of the reference kernels (kernels/ref/ref_kernels.h).
#pragma once

#include "kernels/cpu/cpu_isa.h"
#include "kernels/registry.h"

namespace eli {

template <CpuIsaKind I> void gemm_cpu_f32(const void* args, const ExecContext& ctx);       // GemmArgs
template <CpuIsaKind I> void gemm_cpu_bf16(const void* args, const ExecContext& ctx);      // GemmArgs
template <CpuIsaKind I> void gemv_cpu_f32(const void* args, const ExecContext& ctx);       // GemvArgs
template <CpuIsaKind I> void gemv_cpu_bf16(const void* args, const ExecContext& ctx);      // GemvArgs
template <CpuIsaKind I> void attention_cpu(const void* args, const ExecContext& ctx);      // AttentionArgs
template <CpuIsaKind I> void attention_cpu_i8(const void* args, const ExecContext& ctx);   // int8 KV cache
template <CpuIsaKind I> void attention_cpu_fp8(const void* args, const ExecContext& ctx);  // fp8 e4m3 KV cache
template <CpuIsaKind I> void norm_cast_cpu(const void* args, const ExecContext& ctx);      // NormCastArgs
template <CpuIsaKind I> void gated_act_cpu(const void* args, const ExecContext& ctx);      // GatedActArgs
template <CpuIsaKind I> void rope_kv_write_cpu(const void* args, const ExecContext& ctx);  // RopeKvWriteArgs
template <CpuIsaKind I> void rope_kv_write_cpu_i8(const void* args, const ExecContext& ctx);   // int8 KV
template <CpuIsaKind I> void rope_kv_write_cpu_fp8(const void* args, const ExecContext& ctx);  // fp8 KV
template <CpuIsaKind I> void embedding_cpu_f32(const void* args, const ExecContext& ctx);  // EmbeddingArgs
template <CpuIsaKind I> void embedding_cpu_bf16(const void* args, const ExecContext& ctx); // EmbeddingArgs

// The ISA table of I (the AVX tables exist only in x86 builds).
template <CpuIsaKind I>
inline const CpuIsa& isa_table() {
#ifdef ELI_X86
  if constexpr (I == CpuIsaKind::kAvx2) return cpu_isa_avx2();
  if constexpr (I == CpuIsaKind::kAvx512) return cpu_isa_avx512();
#endif
  static_assert(I == CpuIsaKind::kGeneric || I == CpuIsaKind::kAvx2 || I == CpuIsaKind::kAvx512,
                "no table for this ISA");
  return cpu_isa_generic();
}

// Explicit instantiation of one KernelFn template for every ISA of this build.
#ifdef ELI_X86
#define ELI_CPU_INSTANTIATE(fn)                                                 \
  template void fn<CpuIsaKind::kGeneric>(const void*, const ExecContext&);     \
  template void fn<CpuIsaKind::kAvx2>(const void*, const ExecContext&);         \
  template void fn<CpuIsaKind::kAvx512>(const void*, const ExecContext&);
#else
#define ELI_CPU_INSTANTIATE(fn) \
  template void fn<CpuIsaKind::kGeneric>(const void*, const ExecContext&);
#endif

}  // namespace eli
