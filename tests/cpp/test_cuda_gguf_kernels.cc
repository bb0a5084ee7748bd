// tests/cpp/test_cuda_gguf_kernels.cc: the CUDA kernels of GGUF block-quantized weights
// (kernels/cuda/gguf_*.cu: Op::kGemv and Op::kGemm under WeightFormat::kGgufBlocks) for every
// block type, against the reference: weights dequantized by kernels/ref/dequant_ref.cc (or, for a
// type it lacks, by the host build of the decoders, kernels/cuda/gguf_blocks.cuh, which
// test_cuda_gguf_blocks_host.cc checks against gguf-py in CI), then an f64 product on the host. Odd n, k an odd number of 256-superblocks (and one k long enough that
// a GEMV thread takes two items of a row), row strides wider than the rows, norm prologue, bias,
// gated epilogue (SiLU, GELU-tanh) and accumulate; the columns between n and the row stride must
// stay untouched. Skips with "no CUDA device" without a GPU.
//
// Tolerances (each output gets its own bound, not a global epsilon):
//  - GEMV: x (after the RMSNorm) is quantized per 32-block to d * q with d = max|x_b| / 127, so
//    |x_j - d q_j| <= d / 2; the integer dot products are exact, so
//    |y - y_ref| <= sum_j |w_j| d_b(j) / 2  (+ 1e-4 sum_j |w_j x_j| + 1e-5 for f32 scale products,
//    the f32 norm and the summation). Gated outputs: |act(g) u - act(g') u'| <= L tg (|u| + tu) +
//    |act(g)| tu with L = 1.2 >= max |act'| (SiLU 1.10, GELU-tanh 1.13).
//  - GEMM: each weight is rounded to bf16 once (relative 2^-9) and bf16 x is exact on both sides,
//    so |y - y_ref| <= 2^-8 sum_j |w_j x_j| + 1e-5 (twice the rounding bound), plus 2^-8 |y| for a
//    bf16 output; f32 x is rounded to bf16 in the kernel too: 2^-7 sum_j |w_j x_j|.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "eli/engine.h"
#include "eli/error.h"
#include "kernels/cuda/gguf_blocks.cuh"
#include "kernels/ops.h"
#include "kernels/ref/dequant_ref.h"
#include "kernels/ref/float_convert.h"
#include "kernels/registry.h"
#include "runtime/device/device.h"
#include "tests/cpp/device_test_util.h"
#include "tests/cpp/gguf_test_blocks.h"

namespace eli {
namespace {

size_t q8_bytes(int64_t m, int64_t k) { return static_cast<size_t>(m) * static_cast<size_t>(k / 32) * 40; }

class CudaGgufKernels : public CudaParamTest<DType> {
 protected:
  const KernelEntry& kernel(Op op) { return get_kernel(op, DeviceKind::kCUDA, WeightFormat::kGgufBlocks, GetParam()); }

  // n x k random weight blocks and their reference dequantization (row-major f32).
  void make_weights(int64_t n, int64_t k, std::vector<uint8_t>& blocks, std::vector<float>& wref) {
    blocks = gguf_test::random_rows(GetParam(), n, k, rng_);
    wref.assign(static_cast<size_t>(n * k), 0.f);
    const int64_t row_bytes = k / dtype_info(GetParam()).block_elems * dtype_info(GetParam()).block_bytes;
    const bool have_ref = dequant_ref_kernel(GetParam()) != nullptr;
    for (int64_t r = 0; r < n; ++r) {
      const uint8_t* row = blocks.data() + r * row_bytes;
      if (have_ref) {
        dequant_row_ref(GetParam(), row, &wref[r * k], k);
        continue;
      }
      ASSERT_TRUE(gguf::visit_block(GetParam(), [&](auto blk) {
        using B = decltype(blk);
        for (int64_t i = 0; i < k / gguf::kItemElems; ++i) {
          gguf::WItem it;
          B::item(row + i / B::kItems * B::kBytes, static_cast<int>(i % B::kItems), it);
          for (int e = 0; e < gguf::kItemElems; ++e) wref[r * k + i * gguf::kItemElems + e] = gguf::item_value(it, e);
        }
      }));
    }
  }

  std::mt19937 rng_{23};
};

struct GemvCase {
  int64_t m, n, k;
  bool norm, bias, accumulate;
  GatedAct gated;
  int64_t x_pad, out_pad;  // row stride = width + pad (x_pad % 4 != 0: the unaligned x path)
  int64_t row0 = 0;        // w starts at this row of the blocks (a part of a merged projection)
};

double act(GatedAct g, double y) {
  if (g == GatedAct::kGeluTanh) return 0.5 * y * (1.0 + std::tanh(0.7978845608028654 * (y + 0.044715 * y * y * y)));
  return y / (1.0 + std::exp(-y));
}

void run_gemv_case(const KernelEntry& e, Device& dev, const ExecContext& ctx, DType t, const GemvCase& c,
                   const std::vector<uint8_t>& blocks, const std::vector<float>& w, std::mt19937& rng) {
  const bool gated = c.gated != GatedAct::kNone;
  const int64_t n_out = gated ? c.n / 2 : c.n, xs = c.k + c.x_pad, os = n_out + c.out_pad;
  std::vector<float> x = random_floats(static_cast<size_t>(c.m * xs), rng, -2.f, 2.f);
  std::vector<float> g = random_floats(static_cast<size_t>(c.k), rng, 0.5f, 1.5f);
  std::vector<float> bias = random_floats(static_cast<size_t>(c.n), rng, -1.f, 1.f);
  std::vector<float> out0 = random_floats(static_cast<size_t>(c.m * os), rng, -1.f, 1.f);
  for (int64_t j = 0; j < 32 && j < c.k; ++j) x[j] = 0.f;  // an all-zero activation block (d = 0) in row 0
  const float eps = 1e-5f, g_off = 0.25f;

  // Reference: the normalised x in f64, its per-block half quantization step, y and the bound.
  std::vector<double> want(static_cast<size_t>(c.m * os)), tol(static_cast<size_t>(c.m * os), 0.0);
  for (int64_t r = 0; r < c.m; ++r) {
    std::vector<double> xn(static_cast<size_t>(c.k)), half_step(static_cast<size_t>(c.k));
    double ss = 0.0;
    for (int64_t j = 0; j < c.k; ++j) ss += static_cast<double>(x[r * xs + j]) * x[r * xs + j];
    const double inv = c.norm ? 1.0 / std::sqrt(ss / static_cast<double>(c.k) + eps) : 1.0;
    for (int64_t j = 0; j < c.k; ++j) xn[j] = x[r * xs + j] * (c.norm ? inv * (g[j] + g_off) : 1.0);
    for (int64_t b = 0; b < c.k / 32; ++b) {
      double amax = 0.0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xn[b * 32 + j]));
      for (int j = 0; j < 32; ++j) half_step[b * 32 + j] = 1.01 * amax / 127.0 / 2.0;
    }
    std::vector<double> y(static_cast<size_t>(c.n)), ty(static_cast<size_t>(c.n));
    for (int64_t col = 0; col < c.n; ++col) {
      double s = 0.0, bound = 0.0, mag = 0.0;
      for (int64_t j = 0; j < c.k; ++j) {
        const double wj = w[(c.row0 + col) * c.k + j];
        s += wj * xn[j];
        bound += std::fabs(wj) * half_step[j];
        mag += std::fabs(wj * xn[j]);
      }
      y[col] = s + (c.bias ? bias[col] : 0.0);
      ty[col] = bound + 1e-4 * mag + 1e-5;
    }
    for (int64_t col = 0; col < os; ++col) {
      const size_t i = static_cast<size_t>(r * os + col);
      if (col >= n_out) {  // padding: must be left as it was
        want[i] = out0[i];
        continue;
      }
      double v = y[col], tv = ty[col];
      if (gated) {
        const double gt = y[col], up = y[n_out + col], tg = ty[col], tu = ty[n_out + col];
        v = act(c.gated, gt) * up;
        tv = 1.2 * tg * (std::fabs(up) + tu) + std::fabs(act(c.gated, gt)) * tu;
      }
      want[i] = (c.accumulate ? out0[i] : 0.0) + v;
      tol[i] = tv + 1e-6 * std::fabs(want[i]);
    }
  }

  DeviceBuffer<float> dx(dev, x), dg(dev, g), db(dev, bias), dout(dev, out0);
  DeviceBuffer<uint8_t> dw(dev, blocks), dws(dev, q8_bytes(c.m, c.k));
  const int64_t row_bytes = c.k / dtype_info(t).block_elems * dtype_info(t).block_bytes;
  GemvArgs a{dout.get(), dx.get(), dw.get() + c.row0 * row_bytes, c.bias ? db.get() : nullptr, c.norm ? dg.get() : nullptr,
             c.m, c.n, c.k, os, xs};
  a.norm_eps = eps;
  a.norm_weight_offset = g_off;
  a.gated = c.gated;
  a.accumulate = c.accumulate;
  a.workspace = dws.get();
  a.workspace_bytes = q8_bytes(c.m, c.k);
  e.fn(&a, ctx);
  const std::vector<float> got = dout.download();
  const std::string what = std::string("gemv ") + dtype_name(t) + " m=" + std::to_string(c.m) + " n=" +
                           std::to_string(c.n) + " k=" + std::to_string(c.k) + " norm=" + std::to_string(c.norm) +
                           " bias=" + std::to_string(c.bias) + " acc=" + std::to_string(c.accumulate) +
                           " gated=" + gated_act_name(c.gated) + " x_pad=" + std::to_string(c.x_pad) +
                           " row0=" + std::to_string(c.row0);
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool ok = (i % static_cast<size_t>(os)) >= static_cast<size_t>(n_out) ? got[i] == static_cast<float>(want[i])
                                                                                 : std::fabs(got[i] - want[i]) <= tol[i];
    if (!ok && ++bad <= 3)
      ADD_FAILURE() << what << ": [" << i / os << ", " << i % os << "] got " << got[i] << " want " << want[i]
                    << " tol " << tol[i];
  }
  EXPECT_EQ(bad, 0u) << what;
}

TEST_P(CudaGgufKernels, GemvMatchesReference) {
  const DType t = GetParam();
  const KernelEntry& e = kernel(Op::kGemv);
  std::vector<uint8_t> blocks;
  std::vector<float> w;
  // Small n (2 rows per CTA) with k = 3 superblocks, then k = 19 superblocks (152 items: two per
  // thread for some), then n large enough for 4 rows per CTA (>= 2 CTAs per SM on any GPU <= 132 SMs).
  for (int64_t k : {768, 4864}) {
    make_weights(74, k, blocks, w);
    for (int64_t m : {1, 2, 3, 5, 8}) {
      run_gemv_case(e, *dev_, ctx_, t, {m, 37, k, false, true, false, GatedAct::kNone, 0, 0}, blocks, w, rng_);
      run_gemv_case(e, *dev_, ctx_, t, {m, 37, k, true, true, true, GatedAct::kNone, 4, 3}, blocks, w, rng_);
      run_gemv_case(e, *dev_, ctx_, t, {m, 74, k, true, false, false, GatedAct::kSilu, 1, 5}, blocks, w, rng_);
      run_gemv_case(e, *dev_, ctx_, t, {m, 74, k, false, true, true, GatedAct::kGeluTanh, 8, 1}, blocks, w, rng_);
    }
  }
  make_weights(2 * 1061, 768, blocks, w);
  for (int64_t m : {1, 8}) {
    run_gemv_case(e, *dev_, ctx_, t, {m, 1061, 768, true, true, false, GatedAct::kNone, 0, 2}, blocks, w, rng_);
    run_gemv_case(e, *dev_, ctx_, t, {m, 2 * 1061, 768, true, true, true, GatedAct::kSilu, 0, 0}, blocks, w, rng_);
  }
  // w starting at row 1 (only 2-byte aligned for the 210- and 110-byte blocks, and for the
  // 32-element types at an odd number of blocks per row).
  const int64_t k_odd = dtype_info(t).block_elems == 32 ? 800 : 768;
  make_weights(38, k_odd, blocks, w);
  for (int64_t m : {1, 3})
    run_gemv_case(e, *dev_, ctx_, t, {m, 37, k_odd, true, true, false, GatedAct::kNone, 0, 0, 1}, blocks, w, rng_);
  // m > kGemvMaxRows runs as several launches over one quantized x.
  make_weights(37, 768, blocks, w);
  run_gemv_case(e, *dev_, ctx_, t, {11, 37, 768, true, true, true, GatedAct::kNone, 4, 3}, blocks, w, rng_);
}

struct GemmCase {
  int64_t m, n, k;
  bool bias, accumulate, out_bf16;
  int64_t x_pad, out_pad;  // x_pad % 8 != 0: the x rows are not 16-byte aligned (plain loads)
  bool x_f32 = false;      // x f32 (rounded to bf16 in the kernel: 2^-9 more, bound doubled)
};

void run_gemm_case(const KernelEntry& e, Device& dev, const ExecContext& ctx, DType t, const GemmCase& c,
                   const std::vector<uint8_t>& blocks, const std::vector<float>& w, std::mt19937& rng) {
  const int64_t xs = c.k + c.x_pad, os = c.n + c.out_pad;
  const std::vector<float> xf = random_floats(static_cast<size_t>(c.m * xs), rng, -2.f, 2.f);
  std::vector<uint16_t> xb(xf.size());
  for (size_t i = 0; i < xf.size(); ++i) xb[i] = f32_to_bf16(xf[i]);
  const std::vector<float> bias = random_floats(static_cast<size_t>(c.n), rng, -1.f, 1.f);
  const std::vector<float> out0 = random_floats(static_cast<size_t>(c.m * os), rng, -1.f, 1.f);
  std::vector<uint16_t> out0b(out0.size());
  for (size_t i = 0; i < out0.size(); ++i) out0b[i] = f32_to_bf16(out0[i]);

  std::vector<double> want(static_cast<size_t>(c.m * os)), tol(static_cast<size_t>(c.m * os), 0.0);
  for (int64_t r = 0; r < c.m; ++r) {
    for (int64_t col = 0; col < os; ++col) {
      const size_t i = static_cast<size_t>(r * os + col);
      if (col >= c.n) {
        want[i] = c.out_bf16 ? bf16_to_f32(out0b[i]) : out0[i];
        continue;
      }
      double s = 0.0, mag = 0.0;
      for (int64_t j = 0; j < c.k; ++j) {
        const double xv = c.x_f32 ? static_cast<double>(xf[r * xs + j]) : bf16_to_f32(xb[r * xs + j]);
        const double p = static_cast<double>(w[col * c.k + j]) * xv;
        s += p;
        mag += std::fabs(p);
      }
      const double y = s + (c.bias ? bias[col] : 0.0);
      want[i] = (c.accumulate ? out0[i] : 0.0) + y;
      tol[i] = std::ldexp(mag, c.x_f32 ? -7 : -8) + 1e-5 + 1e-6 * std::fabs(want[i]) + (c.out_bf16 ? std::ldexp(std::fabs(y), -8) : 0.0);
    }
  }

  DeviceBuffer<uint16_t> dx(dev, xb), doutb(dev, out0b);
  DeviceBuffer<float> dxf(dev, xf), db(dev, bias), dout(dev, out0);
  DeviceBuffer<uint8_t> dw(dev, blocks);
  GemmArgs a{c.out_bf16 ? static_cast<void*>(doutb.get()) : dout.get(),
             c.x_f32 ? static_cast<const void*>(dxf.get()) : dx.get(), dw.get(),
             c.bias ? db.get() : nullptr, c.m, c.n, c.k, os, xs};
  a.x_dtype = c.x_f32 ? DType::kF32 : DType::kBF16;
  a.out_dtype = c.out_bf16 ? DType::kBF16 : DType::kF32;
  a.accumulate = c.accumulate;
  e.fn(&a, ctx);
  std::vector<float> got;
  if (c.out_bf16) {
    for (uint16_t v : doutb.download()) got.push_back(bf16_to_f32(v));
  } else {
    got = dout.download();
  }
  const std::string what = std::string("gemm ") + dtype_name(t) + " m=" + std::to_string(c.m) + " n=" +
                           std::to_string(c.n) + " k=" + std::to_string(c.k) + " bias=" + std::to_string(c.bias) +
                           " acc=" + std::to_string(c.accumulate) + " bf16_out=" + std::to_string(c.out_bf16) +
                           " x_pad=" + std::to_string(c.x_pad) + " x_f32=" + std::to_string(c.x_f32);
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool pad = (i % static_cast<size_t>(os)) >= static_cast<size_t>(c.n);
    const bool ok = pad ? got[i] == static_cast<float>(want[i]) : std::fabs(got[i] - want[i]) <= tol[i];
    if (!ok && ++bad <= 3)
      ADD_FAILURE() << what << ": [" << i / os << ", " << i % os << "] got " << got[i] << " want " << want[i]
                    << " tol " << tol[i];
  }
  EXPECT_EQ(bad, 0u) << what;
}

TEST_P(CudaGgufKernels, GemmMatchesReference) {
  const DType t = GetParam();
  const KernelEntry& e = kernel(Op::kGemm);
  std::vector<uint8_t> blocks;
  std::vector<float> w;
  make_weights(131, 768, blocks, w);
  for (int64_t m : {5, 16, 33, 128}) {
    run_gemm_case(e, *dev_, ctx_, t, {m, 131, 768, true, false, false, 0, 0}, blocks, w, rng_);
    run_gemm_case(e, *dev_, ctx_, t, {m, 131, 768, true, true, false, 8, 3}, blocks, w, rng_);
    run_gemm_case(e, *dev_, ctx_, t, {m, 67, 768, false, false, true, 3, 1}, blocks, w, rng_);
    run_gemm_case(e, *dev_, ctx_, t, {m, 131, 768, true, true, false, 4, 0, true}, blocks, w, rng_);
    run_gemm_case(e, *dev_, ctx_, t, {m, 67, 768, false, false, false, 1, 2, true}, blocks, w, rng_);
  }
  // A longer K (19 superblocks: many pipeline steps) and n past one tile column.
  make_weights(67, 4864, blocks, w);
  run_gemm_case(e, *dev_, ctx_, t, {33, 67, 4864, true, true, false, 8, 0}, blocks, w, rng_);
  // 32-element types: k an odd number of 32-blocks (the last K step is half a tile).
  if (dtype_info(t).block_elems == 32) {
    make_weights(37, 800, blocks, w);
    run_gemm_case(e, *dev_, ctx_, t, {16, 37, 800, true, false, false, 0, 0}, blocks, w, rng_);
  }
}

// Callers' mistakes are typed errors, raised before any launch.
TEST_P(CudaGgufKernels, RejectsBadArguments) {
  const int64_t be = dtype_info(GetParam()).block_elems;
  const int64_t k = 2 * be;
  std::vector<uint8_t> blocks;
  std::vector<float> w;
  make_weights(4, k, blocks, w);
  DeviceBuffer<uint8_t> dw(*dev_, blocks), dws(*dev_, q8_bytes(2, k));
  DeviceBuffer<float> dx(*dev_, static_cast<size_t>(2 * k)), dout(*dev_, 8);
  GemvArgs a{dout.get(), dx.get(), dw.get(), nullptr, nullptr, 2, 4, k, 4, k};
  a.workspace = dws.get();
  a.workspace_bytes = q8_bytes(2, k) - 1;  // one byte short
  expect_error_kind([&] { kernel(Op::kGemv).fn(&a, ctx_); }, ErrorKind::kInvalidArgument, "a short workspace was accepted");
  a.workspace_bytes = q8_bytes(2, k);
  if (be != 32) {  // k not a multiple of the 256-element superblock
    a.k = k - 32;
    EXPECT_THROW(kernel(Op::kGemv).fn(&a, ctx_), Error);
  }
  DeviceBuffer<uint16_t> dxb(*dev_, static_cast<size_t>(2 * k));
  GemmArgs g{dout.get(), dxb.get(), dw.get(), nullptr, 2, 4, k, 4, k};
  g.x_dtype = DType::kF16;  // x must be bf16 or f32
  EXPECT_THROW(kernel(Op::kGemm).fn(&g, ctx_), Error);
  g.x_dtype = DType::kBF16;
  g.out_dtype = DType::kBF16;
  g.accumulate = true;  // accumulate needs an f32 out
  EXPECT_THROW(kernel(Op::kGemm).fn(&g, ctx_), Error);
}

// End to end through the gguf-native LinearMethod (runtime/model/linear_gguf.cc) on the mixed
// Q4_K_M-style fixture (every new block type, merged segments of two types, an F16 matrix): CUDA
// logits of a 13-token prompt (prefill: the GEMM) and greedy decoding (the GEMV) against the CPU
// engine with the weights dequantized at load (ELI_GGUF_NATIVE=0). The same bound as the CPU
// test (test_gguf_native.cc: 3% of the largest logit, from the 8-bit activation rounding; the
// GEMM's bf16 weights add 2^-9 relative), and the same greedy tokens.
TEST(CudaGgufEngine, MixedFixtureMatchesCpuDequantized) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  EngineConfig c = tiny_engine_config(std::string(ELI_TEST_DATA_DIR) + "/gguf/tiny_llama_mixed.gguf");
  ::setenv("ELI_GGUF_NATIVE", "0", 1);
  std::unique_ptr<Engine> cpu;
  try {
    cpu = std::make_unique<Engine>(c);
  } catch (...) {
    ::unsetenv("ELI_GGUF_NATIVE");
    throw;
  }
  ::unsetenv("ELI_GGUF_NATIVE");
  c.device = "cuda";
  c.gpu_memory_bytes = uint64_t{1} << 30;
  // Native GGUF kernels with CUDA graphs on (decode steps replay a captured graph) and off; the
  // dequantized fallback on CUDA too.
  for (const auto& [graphs, native] : {std::pair{true, true}, std::pair{false, true}, std::pair{true, false}}) {
    c.enable_cuda_graphs = graphs;
    if (!native) ::setenv("ELI_GGUF_NATIVE", "0", 1);
    std::unique_ptr<Engine> made;
    try {
      made = std::make_unique<Engine>(c);
    } catch (...) {
      ::unsetenv("ELI_GGUF_NATIVE");
      throw;
    }
    ::unsetenv("ELI_GGUF_NATIVE");
    Engine& gpu = *made;
    std::printf("graphs %d native %d: device %s, weights %s\n", graphs ? 1 : 0, native ? 1 : 0,
                gpu.info().device.c_str(), gpu.info().weight_dtype.c_str());
    for (const std::vector<int32_t>& prompt : engine_test_prompts()) {
      const std::vector<float> a = gpu.score(prompt), b = cpu->score(prompt);
      ASSERT_EQ(a.size(), b.size());
      const auto [worst, scale] = logit_gap(a, b);
      std::printf("prompt of %zu tokens: max |logit| %.4g, max |delta| %.4g (%.3g%%)\n", prompt.size(), scale, worst,
                  100.0 * worst / scale);
      EXPECT_LE(worst, 0.03 * scale);
      EXPECT_EQ(greedy_tokens(gpu, prompt, 12), greedy_tokens(*cpu, prompt, 12))
          << "graphs " << graphs << " native " << native;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(CudaGguf, CudaGgufKernels, ::testing::ValuesIn(gguf_test::block_types()),
                         [](const ::testing::TestParamInfo<DType>& i) { return std::string(dtype_name(i.param)); });

}  // namespace
}  // namespace eli
