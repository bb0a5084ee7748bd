// kernels/cuda/wq_w8a8_internal.cuh: what the W8A8 CUDA translation units share (wq_w8a8.h for the
// public side): the workspace view, the activation quantizer's launcher and argument checks.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/wq_w8a8.h"
#include "kernels/ops.h"
#include "kernels/wq_matrix.h"

namespace eli {
namespace w8a8 {

// The workspace of m rows of k: codes (m, kp) then scales (m).
struct ActView {
  uint8_t* codes;
  float* scales;
  int64_t kp;
};

inline ActView act_view(void* ws, int64_t m, int64_t k) {
  ActView v;
  v.kp = wq_w8a8_padded_k(k);
  v.codes = static_cast<uint8_t*>(ws);
  v.scales = reinterpret_cast<float*>(v.codes + m * v.kp);
  return v;
}

// x (m, k) f32 rows (stride x_stride), RMSNorm'd when norm_weight != nullptr, quantized per row to
// int8 (fp8 = false) or e4m3 codes into `v` (zeros past k); static_scale: device pointer to one f32
// or nullptr (dynamic).
void quantize_rows(const float* x, int64_t x_stride, int64_t m, int64_t k, const float* norm_weight, float norm_eps,
                   float norm_offset, bool fp8, const float* static_scale, const ActView& v, cudaStream_t stream);

// The optional cuBLASLt FP8 GEMM (wq_w8a8_cublaslt.cu): whether ELI_W8A8_CUBLASLT=1, and the
// call itself (false: no cuBLASLt algorithm for this case; nothing was enqueued).
bool cublaslt_fp8_requested();
bool fp8_gemm_cublaslt(float* out, int64_t out_stride, const uint8_t* xq, const float* sx, int64_t kp,
                       const uint8_t* w, const float* sw, const float* bias, int64_t m, int64_t n, int64_t k,
                       bool accumulate, cudaStream_t stream);

// Checks common to both ops (caller errors: kInvalidArgument / kUnsupported).
void check_shape(int64_t m, int64_t n, int64_t k, const char* op);  // k <= 2^17: int32 dot products
void check_weight(const WqMatrix& w, bool fp8, const char* op);
void check_workspace(const void* ws, size_t bytes, int64_t m, int64_t k, const char* op);

}  // namespace w8a8
}  // namespace eli
