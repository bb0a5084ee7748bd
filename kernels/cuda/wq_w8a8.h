// kernels/cuda/wq_w8a8.h: the CUDA kernels of eli's W8A8 weight layouts (WeightFormat::kInt8Channel,
// kFp8Channel; semantics in kernels/wq_matrix.h), as plain C++ declarations for the registry table,
// the LinearMethod (workspace size), tests and benchmarks. Pure C++: includable from CPU builds.
//
// Both ops first quantize the f32 x rows per token into the workspace (wq_w8a8_quant.cu; GEMV:
// RMSNorm prologue fused), then:
//   Op::kGemv (m <= kGemvMaxRows): one CTA per few weight rows streams int8 / e4m3 weights with
//     16-byte loads; int8: dp4a int32 dot products; e4m3: decoded in registers, f32 FMAs
//     (wq_w8a8_gemv.cu). Bias, gated (gate rows then up rows) and accumulating epilogues.
//   Op::kGemm: tensor-core tiles (wq_w8a8_gemm.cu): int8 mma.sync m16n8k32 s8 -> s32; e4m3
//     mma.sync m16n8k32 e4m3 -> f32 where the device (sm_89+) and the loaded binary have it, else
//     each e4m3 pair widened exactly to f16 in registers and fed to mma m16n8k16 f16 -> f32.
//     Epilogue: acc * s_x[row] * s_w[col] + bias, stored or accumulated into f32 out.
//     ELI_W8A8_CUBLASLT=1 (read per call): the FP8 GEMM through cuBLASLt where it has an algorithm
//     (wq_w8a8_cublaslt.cu); opt-in until measured against the mma kernel.
// Any k (rows need not be 16-byte aligned: a byte-wise load path is taken then); x f32, out f32.
//
// Workspace (GemvArgs / GemmArgs::workspace, 16-byte aligned, >= wq_w8a8_workspace_bytes(m, k)):
// m rows of kp = round_up(k, 64) codes (zero past k), then m f32 scales.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace eli {

struct KernelEntry;
struct ExecContext;

constexpr int64_t kW8a8RowAlign = 64;  // x code rows are padded to a multiple of this

inline int64_t wq_w8a8_padded_k(int64_t k) { return (k + kW8a8RowAlign - 1) / kW8a8RowAlign * kW8a8RowAlign; }

inline size_t wq_w8a8_workspace_bytes(int64_t m, int64_t k) {
  const size_t codes = static_cast<size_t>(m) * static_cast<size_t>(wq_w8a8_padded_k(k));
  return codes + (static_cast<size_t>(m) * sizeof(float) + 15) / 16 * 16;
}

void wq_gemv_int8_channel_cuda(const void* args, const ExecContext& ctx);
void wq_gemm_int8_channel_cuda(const void* args, const ExecContext& ctx);
void wq_gemv_fp8_channel_cuda(const void* args, const ExecContext& ctx);
void wq_gemm_fp8_channel_cuda(const void* args, const ExecContext& ctx);

// Which FP8 GEMM path the current device takes: true for native e4m3 tensor cores (sm_89+ with a
// binary built for it), false for the f16 widening path. For tests and the benchmark.
bool wq_w8a8_fp8_native_gemm();

// Adds (kGemv and kGemm, cuda, kInt8Channel / kI8 and kFp8Channel / kF8E4M3).
void add_wq_w8a8_cuda_kernels(std::vector<KernelEntry>& table);

}  // namespace eli
