// kernels/cuda/gguf_quantize_x.cu: the GEMV prologue of the GGUF kernels: x rows (f32) quantized
// to 8-bit blocks of 32 in the workspace (layout: gguf::Q8View in gguf_blocks.cuh), with the
// RMSNorm of the row fused in (x * rsqrt(mean(x^2) + eps) * (g + offset) is what gets quantized).
//
// Per 32-block: d = max|v| / 127, q = round-to-nearest(v / d) in [-127, 127] (d = 0 and q = 0 for an
// all-zero block), s = d * sum(q). So |v - d q| <= d / 2 for every element: the only error of the
// GEMV's integer dot products (the tests' tolerance is built from this bound).
//
// Grid (ceil(blocks / 32), m), 256 threads: 8 threads per block, 4 elements each (one 16-byte load
// where x and its row stride allow). With a norm every CTA first sums x^2 over its whole row (read
// through L2 by the CTAs of a row; rows are at most a few 10 KB). Programmatic dependent launch:
// the kernel waits before it reads x or writes the workspace (pdl.cuh's contract).
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>

#include "kernels/cuda/sm_count.h"
#include "eli/error.h"
#include "kernels/cuda/gguf_blocks.cuh"
#include "kernels/cuda/gguf_gemv.cuh"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda/x_quant_tile.cuh"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace gguf {
namespace {

constexpr int kThreads = 256;
constexpr int kBlocksPerCta = kThreads / 8;

struct QuantParams {
  const float* x;
  const float* g;  // norm weight (k) or nullptr
  int8_t* qs;
  float* ds;
  int64_t k, x_stride, nb;  // nb = k / 32
  float eps, g_offset;
  bool vec;  // 16-byte loads of x
};

__global__ void __launch_bounds__(kThreads) quantize_x_kernel(const QuantParams p) {
  const int tid = threadIdx.x;
  const int64_t r = blockIdx.y;
  const float* x = p.x + r * p.x_stride;
  cuda::pdl_launch_dependents();
  cuda::pdl_wait();

  const float inv = p.g != nullptr ? cuda::row_rms_inverse<kThreads>(x, p.k, p.eps, p.vec) : 1.f;

  // Every lane runs the shuffles (groups of 8 aligned lanes share a block); lanes past the row's
  // last block compute on zeros and store nothing.
  const int64_t blk = static_cast<int64_t>(blockIdx.x) * kBlocksPerCta + tid / 8;
  const int sub = tid & 7;
  const bool valid = blk < p.nb;
  float v[4] = {0.f, 0.f, 0.f, 0.f};
  if (valid) cuda::load_lane(x, blk * kItemElems + 4 * sub, nullptr, p.g, p.g_offset, inv, p.vec, v);
  const cuda::TileCodes c = cuda::quantize_tile(v);
  if (valid) {
    const int64_t b = r * p.nb + blk;
    *reinterpret_cast<uint32_t*>(p.qs + b * kItemElems + 4 * sub) = c.packed;
    if (sub == 0) *reinterpret_cast<float2*>(p.ds + 2 * b) = make_float2(c.d, c.d * static_cast<float>(c.sum));
  }
}

}  // namespace

void quantize_x(const GemvArgs& a, void* ws, cudaStream_t stream, bool pdl) {
  const int64_t nb = a.k / kItemElems;
  const Q8View v = q8_view(ws, a.m, a.k);
  QuantParams p;
  p.x = a.x;
  p.g = a.norm_weight;
  p.qs = v.qs;
  p.ds = v.ds;
  p.k = a.k;
  p.x_stride = a.x_stride;
  p.nb = nb;
  p.eps = a.norm_eps;
  p.g_offset = a.norm_weight_offset;
  p.vec = (reinterpret_cast<uintptr_t>(a.x) & 15u) == 0 && (a.m == 1 || a.x_stride % 4 == 0);
  const int64_t gx = (nb + kBlocksPerCta - 1) / kBlocksPerCta;
  ELI_CHECK(gx <= INT_MAX && a.m <= 65535, "gguf gemv: x of ", a.m, " x ", a.k, " exceeds the grid limit");
  cuda::launch_kernel(quantize_x_kernel, dim3(static_cast<unsigned>(gx), static_cast<unsigned>(a.m)), dim3(kThreads), 0,
                      stream, pdl, p);
}



}  // namespace gguf

size_t gguf_gemv_workspace_bytes(int64_t m, int64_t k) { return gguf::q8_workspace_bytes(m, k); }

}  // namespace eli
