// kernels/cpu/wq_cpu.cc: the CPU GEMV / GEMM driver of eli's quantized weight layouts
// (kernels/wq_matrix.h), shared by every instruction set (inner loops: wq_isa.h).
//
// Per call: the activation rows are prepared once (RMSNorm prologue of the GEMV, act-order gather,
// per-token int8 / e4m3 quantization of the W8A8 formats), then output columns are split over the
// thread pool; each weight row is read once per call and dotted with every activation row while it
// is in cache (the weights are dequantized in registers: y = sum_g s_g * (x_g . (q_g - z_g)) for the
// grouped formats, s_x * s_w * (qx . qw) for W8A8). The GEMV then applies its epilogue (gated
// activation, accumulate).
#include <algorithm>
#include <cmath>
#include <vector>

#include "eli/error.h"
#include "kernels/cpu/wq_isa.h"
#include "kernels/ref/activation.h"
#include "kernels/ref/fp8.h"
#include "kernels/ref/wq_ref.h"
#include "runtime/core/thread_pool.h"

namespace eli {
namespace {

void check_matrix(const WqMatrix& w, int64_t k) {
  const bool grouped = w.format == WeightFormat::kInt4Grouped || w.format == WeightFormat::kInt8Grouped;
  ELI_CHECK(w.q != nullptr && w.scales != nullptr, "wq: weight without data or scales");
  ELI_CHECK(grouped || w.format == WeightFormat::kInt8Channel || w.format == WeightFormat::kFp8Channel,
            "wq: not a quantized layout: ", weight_format_name(w.format));
  if (grouped) {
    ELI_CHECK(w.zeros != nullptr && w.group_size > 0 && k % w.group_size == 0, "wq: group size ", w.group_size,
              " does not divide k ", k);
  }
  if (w.format == WeightFormat::kInt4Grouped) {
    ELI_CHECK(k % 32 == 0 && w.group_size % 32 == 0, "wq: int4 rows need k and the group size % 32 == 0");
  }
}

// Activation rows in the form the dot products read.
struct Acts {
  int64_t m = 0, k = 0, groups = 1;
  std::vector<float> x;      // (m, k) f32 rows (e4m3 formats: the decoded codes, unscaled)
  std::vector<int8_t> qx;    // (m, k) int8 rows (kInt8Channel)
  std::vector<float> sx;     // (m) per-token scales (W8A8)
  std::vector<uint8_t> codes;   // (k) one row's e4m3 codes
  std::vector<float> gathered;  // (k) one row gathered through the act-order permutation
};

void prepare(const WqMatrix& w, const float* x, int64_t x_stride, int64_t m, int64_t k, Acts& a) {
  a.m = m;
  a.k = k;
  a.groups = wq_groups(w, k);
  // Buffers grow and are kept (thread_local owners): a step allocates nothing once warm.
  a.x.resize(static_cast<size_t>(m * k));
  a.gathered.resize(static_cast<size_t>(k));
  a.codes.resize(static_cast<size_t>(k));
  a.qx.resize(static_cast<size_t>(m * k));
  a.sx.resize(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; ++i) {
    const float* src = x + i * x_stride;
    if (w.perm != nullptr) {  // act-order: stored column j multiplies x[perm[j]]
      for (int64_t j = 0; j < k; ++j) a.gathered[j] = src[w.perm[j]];
      src = a.gathered.data();
    }
    float* dst = a.x.data() + i * k;
    if (w.format == WeightFormat::kInt8Channel) {
      a.sx[i] = wq_quantize_row_int8(src, k, a.qx.data() + i * k, w.act_scale ? *w.act_scale : 0.0f);
    } else if (w.format == WeightFormat::kFp8Channel) {
      a.sx[i] = wq_quantize_row_fp8(src, k, a.codes.data(), w.act_scale ? *w.act_scale : 0.0f);
      for (int64_t j = 0; j < k; ++j) dst[j] = fp8_e4m3_to_f32(a.codes[j]);
    } else {
      for (int64_t j = 0; j < k; ++j) dst[j] = src[j];
    }
  }
}

// x_i . w_j, the weight dequantized in registers by the ISA's dot products.
inline float dot(const WqIsa& isa, const WqMatrix& w, const Acts& a, const float* table, int64_t i, int64_t j) {
  const int64_t k = a.k, groups = a.groups, gs = k / groups;
  const float* xi = a.x.data() + i * k;
  float acc = 0.0f;
  switch (w.format) {
    case WeightFormat::kInt4Grouped: {
      const uint8_t* q = static_cast<const uint8_t*>(w.q) + j * (k / 2);
      for (int64_t g = 0; g < groups; ++g) {
        acc += w.scales[j * groups + g] * isa.dot_u4(q + g * gs / 2, xi + g * gs, gs / 32, w.zeros[j * groups + g]);
      }
      return acc;
    }
    case WeightFormat::kInt8Grouped: {
      const uint8_t* q = static_cast<const uint8_t*>(w.q) + j * k;
      for (int64_t g = 0; g < groups; ++g) {
        acc += w.scales[j * groups + g] * isa.dot_u8(q + g * gs, xi + g * gs, gs, w.zeros[j * groups + g]);
      }
      return acc;
    }
    case WeightFormat::kInt8Channel: {
      const int8_t* q = static_cast<const int8_t*>(w.q) + j * k;
      return static_cast<float>(isa.dot_i8(a.qx.data() + i * k, q, k)) * (a.sx[i] * w.scales[j]);
    }
    default: {  // kFp8Channel
      const uint8_t* q = static_cast<const uint8_t*>(w.q) + j * k;
      return isa.dot_fp8(q, xi, k, table) * (a.sx[i] * w.scales[j]);
    }
  }
}

// y[i * y_stride + j] = bias[j] + (x_i . w_j) for i < m, j in [j0, j1). Activation rows go in
// blocks small enough to stay in cache while every weight row of [j0, j1) passes over them (a
// prefill's whole activation matrix would not).
void product(const WqIsa& isa, const WqMatrix& w, const Acts& a, const float* bias, int64_t j0, int64_t j1, float* y,
             int64_t y_stride) {
  const float* table = fp8_e4m3_table();
  const int64_t block = std::max<int64_t>(1, (int64_t{256} << 10) / (a.k * 4));
  for (int64_t i0 = 0; i0 < a.m; i0 += block) {
    const int64_t i1 = std::min(a.m, i0 + block);
    for (int64_t j = j0; j < j1; ++j) {
      const float b = bias != nullptr ? bias[j] : 0.0f;
      for (int64_t i = i0; i < i1; ++i) y[i * y_stride + j] = b + dot(isa, w, a, table, i, j);
    }
  }
}

void gemv(const WqIsa& isa, const void* args, const ExecContext& ctx) {
  const auto& a = *static_cast<const GemvArgs*>(args);
  const auto& w = *static_cast<const WqMatrix*>(a.w);
  ELI_CHECK(a.m >= 0 && a.n >= 0 && a.k > 0, "wq gemv: bad sizes");
  check_matrix(w, a.k);
  const bool gated = a.gated != GatedAct::kNone;
  ELI_CHECK(!gated || a.n % 2 == 0, "wq gemv: a gated activation needs an even n, got ", a.n);
  if (a.m == 0 || a.n == 0) return;
  const float* x = a.x;
  int64_t x_stride = a.x_stride;
  // Owned by the calling thread; bound to references so that the pool's lambdas capture these
  // buffers (a thread_local named inside a lambda would be the worker's own, empty instance).
  thread_local std::vector<float> tls_xn, tls_y;
  thread_local Acts tls_acts;
  std::vector<float>& xn = tls_xn;  // normalised rows
  std::vector<float>& y = tls_y;    // (m, n) products before the epilogue
  Acts& acts = tls_acts;
  if (a.norm_weight != nullptr) {
    xn.resize(static_cast<size_t>(a.m * a.k));
    for (int64_t i = 0; i < a.m; ++i) {
      const float* src = a.x + i * a.x_stride;
      double ss = 0.0;
      for (int64_t j = 0; j < a.k; ++j) ss += static_cast<double>(src[j]) * src[j];
      // As the reference rounds it (the W8A8 formats quantize these values: same inputs, same codes).
      const double inv = 1.0 / std::sqrt(ss / static_cast<double>(a.k) + static_cast<double>(a.norm_eps));
      for (int64_t j = 0; j < a.k; ++j) {
        xn[i * a.k + j] = static_cast<float>(src[j] * inv * (static_cast<double>(a.norm_weight[j]) + a.norm_weight_offset));
      }
    }
    x = xn.data();
    x_stride = a.k;
  }
  prepare(w, x, x_stride, a.m, a.k, acts);
  y.resize(static_cast<size_t>(a.m * a.n));
  parallel_for(ctx.pool, a.n, [&](int64_t j0, int64_t j1) { product(isa, w, acts, a.bias, j0, j1, y.data(), a.n); }, 8);
  const int64_t n_out = gated ? a.n / 2 : a.n;
  for (int64_t i = 0; i < a.m; ++i) {
    float* out = a.out + i * a.out_stride;
    const float* yi = y.data() + i * a.n;
    for (int64_t j = 0; j < n_out; ++j) {
      const float v = gated ? gated_act_value(a.gated, yi[j]) * yi[j + n_out] : yi[j];
      out[j] = a.accumulate ? out[j] + v : v;
    }
  }
}

void gemm(const WqIsa& isa, const void* args, const ExecContext& ctx) {
  const auto& a = *static_cast<const GemmArgs*>(args);
  const auto& w = *static_cast<const WqMatrix*>(a.w);
  ELI_CHECK(a.m >= 0 && a.n >= 0 && a.k > 0, "wq gemm: bad sizes");
  ELI_CHECK_KIND(kUnsupported, a.x_dtype == DType::kF32 && a.out_dtype == DType::kF32,
                 "wq gemm (cpu): x and out must be float32");
  check_matrix(w, a.k);
  if (a.m == 0 || a.n == 0) return;
  thread_local Acts tls_acts;
  thread_local std::vector<float> tls_y;
  Acts& acts = tls_acts;           // references: captured by the pool's lambdas (see gemv)
  std::vector<float>& y = tls_y;   // (m, n) products when accumulating
  prepare(w, static_cast<const float*>(a.x), a.x_stride, a.m, a.k, acts);
  float* out = static_cast<float*>(a.out);
  if (!a.accumulate) {
    parallel_for(ctx.pool, a.n, [&](int64_t j0, int64_t j1) { product(isa, w, acts, a.bias, j0, j1, out, a.out_stride); }, 8);
    return;
  }
  y.resize(static_cast<size_t>(a.m * a.n));
  parallel_for(ctx.pool, a.n, [&](int64_t j0, int64_t j1) { product(isa, w, acts, a.bias, j0, j1, y.data(), a.n); }, 8);
  for (int64_t i = 0; i < a.m; ++i) {
    for (int64_t j = 0; j < a.n; ++j) out[i * a.out_stride + j] += y[i * a.n + j];
  }
}

}  // namespace

void wq_gemv_cpu_generic(const void* args, const ExecContext& ctx) { gemv(wq_isa_generic(), args, ctx); }
void wq_gemm_cpu_generic(const void* args, const ExecContext& ctx) { gemm(wq_isa_generic(), args, ctx); }
#ifdef ELI_X86
void wq_gemv_cpu_avx2(const void* args, const ExecContext& ctx) { gemv(wq_isa_avx2(), args, ctx); }
void wq_gemm_cpu_avx2(const void* args, const ExecContext& ctx) { gemm(wq_isa_avx2(), args, ctx); }
#endif

}  // namespace eli
