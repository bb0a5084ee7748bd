// tests/cpp/test_quantize.cc: the weight quantizers (runtime/quantize) and the calibration hook.
// RTN against its formula, GPTQ with an identity Hessian equal to RTN, GPTQ and AWQ no worse than
// RTN on a correlated Hessian, per-channel int8 / fp8, argument errors, and calibration statistics
// of a tiny model (shapes, symmetry, Jensen's bound mean x^2 >= (mean |x|)^2).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "eli/engine.h"
#include "eli/error.h"
#include "kernels/ref/fp8.h"
#include "runtime/quantize/awq.h"
#include "runtime/quantize/calibration.h"
#include "runtime/quantize/channel_quant.h"
#include "runtime/quantize/gptq.h"
#include "runtime/quantize/int_quant.h"

namespace eli {
namespace {

std::vector<float> random_matrix(int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (float& v : w) v = d(rng);
  return w;
}

// H = X^T X / T for T random rows with correlated, unevenly scaled channels.
std::vector<float> correlated_hessian(int64_t k, uint32_t seed) {
  const int64_t T = 4 * k;
  std::vector<float> base = random_matrix(T, k, seed);
  std::vector<float> x(static_cast<size_t>(T * k));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const float mix = j > 0 ? 0.6f * base[t * k + j - 1] : 0.0f;
      x[t * k + j] = (base[t * k + j] + mix) * (1.0f + 4.0f * static_cast<float>(j % 7 == 0));
    }
  }
  std::vector<float> h(static_cast<size_t>(k * k), 0.0f);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) h[i * k + j] += x[t * k + i] * x[t * k + j] / T;
    }
  }
  return h;
}

std::vector<float> identity(int64_t k, float scale) {
  std::vector<float> h(static_cast<size_t>(k * k), 0.0f);
  for (int64_t i = 0; i < k; ++i) h[i * k + i] = scale;
  return h;
}

TEST(QuantizeRtn, MatchesItsFormula) {
  const int64_t n = 5, k = 64;
  const std::vector<float> w = random_matrix(n, k, 1);
  for (bool sym : {true, false}) {
    for (int bits : {4, 8}) {
      IntQuantSpec spec;
      spec.bits = bits;
      spec.group_size = 32;
      spec.sym = sym;
      const IntQuantResult r = quantize_rtn(w.data(), n, k, spec);
      const int maxq = (1 << bits) - 1;
      ASSERT_EQ(r.groups, 2);
      const std::vector<float> deq = dequantize(r);
      for (int64_t row = 0; row < n; ++row) {
        for (int64_t g = 0; g < 2; ++g) {
          const float s = r.scales[row * 2 + g];
          const int32_t z = r.zeros[row * 2 + g];
          if (sym) EXPECT_EQ(z, (maxq + 1) / 2);
          float lo = 0, hi = 0;
          for (int64_t j = 0; j < 32; ++j) {
            lo = std::min(lo, w[row * k + g * 32 + j]);
            hi = std::max(hi, w[row * k + g * 32 + j]);
          }
          const double expect_s = sym ? 2.0 * std::max(-lo, hi) / maxq : (hi - lo) / static_cast<double>(maxq);
          EXPECT_NEAR(s, expect_s, expect_s * 1e-3) << "scale is the f16 rounding of the formula";
          for (int64_t j = 0; j < 32; ++j) {
            const int64_t c = row * k + g * 32 + j;
            const double want = std::min<double>(std::max<double>(std::nearbyint(w[c] / s) + z, 0), maxq);
            EXPECT_EQ(r.q[c], want);
            EXPECT_FLOAT_EQ(deq[c], (static_cast<float>(r.q[c]) - z) * s);
          }
        }
      }
    }
  }
}

TEST(QuantizeGptq, IdentityHessianEqualsRtn) {
  const int64_t n = 7, k = 96;
  const std::vector<float> w = random_matrix(n, k, 2);
  for (bool act_order : {false, true}) {
    for (int64_t gs : {int64_t{32}, int64_t{-1}}) {
      for (bool sym : {true, false}) {
        IntQuantSpec spec;
        spec.bits = 4;
        spec.group_size = gs;
        spec.sym = sym;
        GptqOptions opt;
        opt.act_order = act_order;
        opt.block_size = 40;  // not a divisor of k: partial last block
        const std::vector<float> h = identity(k, 3.0f);
        const IntQuantResult g = quantize_gptq(w.data(), n, k, h.data(), spec, opt);
        const IntQuantResult r = quantize_rtn(w.data(), n, k, spec);
        EXPECT_EQ(g.q, r.q);
        EXPECT_EQ(g.scales, r.scales);
        EXPECT_EQ(g.zeros, r.zeros);
        EXPECT_EQ(g.g_idx, r.g_idx);
      }
    }
  }
}

TEST(QuantizeGptq, LowerOutputErrorThanRtn) {
  const int64_t n = 16, k = 64;
  const std::vector<float> w = random_matrix(n, k, 3);
  const std::vector<float> h = correlated_hessian(k, 4);
  for (int bits : {4, 8}) {
    for (bool act_order : {false, true}) {
      IntQuantSpec spec;
      spec.bits = bits;
      spec.group_size = 32;
      GptqOptions opt;
      opt.act_order = act_order;
      const IntQuantResult g = quantize_gptq(w.data(), n, k, h.data(), spec, opt);
      const IntQuantResult r = quantize_rtn(w.data(), n, k, spec);
      const double eg = output_error(w.data(), dequantize(g).data(), n, k, h.data());
      const double er = output_error(w.data(), dequantize(r).data(), n, k, h.data());
      EXPECT_LT(eg, 0.8 * er) << "bits " << bits << " act_order " << act_order;
      if (act_order) {
        // Every group holds group_size columns.
        std::vector<int> count(2, 0);
        for (int32_t gi : g.g_idx) count.at(gi)++;
        EXPECT_EQ(count[0], 32);
        EXPECT_EQ(count[1], 32);
      }
    }
  }
}

TEST(QuantizeAwq, NoWorseThanRtnAndAlphaZeroIsRtn) {
  const int64_t n = 16, k = 64;
  const std::vector<float> w = random_matrix(n, k, 5);
  const std::vector<float> h = correlated_hessian(k, 6);
  std::vector<float> xm(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) xm[j] = std::sqrt(h[j * k + j]);
  IntQuantSpec spec;
  spec.bits = 4;
  spec.group_size = 32;
  spec.sym = false;
  const AwqSearchResult a = awq_search(w.data(), n, k, xm.data(), h.data(), spec, 20);
  const IntQuantResult r = quantize_rtn(w.data(), n, k, spec);
  const double er = output_error(w.data(), dequantize(r).data(), n, k, h.data());
  EXPECT_NEAR(a.rtn_error, er, 1e-6 * er);
  EXPECT_LT(a.error, er) << "the uneven channels make some alpha > 0 better";
  EXPECT_GT(a.alpha, 0.0);
  // The scaled RTN result mapped back reproduces the reported error.
  std::vector<float> scaled(w.size());
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) scaled[i * k + j] = w[i * k + j] * a.scales[j];
  }
  std::vector<float> back = dequantize(quantize_rtn(scaled.data(), n, k, spec));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) back[i * k + j] /= a.scales[j];
  }
  EXPECT_NEAR(output_error(w.data(), back.data(), n, k, h.data()), a.error, 1e-6 * a.error);
}

TEST(QuantizeChannel, Int8AndFp8) {
  const std::vector<float> w = {1.0f, -2.0f, 0.5f, 0.0f, 0.0f, 0.0f, 3.0f, 448.0f, -0.001f};
  ChannelQuantResult i8 = quantize_channel(w.data(), 3, 3, "int8");
  EXPECT_FLOAT_EQ(i8.scales[0], 2.0f / 127.0f);
  EXPECT_EQ(static_cast<int8_t>(i8.codes[1]), -127);
  EXPECT_EQ(static_cast<int8_t>(i8.codes[0]), 64);  // 63.5 rounds half to even
  EXPECT_EQ(i8.scales[1], 1.0f);                    // all-zero row
  ChannelQuantResult f8 = quantize_channel(w.data(), 3, 3, "fp8");
  EXPECT_FLOAT_EQ(f8.scales[2], 1.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(f8.codes[7]), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(f8.codes[6]), 3.0f);
  EXPECT_THROW(quantize_channel(w.data(), 3, 3, "int4"), Error);
}

TEST(QuantizeArgs, ClearErrors) {
  const std::vector<float> w = random_matrix(4, 64, 7);
  const std::vector<float> h = identity(64, 1.0f);
  IntQuantSpec spec;
  spec.bits = 3;
  try {
    quantize_rtn(w.data(), 4, 64, spec);
    FAIL() << "bits 3 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("bits must be 4 or 8"), std::string::npos);
  }
  spec.bits = 4;
  spec.group_size = 48;
  try {
    quantize_gptq(w.data(), 4, 64, h.data(), spec, GptqOptions{});
    FAIL() << "group 48 of 64 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not divide"), std::string::npos);
  }
  spec.group_size = 32;
  std::vector<float> bad = identity(64, 1.0f);
  bad[1] = 5.0f;  // not positive definite (|H01| > sqrt(H00 H11)), damping too small to fix it
  bad[64] = 5.0f;
  GptqOptions opt;
  opt.damp = 0.0;
  try {
    quantize_gptq(w.data(), 4, 64, bad.data(), spec, opt, "layer.x");
    FAIL() << "indefinite Hessian accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not positive definite"), std::string::npos);
  }
}

TEST(Calibration, StatisticsOfATinyModel) {
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_base";
  c.dtype = "float32";
  c.n_threads = 2;
  Engine e(c);
  const std::vector<int32_t> ids = {1, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110};
  const auto stats = calibrate(e, {ids, {1, 5, 6}});
  const int64_t H = e.info().spec.hidden_size;
  ASSERT_EQ(stats.count("model.layers.0.self_attn.qkv_proj"), 1u);
  ASSERT_EQ(stats.count("model.layers.2.mlp.down_proj"), 1u);
  EXPECT_EQ(stats.count("lm_head"), 0u);
  for (const auto& [name, s] : stats) {
    EXPECT_EQ(s.rows, 14) << name;
    ASSERT_EQ(static_cast<int64_t>(s.hessian.size()), s.cols * s.cols);
    for (int64_t i = 0; i < s.cols; ++i) {
      const float d = s.hessian[i * s.cols + i];
      EXPECT_GE(d * (1 + 1e-5f) + 1e-12f, s.abs_mean[i] * s.abs_mean[i]) << name << " " << i;
      for (int64_t j = 0; j < i; ++j) EXPECT_EQ(s.hessian[i * s.cols + j], s.hessian[j * s.cols + i]);
    }
  }
  EXPECT_EQ(stats.at("model.layers.0.self_attn.qkv_proj").cols, H);
  EXPECT_EQ(stats.at("model.layers.0.mlp.down_proj").cols, e.info().spec.intermediate_size);
  // The normalised input of the first layer's attention is RMS-normalised: mean x^2 over channels,
  // divided by the norm weight squared, is ~1 per row; its trace is positive and finite.
  double tr = 0;
  for (int64_t i = 0; i < H; ++i) tr += stats.at("model.layers.0.self_attn.qkv_proj").hessian[i * H + i];
  EXPECT_TRUE(std::isfinite(tr) && tr > 0);
  EXPECT_THROW(calibrate(e, {}), Error);
}

}  // namespace
}  // namespace eli
