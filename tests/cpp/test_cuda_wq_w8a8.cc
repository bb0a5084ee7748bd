// tests/cpp/test_cuda_wq_w8a8.cc: the CUDA kernels of the W8A8 layouts (kernels/cuda/wq_w8a8*.cu;
// kInt8Channel and kFp8Channel) against kernels/ref/wq_ref.cc (same per-token activation
// quantization, dequantized weights, double accumulation), on odd shapes: n odd, k not a multiple
// of 64 and not of 16 (the byte-wise weight path), m = 1, 3, 8, 9 (GEMV) and 1 .. 257 (GEMM),
// dynamic and static activation scales, bias, RMSNorm prologue, gated (silu / gelu-tanh) and
// accumulating epilogues, padded row strides, and an all-zero activation row.
//
// Tolerance per output: rel * sum_j |x_j w_j| (rel 1e-5: f32 accumulation, int8 dot products are
// exact; 1e-3 for the e4m3 tensor-core GEMM, whose MMAs accumulate with fewer bits), plus,
// with the RMSNorm prologue only (the GPU's double sum of squares may round the normalised x one
// ulp apart from the CPU's, flipping a code at a rounding boundary), one activation step times
// max |w| of the row (a few such flips at most). Without a norm the codes are bit-identical to the
// reference's (same f32 operations), so a wrong index or scale fails by far more than this.
// Also the engine end to end on the compressed-tensors W8A8 fixtures and the online fp8 option:
// CUDA logits against the CPU engine. Skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "eli/engine.h"
#include "eli/error.h"
#include "kernels/cuda/wq_w8a8.h"
#include "kernels/ops.h"
#include "kernels/ref/fp8.h"
#include "kernels/ref/wq_ref.h"
#include "kernels/registry.h"
#include "runtime/device/device.h"
#include "tests/cpp/device_test_util.h"

namespace eli {
namespace {

struct Case {
  int64_t m, n, k;
  bool norm = false, bias = false, accumulate = false, static_scale = false;
  GatedAct gated = GatedAct::kNone;
  int64_t x_pad = 0, out_pad = 0;
};

std::string describe(const Case& c) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "m=%lld n=%lld k=%lld norm=%d bias=%d acc=%d static=%d gated=%d pads=%lld/%lld",
                static_cast<long long>(c.m), static_cast<long long>(c.n), static_cast<long long>(c.k), c.norm, c.bias,
                c.accumulate, c.static_scale, static_cast<int>(c.gated), static_cast<long long>(c.x_pad),
                static_cast<long long>(c.out_pad));
  return buf;
}

double act(GatedAct g, double y) {
  if (g == GatedAct::kGeluTanh) return 0.5 * y * (1.0 + std::tanh(0.7978845608028654 * (y + 0.044715 * y * y * y)));
  return y / (1.0 + std::exp(-y));
}

class CudaWqW8a8 : public CudaParamTest<WeightFormat> {
 protected:
  bool fp8() const { return GetParam() == WeightFormat::kFp8Channel; }
  DType dtype() const { return fp8() ? DType::kF8E4M3 : DType::kI8; }
  const KernelEntry& kernel(Op op) { return get_kernel(op, DeviceKind::kCUDA, GetParam(), dtype()); }

  // Random (n, k) codes (e4m3: finite, mostly moderate) and per-row scales.
  void make_weights(int64_t n, int64_t k, std::vector<uint8_t>& q, std::vector<float>& scales) {
    q.resize(static_cast<size_t>(n * k));
    std::uniform_int_distribution<int> i8(-127, 127), f8(0, 0x6F);  // e4m3 |v| <= 2^7 * 1.875 = 240
    for (uint8_t& b : q) b = fp8() ? static_cast<uint8_t>(f8(rng_) | (rng_() & 0x80)) : static_cast<uint8_t>(i8(rng_));
    scales = random_floats(static_cast<size_t>(n), rng_, 0.002f, 0.02f);
  }

  void run(const Case& c, Op op);

  std::mt19937 rng_{29};
};

void CudaWqW8a8::run(const Case& c, Op op) {
  SCOPED_TRACE(describe(c) + (op == Op::kGemv ? " gemv" : " gemm"));
  const bool gated = c.gated != GatedAct::kNone;
  const int64_t n_out = gated ? c.n / 2 : c.n, xs = c.k + c.x_pad, os = n_out + c.out_pad;
  std::vector<uint8_t> q;
  std::vector<float> sw;
  make_weights(c.n, c.k, q, sw);
  std::vector<float> x = random_floats(static_cast<size_t>(c.m * xs), rng_, -2.f, 2.f);
  if (c.m > 1) std::fill(x.begin() + xs, x.begin() + xs + c.k, 0.0f);  // row 1 all zero (scale 1)
  if (c.m > 2) x[2 * xs] = 40.0f;  // an outlier: a coarse step for the rest of row 2
  std::vector<float> g = random_floats(static_cast<size_t>(c.k), rng_, 0.5f, 1.5f);
  std::vector<float> bias = random_floats(static_cast<size_t>(c.n), rng_, -1.f, 1.f);
  std::vector<float> out0 = random_floats(static_cast<size_t>(c.m * os), rng_, -1.f, 1.f);
  const float act_scale = fp8() ? 2.0f / 448.0f * 0.75f : 2.0f / 127.0f * 0.75f;  // some values clamp
  const float eps = 1e-5f, g_off = 0.25f;

  // Host operands for the reference and the bound.
  WqMatrix hw;
  hw.q = q.data();
  hw.scales = sw.data();
  hw.format = GetParam();
  hw.act_scale = c.static_scale ? &act_scale : nullptr;
  std::vector<float> want = out0;
  const bool use_norm = c.norm && op == Op::kGemv;
  // e4m3 tensor cores (sm_89+) accumulate with fewer than f32's bits inside an MMA: a looser factor
  // for the FP8 GEMM there (below sm_89 the f16-widened MMAs accumulate in f32).
  const bool e4m3_mma = dev_->properties().compute_capability >= 89;
  const double rel = !fp8() ? 1e-5 : op == Op::kGemm && e4m3_mma ? 1e-3 : 2e-5;
  if (op == Op::kGemv) {
    GemvArgs r{want.data(), x.data(), &hw, c.bias ? bias.data() : nullptr, use_norm ? g.data() : nullptr,
               c.m, c.n, c.k, os, xs};
    r.norm_eps = eps;
    r.norm_weight_offset = g_off;
    r.gated = c.gated;
    r.accumulate = c.accumulate;
    wq_gemv_ref(&r, ctx_);
  } else {
    GemmArgs r{want.data(), x.data(), &hw, c.bias ? bias.data() : nullptr, c.m, c.n, c.k, os, xs};
    r.x_dtype = DType::kF32;
    r.out_dtype = DType::kF32;
    r.accumulate = c.accumulate;
    wq_gemm_ref(&r, ctx_);
  }
  // The bound (see the header), from the quantized rows as the reference forms them.
  std::vector<double> tol(static_cast<size_t>(c.m * os), 0.0);
  std::vector<float> wrow(static_cast<size_t>(c.k)), xn(static_cast<size_t>(c.k)), xe(static_cast<size_t>(c.k));
  std::vector<int8_t> qi(static_cast<size_t>(c.k));
  std::vector<uint8_t> qf(static_cast<size_t>(c.k));
  for (int64_t i = 0; i < c.m; ++i) {
    const float* xi = x.data() + i * xs;
    double inv = 1.0, ss = 0.0;
    for (int64_t j = 0; j < c.k; ++j) ss += static_cast<double>(xi[j]) * xi[j];
    if (use_norm) inv = 1.0 / std::sqrt(ss / static_cast<double>(c.k) + eps);
    for (int64_t j = 0; j < c.k; ++j) xn[j] = use_norm ? static_cast<float>(xi[j] * inv * (static_cast<double>(g[j]) + g_off)) : xi[j];
    const float st = c.static_scale ? act_scale : 0.0f;
    const float s = fp8() ? wq_quantize_row_fp8(xn.data(), c.k, qf.data(), st) : wq_quantize_row_int8(xn.data(), c.k, qi.data(), st);
    for (int64_t j = 0; j < c.k; ++j) xe[j] = fp8() ? fp8_e4m3_to_f32(qf[j]) * s : qi[j] * s;
    const double step = fp8() ? 32.0 * s : s;  // the largest code step
    std::vector<double> ty(static_cast<size_t>(c.n)), y(static_cast<size_t>(c.n));
    for (int64_t r = 0; r < c.n; ++r) {
      wq_dequant_row(hw, c.k, r, wrow.data());
      double sum_abs = 0.0, wmax = 0.0, yy = c.bias ? bias[r] : 0.0;
      for (int64_t j = 0; j < c.k; ++j) {
        sum_abs += std::fabs(static_cast<double>(xe[j]) * wrow[j]);
        wmax = std::max(wmax, std::fabs(static_cast<double>(wrow[j])));
        yy += static_cast<double>(xe[j]) * wrow[j];
      }
      ty[r] = rel * sum_abs + (use_norm ? 3.0 * step * wmax : 0.0) + 1e-6;
      y[r] = yy;
    }
    for (int64_t j = 0; j < n_out; ++j) {
      double t = ty[j];
      if (gated) t = 1.2 * ty[j] * (std::fabs(y[j + n_out]) + ty[j + n_out]) + (std::fabs(act(c.gated, y[j])) + 1.2 * ty[j]) * ty[j + n_out];
      tol[i * os + j] = t + 1e-6 * std::fabs(want[i * os + j]);
    }
  }

  DeviceBuffer<uint8_t> dq(*dev_, q);
  DeviceBuffer<float> dsw(*dev_, sw), dx(*dev_, x), dg(*dev_, g), db(*dev_, bias), dout(*dev_, out0);
  DeviceBuffer<float> das(*dev_, std::vector<float>{act_scale});
  const size_t ws_bytes = wq_w8a8_workspace_bytes(c.m, c.k);
  DeviceBuffer<uint8_t> dws(*dev_, ws_bytes);
  WqMatrix dw = hw;
  dw.q = dq.get();
  dw.scales = dsw.get();
  dw.act_scale = c.static_scale ? das.get() : nullptr;
  if (op == Op::kGemv) {
    GemvArgs a{dout.get(), dx.get(), &dw, c.bias ? db.get() : nullptr, use_norm ? dg.get() : nullptr,
               c.m, c.n, c.k, os, xs};
    a.norm_eps = eps;
    a.norm_weight_offset = g_off;
    a.gated = c.gated;
    a.accumulate = c.accumulate;
    a.workspace = dws.get();
    a.workspace_bytes = ws_bytes;
    kernel(Op::kGemv).fn(&a, ctx_);
  } else {
    GemmArgs a{dout.get(), dx.get(), &dw, c.bias ? db.get() : nullptr, c.m, c.n, c.k, os, xs};
    a.x_dtype = DType::kF32;
    a.out_dtype = DType::kF32;
    a.accumulate = c.accumulate;
    a.workspace = dws.get();
    a.workspace_bytes = ws_bytes;
    kernel(Op::kGemm).fn(&a, ctx_);
  }
  dev_->default_stream().synchronize();
  const std::vector<float> got = dout.download();
  size_t bad = 0;
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < os; ++j) {
      const size_t at = static_cast<size_t>(i * os + j);
      const bool pad = j >= n_out;  // padding columns are never written
      const double lim = pad ? 0.0 : tol[at];
      if (!(std::fabs(static_cast<double>(got[at]) - want[at]) <= lim)) {
        if (++bad <= 4) ADD_FAILURE() << "[" << i << ", " << j << "] got " << got[at] << " want " << want[at] << " tol " << lim;
      }
    }
  }
  EXPECT_EQ(bad, 0u);
}

TEST_P(CudaWqW8a8, GemvMatchesReference) {
  const Case cases[] = {
      {1, 37, 256},
      {1, 129, 100, true, true},                          // k % 16 != 0: byte-wise weight loads
      {3, 65, 160, false, true, true},                    // k % 64 != 0, accumulate
      {8, 257, 512, true, true, false, true},             // static act scale
      {9, 33, 72, true, false, false, false, GatedAct::kNone, 5, 3},  // two launches of rows, strides
      {4, 64, 320, true, true, false, false, GatedAct::kSilu},
      {3, 66, 99, false, true, true, false, GatedAct::kGeluTanh, 1, 2},
      {8, 258, 1000, true, true, true, true, GatedAct::kSilu},
      {2, 4096 + 2, 4096, true, false, false, false, GatedAct::kSilu},
  };
  for (const Case& c : cases) run(c, Op::kGemv);
}

TEST_P(CudaWqW8a8, GemmMatchesReference) {
  const Case cases[] = {
      {1, 37, 256},
      {3, 129, 100, false, true},
      {8, 131, 160, false, true, true},
      {9, 257, 320, false, true, false, true},
      {33, 300, 99, false, false, true, false, GatedAct::kNone, 3, 5},
      {257, 129, 512, false, true, true},
      {130, 1001, 1000, false, true, false, true},
      {257, 255, 64},
  };
  for (const Case& c : cases) run(c, Op::kGemm);
}

// The opt-in cuBLASLt FP8 path (ELI_W8A8_CUBLASLT=1; where cuBLASLt has no algorithm the mma
// kernel runs, so this passes on every device): aligned shapes, bias, accumulate, static scales.
TEST_P(CudaWqW8a8, GemmCublasLtPathMatchesReference) {
  if (!fp8()) GTEST_SKIP() << "FP8 only";
  struct EnvGuard {
    EnvGuard() { ::setenv("ELI_W8A8_CUBLASLT", "1", 1); }
    ~EnvGuard() { ::unsetenv("ELI_W8A8_CUBLASLT"); }
  } env;
  const Case cases[] = {
      {16, 128, 256},
      {33, 272, 160, false, true, true},
      {257, 512, 512, false, true, false, true},
      {64, 96, 1024, false, false, true, false, GatedAct::kNone, 16, 16},
      {9, 130, 100},  // k % 16 != 0: the mma kernel
  };
  for (const Case& c : cases) run(c, Op::kGemm);
}

TEST_P(CudaWqW8a8, RejectsBadArguments) {
  const int64_t k = 64, n = 4;
  std::vector<uint8_t> q;
  std::vector<float> sw;
  make_weights(n, k, q, sw);
  DeviceBuffer<uint8_t> dq(*dev_, q), dws(*dev_, wq_w8a8_workspace_bytes(2, k));
  DeviceBuffer<float> dsw(*dev_, sw), dx(*dev_, static_cast<size_t>(2 * k)), dout(*dev_, 8);
  WqMatrix w;
  w.q = dq.get();
  w.scales = dsw.get();
  w.format = GetParam();
  GemvArgs a{dout.get(), dx.get(), &w, nullptr, nullptr, 2, n, k, n, k};
  a.workspace = dws.get();
  a.workspace_bytes = wq_w8a8_workspace_bytes(2, k) - 1;  // one byte short
  expect_error_kind([&] { kernel(Op::kGemv).fn(&a, ctx_); }, ErrorKind::kInvalidArgument, "a short workspace was accepted");
  a.workspace_bytes = wq_w8a8_workspace_bytes(2, k);
  a.n = 3;
  a.gated = GatedAct::kSilu;  // odd n
  EXPECT_THROW(kernel(Op::kGemv).fn(&a, ctx_), Error);
  WqMatrix other = w;
  other.format = fp8() ? WeightFormat::kInt8Channel : WeightFormat::kFp8Channel;
  GemmArgs gm{dout.get(), dx.get(), &other, nullptr, 2, n, k, n, k};
  gm.x_dtype = DType::kF32;
  gm.workspace = dws.get();
  gm.workspace_bytes = wq_w8a8_workspace_bytes(2, k);
  EXPECT_THROW(kernel(Op::kGemm).fn(&gm, ctx_), Error);  // the other format
  gm.w = &w;
  gm.x_dtype = DType::kBF16;  // x must be f32
  expect_error_kind([&] { kernel(Op::kGemm).fn(&gm, ctx_); }, ErrorKind::kUnsupported, "a bf16 x was accepted");
}

INSTANTIATE_TEST_SUITE_P(CudaW8a8, CudaWqW8a8, ::testing::Values(WeightFormat::kInt8Channel, WeightFormat::kFp8Channel),
                         [](const ::testing::TestParamInfo<WeightFormat>& i) {
                           return std::string(i.param == WeightFormat::kFp8Channel ? "fp8" : "int8");
                         });

// End to end: the compressed-tensors W8A8 fixtures (tests/data/models_quantized, dynamic per-token
// activations) and quantization="fp8" on a dense model, CUDA (graphs on and off) against the CPU
// engine. The GEMM path normalises with the f32 NormCast kernel on CUDA (the CPU's is f64), so a few
// activation codes may flip; the bound (5% of the largest logit) is far below what a wrong kernel
// gives (a random product).
TEST(CudaWqW8a8Engine, FixturesMatchCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const std::string data = ELI_TEST_DATA_DIR;
  struct Model {
    std::string dir, quantization;
  };
  const Model models[] = {{data + "/models_quantized/ct_int8_dynamic", "auto"},
                          {data + "/models_quantized/ct_fp8_dynamic", "auto"},
                          {data + "/models/llama_base", "fp8"}};
  for (const Model& md : models) {
    SCOPED_TRACE(md.dir);
    EngineConfig c = tiny_engine_config(md.dir);
    c.quantization = md.quantization;
    Engine cpu(c);
    c.device = "cuda";
    c.gpu_memory_bytes = uint64_t{1} << 30;
    for (bool graphs : {true, false}) {
      c.enable_cuda_graphs = graphs;
      Engine gpu(c);
      for (const std::vector<int32_t>& prompt : engine_test_prompts()) {
        const std::vector<float> a = gpu.score(prompt), b = cpu.score(prompt);
        ASSERT_EQ(a.size(), b.size());
        const auto [worst, scale] = logit_gap(a, b);
        std::printf("%s graphs %d prompt %zu: max |logit| %.4g, max |delta| %.4g\n", md.dir.c_str(), graphs ? 1 : 0,
                    prompt.size(), scale, worst);
        EXPECT_LE(worst, 0.05 * scale);
      }
      // Decode (the GEMV) too: a few greedy steps run without errors.
      EXPECT_EQ(greedy_tokens(gpu, {3, 17, 42}, 6).size(), 6u);
    }
  }
}

}  // namespace
}  // namespace eli
