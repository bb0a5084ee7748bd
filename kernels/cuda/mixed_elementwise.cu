// kernels/cuda/mixed_elementwise.cu: the elementwise ops of the 16-bit (bf16 or f16) device path:
// NormCast (f32 rows -> RMS-normalised rows in bf16, f16 or f32, or added to f32 rows), GatedAct
// (gate|up -> act(gate) * up in bf16, f16 or f32; act SiLU or GELU-tanh), and RopeKvWrite (q/k RMSNorm + RoPE
// of q and k, q -> q_out, k/v -> their cache slots in one launch; f32, bf16 or f16 cache, q in f32
// or the cache's 16-bit type; the two 16-bit types never mix: bf16 q with an f16 cache, or f16 q
// with a bf16 cache, is rejected with kUnsupported; an int8 / fp8 e4m3 cache takes any q dtype and
// each k / v row is quantized by its warp with its per-(slot, kv head) scale, kv_quant.cuh).
//
// Semantics are the references' (kernels/ref/mixed_ref.cc, ref_kernels.h): f32 arithmetic, one
// rounding (to nearest even; f16 overflows to inf) when a bf16 / f16 value is stored; the RoPE
// angle is the f32 product float(pos) * inv_freq, cos/sin of it taken in double as the f32 rope
// kernel does; slots < 0 or >= n_slots are skipped.
// NormCast and GatedAct take 16-byte vector paths when the shapes and pointers allow (the
// model's buffers always do) and element-wise kernels otherwise.
// Every kernel is allocation-free and launches on ctx.stream (CUDA-graph capturable).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "eli/error.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/kv_quant.cuh"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda_tuning_knobs.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }

void check_act(DType dt, const char* what) {
  ELI_CHECK_KIND(kUnsupported, dt == DType::kF32 || dt == DType::kBF16 || dt == DType::kF16, what,
                 " must be float32, bfloat16 or float16, not ", dtype_name(dt));
}

// ---- NormCast: one block per row -------------------------------------------------------------
template <typename Out>
__global__ void norm_cast_kernel(Out* __restrict__ out, const float* __restrict__ x, const float* __restrict__ w,
                                 int64_t hidden, int64_t out_stride, int64_t x_stride, float eps, float offset,
                                 bool accumulate) {
  const int64_t r = blockIdx.x;
  const float* xr = x + r * x_stride;
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) ss += xr[j] * xr[j];
  ss = cuda::block_reduce_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(hidden) + eps);
  Out* o = out + r * out_stride;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) {
    const float v = xr[j] * inv * (w[j] + offset);
    o[j] = from_f32<Out>(accumulate ? to_f32(o[j]) + v : v);
  }
}

// ---- NormCast, vectorised: float4 loads of x and w, 4 outputs per store ------------------------
// For hidden % 4 == 0 with 16-byte aligned x rows and w and out rows aligned to 4 outputs (the
// model's buffers always are). Same arithmetic per element as norm_cast_kernel; only the order of
// the sum of squares differs (float4 lanes), within f32 rounding of it.
template <typename Out>
__global__ void norm_cast_vec4_kernel(Out* __restrict__ out, const float* __restrict__ x, const float* __restrict__ w,
                                      int64_t hidden4, int64_t out_stride, int64_t x_stride, float eps,
                                      float offset, bool accumulate) {
  const int64_t r = blockIdx.x;
  const float4* xr = reinterpret_cast<const float4*>(x + r * x_stride);
  const float4* w4 = reinterpret_cast<const float4*>(w);
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < hidden4; j += blockDim.x) {
    const float4 v = xr[j];
    ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
  }
  ss = cuda::block_reduce_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(hidden4 * 4) + eps);
  Out* o = out + r * out_stride;
  for (int64_t j = threadIdx.x; j < hidden4; j += blockDim.x) {
    const float4 v = xr[j], g = w4[j];
    struct alignas(4 * sizeof(Out)) Out4 {
      Out e[4];
    } q;
    float y[4] = {v.x * inv * (g.x + offset), v.y * inv * (g.y + offset), v.z * inv * (g.z + offset),
                  v.w * inv * (g.w + offset)};
    if (accumulate) {
      const Out4 prev = reinterpret_cast<const Out4*>(o)[j];
#pragma unroll
      for (int e = 0; e < 4; ++e) y[e] += to_f32(prev.e[e]);
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) q.e[e] = from_f32<Out>(y[e]);
    reinterpret_cast<Out4*>(o)[j] = q;
  }
}

// act(g): SiLU, or GELU with the tanh approximation (PyTorch's approximate="tanh").
__device__ __forceinline__ float gated_act(float g, bool gelu) {
  return gelu ? 0.5f * g * (1.0f + tanhf(0.7978845608f * (g + 0.044715f * g * g * g))) : g / (1.0f + expf(-g));
}

// ---- GatedAct: grid (column blocks, rows) ------------------------------------------------------
template <typename T>
__global__ void gated_act_kernel(T* __restrict__ out, const T* __restrict__ gate_up, int64_t r0, int64_t inter,
                                 int64_t out_stride, int64_t in_stride, bool gelu) {
  const int64_t r = r0 + blockIdx.y;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= inter) return;
  const T* g = gate_up + r * in_stride;
  const float gv = to_f32(g[j]);
  out[r * out_stride + j] = from_f32<T>(gated_act(gv, gelu) * to_f32(g[inter + j]));
}

// ---- GatedAct, vectorised for 16-bit T: 8 columns per thread, 16-byte loads and stores ----------
// For inter, in_stride and out_stride multiples of 8 and 16-byte aligned buffers (the model's
// always are): the same per-element arithmetic as gated_act_kernel, so bit-identical results.
template <typename T>
__global__ void gated_act_vec8_kernel(T* __restrict__ out, const T* __restrict__ gate_up, int64_t r0,
                                      int64_t inter8, int64_t out_stride, int64_t in_stride, bool gelu) {
  static_assert(sizeof(T) == 2, "16-bit types only");
  struct alignas(16) T8 {
    T e[8];
  };
  const int64_t r = r0 + blockIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= inter8) return;
  const T8* g = reinterpret_cast<const T8*>(gate_up + r * in_stride);
  const T8 gv = g[c], uv = g[inter8 + c];
  T8 o;
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    const float x = to_f32(gv.e[e]);
    o.e[e] = from_f32<T>(gated_act(x, gelu) * to_f32(uv.e[e]));
  }
  reinterpret_cast<T8*>(out + r * out_stride)[c] = o;
}

// ---- RopeKvWrite: grid (tokens, head groups), one warp per head -------------------------------
// Heads 0..nh-1 are q heads, nh..nh+nkv-1 k heads, then nkv v heads (copied). One warp per head
// (not one CTA looping over a token's heads): at decode the launch holds one token, and its
// latency is then one head's load -> RoPE -> store, not nh + 2 nkv of them in a row. The head's
// values are staged in shared memory (f32) so that the norm and the rotate-half pairs read
// finished data. Launched with programmatic dependent launch (kernels/cuda/pdl.cuh): the token's
// slot, position and the cos/sin of its first kRopePre pairs per lane (inputs uploaded before the
// step) are prepared while the previous kernel drains; the qkv rows are read after the wait.
constexpr int kRopeWarps = 4;
constexpr int kRopePre = 4;  // rotation pairs per lane prepared before the wait (all of them for hd <= 256)

template <typename Q, typename C>
__global__ void __launch_bounds__(32 * kRopeWarps)
    rope_kv_write_kernel(Q* __restrict__ q_out, C* __restrict__ k_cache, C* __restrict__ v_cache,
                         float* __restrict__ k_scale, float* __restrict__ v_scale, const float* __restrict__ qkv, const float* __restrict__ q_norm,
                         const float* __restrict__ k_norm, const int32_t* __restrict__ positions,
                         const int32_t* __restrict__ slot_mapping, const float* __restrict__ inv_freq,
                         const int32_t* __restrict__ table_of_token, int64_t t0, int nh, int nkv, int hd, int half,
                         int64_t qkv_stride, int64_t n_slots, float scaling, float eps) {
  extern __shared__ float stage[];  // (kRopeWarps, hd)
  const int64_t t = t0 + blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int head = static_cast<int>(blockIdx.y) * kRopeWarps + warp;
  const bool live = head < nh + 2 * nkv;
  const bool is_v = head >= nh + nkv, is_q = head < nh;
  const int64_t slot = slot_mapping[t];
  const bool slot_ok = slot >= 0 && slot < n_slots;
  const bool rotates = live && !is_v && (is_q || slot_ok);
  const int64_t table = table_of_token ? table_of_token[t] : 0;
  const float pos = static_cast<float>(positions[t]);
  // The angle is the f32 product float(pos) * inv_freq, its cos/sin taken in double (as kRope).
  double cs[kRopePre], sn[kRopePre];
#pragma unroll
  for (int k = 0; k < kRopePre; ++k) {
    const int i = lane + 32 * k;
    cs[k] = 1.0;
    sn[k] = 0.0;
    if (rotates && i < half) sincos(static_cast<double>(pos * inv_freq[table * half + i]), &sn[k], &cs[k]);
  }
  cuda::pdl_wait();
  cuda::pdl_launch_dependents();
  if (!live) return;
  float* buf = stage + static_cast<int64_t>(warp) * hd;
  const float* src = qkv + t * qkv_stride + static_cast<int64_t>(head) * hd;
  if (is_v) {  // v head: copy into the cache
    if (!slot_ok) return;
    const int64_t row = slot * nkv + (head - nh - nkv);
    if constexpr (cuda::KvQuant<C>::kQuant) {  // int8 / fp8: the row and its scale (kv_quant.cuh)
      cuda::kv_quantize_row_warp(v_cache + row * hd, v_scale + row, src, hd, lane);
    } else {
      C* dst = v_cache + row * hd;
      for (int d = lane; d < hd; d += 32) dst[d] = from_f32<C>(src[d]);
    }
    return;
  }
  if (!rotates) return;  // a k head without a cache slot
  const float* nw = is_q ? q_norm : k_norm;
  float inv = 1.f;
  if (nw != nullptr) {
    float ss = 0.f;
    for (int d = lane; d < hd; d += 32) ss += src[d] * src[d];
    ss = cuda::warp_reduce_sum(ss);
    inv = rsqrtf(ss / static_cast<float>(hd) + eps);
  }
  for (int d = lane; d < hd; d += 32) buf[d] = nw != nullptr ? src[d] * inv * nw[d] : src[d];
  __syncwarp();
  auto rotate = [&](int i, double c, double s) {
    c *= scaling;
    s *= scaling;
    const double x1 = buf[i], x2 = buf[i + half];
    buf[i] = static_cast<float>(x1 * c - x2 * s);
    buf[i + half] = static_cast<float>(x2 * c + x1 * s);
  };
#pragma unroll
  for (int k = 0; k < kRopePre; ++k) {
    const int i = lane + 32 * k;
    if (i < half) rotate(i, cs[k], sn[k]);
  }
  for (int i = lane + 32 * kRopePre; i < half; i += 32) {
    double s, c;
    sincos(static_cast<double>(pos * inv_freq[table * half + i]), &s, &c);
    rotate(i, c, s);
  }
  __syncwarp();
  if (is_q) {
    Q* dst = q_out + (t * nh + head) * hd;
    for (int d = lane; d < hd; d += 32) dst[d] = from_f32<Q>(buf[d]);
  } else {
    const int64_t row = slot * nkv + (head - nh);
    if constexpr (cuda::KvQuant<C>::kQuant) {
      cuda::kv_quantize_row_warp(k_cache + row * hd, k_scale + row, buf, hd, lane);
    } else {
      C* dst = k_cache + row * hd;
      for (int d = lane; d < hd; d += 32) dst[d] = from_f32<C>(buf[d]);
    }
  }
}

template <typename Q, typename C>
void launch_rope_kv_write(const RopeKvWriteArgs& a, cudaStream_t stream) {
  const size_t smem = static_cast<size_t>(kRopeWarps) * static_cast<size_t>(a.head_dim) * sizeof(float);
  const int64_t groups = (a.n_heads + 2 * a.n_kv_heads + kRopeWarps - 1) / kRopeWarps;
  ELI_CHECK(groups <= kMaxGridY, "rope_kv_write: ", a.n_heads, " + 2 x ", a.n_kv_heads, " heads exceed the grid");
  const bool pdl = cuda::pdl_enabled();
  cuda::apply_carveout_knob(reinterpret_cast<const void*>(rope_kv_write_kernel<Q, C>), cuda::Knob::kRopeCarveout);
  for (int64_t t0 = 0; t0 < a.n_tokens; t0 += INT_MAX) {
    const int64_t n = std::min<int64_t>(INT_MAX, a.n_tokens - t0);
    cuda::launch_kernel(rope_kv_write_kernel<Q, C>, dim3(static_cast<unsigned>(n), static_cast<unsigned>(groups)),
                        dim3(32 * kRopeWarps), smem, stream, pdl, static_cast<Q*>(a.q_out),
                        static_cast<C*>(a.k_cache), static_cast<C*>(a.v_cache), a.k_scale, a.v_scale, a.qkv, a.q_norm, a.k_norm,
                        a.positions, a.slot_mapping, a.inv_freq, a.table_of_token, t0, static_cast<int>(a.n_heads),
                        static_cast<int>(a.n_kv_heads), static_cast<int>(a.head_dim),
                        static_cast<int>(a.rot_dim / 2), a.qkv_stride, a.n_slots, a.attention_scaling, a.norm_eps);
  }
}

void rope_kv_write_cuda(const RopeKvWriteArgs& a, const ExecContext& ctx, DType cache) {
  check_act(a.q_dtype, "rope_kv_write q");
  ELI_CHECK(a.rot_dim >= 0 && a.rot_dim % 2 == 0 && a.rot_dim <= a.head_dim, "rope_kv_write: bad rot_dim ",
            a.rot_dim, " for head_dim ", a.head_dim);
  ELI_CHECK(a.n_heads > 0 && a.n_kv_heads > 0 && a.head_dim > 0 && a.head_dim <= 1024 &&
                a.qkv_stride >= (a.n_heads + 2 * a.n_kv_heads) * a.head_dim,
            "rope_kv_write: bad shape");
  // An int8 / fp8 cache: any q dtype, and both scale arrays.
  if (cache == DType::kI8 || cache == DType::kF8E4M3) {
    ELI_CHECK(a.k_scale != nullptr && a.v_scale != nullptr, "rope_kv_write: a ", dtype_name(cache),
              " KV cache needs k_scale and v_scale");
    if (a.n_tokens <= 0) return;
    cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
    const bool i8 = cache == DType::kI8;
    if (a.q_dtype == DType::kBF16) {
      i8 ? launch_rope_kv_write<__nv_bfloat16, int8_t>(a, stream) : launch_rope_kv_write<__nv_bfloat16, __nv_fp8_e4m3>(a, stream);
    } else if (a.q_dtype == DType::kF16) {
      i8 ? launch_rope_kv_write<__half, int8_t>(a, stream) : launch_rope_kv_write<__half, __nv_fp8_e4m3>(a, stream);
    } else {
      i8 ? launch_rope_kv_write<float, int8_t>(a, stream) : launch_rope_kv_write<float, __nv_fp8_e4m3>(a, stream);
    }
    return;
  }
  // q is f32 or a 16-bit type; with a 16-bit cache only that same type (no bf16 <-> f16 mixes).
  ELI_CHECK_KIND(kUnsupported, a.q_dtype == DType::kF32 || cache == DType::kF32 || a.q_dtype == cache,
                 "rope_kv_write: q dtype ", dtype_name(a.q_dtype), " cannot go with a ", dtype_name(cache),
                 " cache (q must be float32 or the cache dtype)");
  if (a.n_tokens <= 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  const bool qb = a.q_dtype == DType::kBF16, cb = cache == DType::kBF16;
  const bool qh = a.q_dtype == DType::kF16, ch = cache == DType::kF16;
  if (qb && cb) launch_rope_kv_write<__nv_bfloat16, __nv_bfloat16>(a, stream);
  else if (qb) launch_rope_kv_write<__nv_bfloat16, float>(a, stream);
  else if (cb) launch_rope_kv_write<float, __nv_bfloat16>(a, stream);
  else if (qh && ch) launch_rope_kv_write<__half, __half>(a, stream);
  else if (qh) launch_rope_kv_write<__half, float>(a, stream);
  else if (ch) launch_rope_kv_write<float, __half>(a, stream);
  else launch_rope_kv_write<float, float>(a, stream);
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  ELI_CHECK(b <= INT_MAX, "cuda elementwise: ", n, " elements per row exceed the grid limit");
  return static_cast<unsigned>(b);
}

}  // namespace

namespace {

// One launch of NormCast with Out the output element type: the float4 kernel where the shapes and
// pointers allow, else the element-wise one.
template <typename Out>
void launch_norm_cast(const NormCastArgs& a, cudaStream_t stream) {
  Out* out = static_cast<Out*>(a.out);
  const unsigned grid = static_cast<unsigned>(a.rows);
  if (a.hidden % 4 == 0 && a.x_stride % 4 == 0 && a.out_stride % 4 == 0 && aligned(a.x, 16) &&
      aligned(a.weight, 16) && aligned(a.out, 4 * sizeof(Out))) {
    norm_cast_vec4_kernel<Out><<<grid, cuda::threads_for(a.hidden / 4), 0, stream>>>(
        out, a.x, a.weight, a.hidden / 4, a.out_stride, a.x_stride, a.eps, a.weight_offset, a.accumulate);
  } else {
    norm_cast_kernel<Out><<<grid, cuda::threads_for(a.hidden), 0, stream>>>(
        out, a.x, a.weight, a.hidden, a.out_stride, a.x_stride, a.eps, a.weight_offset, a.accumulate);
  }
  ELI_CUDA_CHECK_LAUNCH();
}

// GatedAct with T the element type: the 8-wide kernel for 16-bit T where the shapes and pointers
// allow, else the element-wise one; rows beyond the grid's y limit in further launches.
template <typename T>
void launch_gated_act(const GatedActArgs& a, cudaStream_t stream) {
  const bool gelu = a.act == GatedAct::kGeluTanh;
  T* out = static_cast<T*>(a.out);
  const T* in = static_cast<const T*>(a.gate_up);
  const bool vec = sizeof(T) == 2 && a.inter % 8 == 0 && a.in_stride % 8 == 0 && a.out_stride % 8 == 0 &&
                   aligned(a.gate_up, 16) && aligned(a.out, 16);
  const unsigned bx = blocks_for(vec ? a.inter / 8 : a.inter);
  for (int64_t r0 = 0; r0 < a.rows; r0 += kMaxGridY) {
    const dim3 grid(bx, static_cast<unsigned>(std::min(kMaxGridY, a.rows - r0)));
    if constexpr (sizeof(T) == 2) {
      if (vec) {
        gated_act_vec8_kernel<T><<<grid, kThreads, 0, stream>>>(out, in, r0, a.inter / 8, a.out_stride, a.in_stride,
                                                                gelu);
        ELI_CUDA_CHECK_LAUNCH();
        continue;
      }
    }
    gated_act_kernel<T><<<grid, kThreads, 0, stream>>>(out, in, r0, a.inter, a.out_stride, a.in_stride, gelu);
    ELI_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void norm_cast_cuda(const void* args_ptr, const ExecContext& ctx) {
  const NormCastArgs& a = *static_cast<const NormCastArgs*>(args_ptr);
  check_act(a.out_dtype, "norm_cast out");
  ELI_CHECK(!a.accumulate || a.out_dtype == DType::kF32, "norm_cast: accumulate needs a float32 output");
  ELI_CHECK(a.hidden > 0 && a.rows >= 0 && a.out_stride >= a.hidden && a.x_stride >= a.hidden,
            "norm_cast: bad shape");
  if (a.rows == 0) return;
  ELI_CHECK(a.rows <= INT_MAX, "norm_cast: too many rows");
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  if (a.out_dtype == DType::kBF16) {
    launch_norm_cast<__nv_bfloat16>(a, stream);
  } else if (a.out_dtype == DType::kF16) {
    launch_norm_cast<__half>(a, stream);
  } else {
    launch_norm_cast<float>(a, stream);
  }
}

void gated_act_cuda(const void* args_ptr, const ExecContext& ctx) {
  const GatedActArgs& a = *static_cast<const GatedActArgs*>(args_ptr);
  check_act(a.dtype, "gated_act");
  ELI_CHECK(a.act == GatedAct::kSilu || a.act == GatedAct::kGeluTanh, "gated_act: no activation given");
  ELI_CHECK(a.rows >= 0 && a.inter >= 0 && a.out_stride >= a.inter && a.in_stride >= 2 * a.inter,
            "gated_act: bad shape");
  if (a.rows == 0 || a.inter == 0) return;
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);
  if (a.dtype == DType::kBF16) {
    launch_gated_act<__nv_bfloat16>(a, stream);
  } else if (a.dtype == DType::kF16) {
    launch_gated_act<__half>(a, stream);
  } else {
    launch_gated_act<float>(a, stream);
  }
}

void rope_kv_write_f32_cuda(const void* args_ptr, const ExecContext& ctx) {
  rope_kv_write_cuda(*static_cast<const RopeKvWriteArgs*>(args_ptr), ctx, DType::kF32);
}
void rope_kv_write_bf16_cuda(const void* args_ptr, const ExecContext& ctx) {
  rope_kv_write_cuda(*static_cast<const RopeKvWriteArgs*>(args_ptr), ctx, DType::kBF16);
}
void rope_kv_write_f16_cuda(const void* args_ptr, const ExecContext& ctx) {
  rope_kv_write_cuda(*static_cast<const RopeKvWriteArgs*>(args_ptr), ctx, DType::kF16);
}
void rope_kv_write_i8_cuda(const void* args_ptr, const ExecContext& ctx) {
  rope_kv_write_cuda(*static_cast<const RopeKvWriteArgs*>(args_ptr), ctx, DType::kI8);
}
void rope_kv_write_fp8_cuda(const void* args_ptr, const ExecContext& ctx) {
  rope_kv_write_cuda(*static_cast<const RopeKvWriteArgs*>(args_ptr), ctx, DType::kF8E4M3);
}

}  // namespace eli
