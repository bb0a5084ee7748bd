// tests/cpp/test_sample_math.cc: the numerics of the sampling semantics (kernels/sample_math.h):
// the portable exp and logs against libm in double, the Gumbel noise (range, moments, the cheap
// bound the kernels prune with), integer top-p masses, and bit-identity of every function when the
// compiler may fuse multiply-adds (tests/cpp/sample_math_fma.cc is this header built for FMA).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "kernels/sample_math.h"
#include "tests/cpp/sample_math_fma.h"

namespace eli {
namespace {

double ulp_of(float v) {
  const float a = std::fabs(v);
  return static_cast<double>(std::nextafter(a, std::numeric_limits<float>::infinity()) - a);
}

TEST(SampleMath, ExpIsAccurateAndExactAtZero) {
  EXPECT_EQ(sample_exp(0.0f), 1.0f);
  EXPECT_EQ(sample_exp(-0.0f), 1.0f);
  EXPECT_EQ(sample_exp(-87.5f), 0.0f);
  EXPECT_EQ(sample_exp(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(sample_exp(std::numeric_limits<float>::quiet_NaN()), 0.0f);
  double worst = 0.0;
  for (int i = 0; i <= 200000; ++i) {
    const float s = -87.0f * static_cast<float>(i) / 200000.0f;
    const float got = sample_exp(s);
    const double want = std::exp(static_cast<double>(s));
    ASSERT_GT(got, 0.0f) << s;
    ASSERT_TRUE(std::isnormal(got)) << s;
    worst = std::max(worst, std::fabs(got - want) / ulp_of(static_cast<float>(want)));
  }
  EXPECT_LE(worst, 3.0) << "ulps";
}

TEST(SampleMath, LogsAreAccurate) {
  double worst = 0.0;
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> e(-60.0, 20.0);
  for (int i = 0; i < 200000; ++i) {
    const float x = static_cast<float>(std::exp2(e(rng)));
    const double want = std::log(static_cast<double>(x));
    const double err = std::fabs(sample_log(x) - want);
    worst = std::max(worst, err / std::max(ulp_of(static_cast<float>(want)), 1e-12));
  }
  EXPECT_LE(worst, 3.0) << "ulps";
  EXPECT_EQ(sample_log(1.0f), 0.0f);
  worst = 0.0;
  std::uniform_real_distribution<double> ev(-54.0, -1e-9);
  for (int i = 0; i < 200000; ++i) {
    const float v = static_cast<float>(std::exp2(ev(rng)));
    if (!(v < 1.0f)) continue;
    const double want = -std::log1p(-static_cast<double>(v));
    worst = std::max(worst, std::fabs(sample_neg_log1m(v) - want) / ulp_of(static_cast<float>(want)));
  }
  EXPECT_LE(worst, 4.0) << "ulps";
}

TEST(SampleMath, GumbelRangeMomentsAndBound) {
  EXPECT_LT(sample_gumbel(0), kSampleGumbelMax);  // v = 2^-54: the largest noise there is
  EXPECT_GT(sample_gumbel(0), 37.0f);
  EXPECT_LT(sample_gumbel(~0ull), -2.0f);  // v = 1 - 2^-24: the clamped lower tail
  EXPECT_GT(sample_gumbel(~0ull), -3.0f);
  EXPECT_LT(sample_gumbel_bound(0), 45.1f);
  EXPECT_LT(sample_gumbel_bound(~0ull), 0.71f);
  // The bound holds at the low edge of every binade of v (where the noise is largest) and around it.
  for (int k = 0; k <= 52; ++k) {
    for (int64_t d : {-2, -1, 0, 1, 2}) {
      const int64_t m = (int64_t{1} << k) + d;
      if (m < 0) continue;
      const uint64_t bits = static_cast<uint64_t>(m) << 11 | 0x5a5ull;
      EXPECT_LE(sample_gumbel(bits), sample_gumbel_bound(bits)) << "m = " << m;
    }
  }
  std::mt19937_64 rng(3);
  double sum = 0.0, sum2 = 0.0;
  const int n = 1 << 20;
  for (int i = 0; i < n; ++i) {
    const uint64_t bits = sample_token_bits(sample_row_key(12345, static_cast<uint64_t>(i >> 10)), i & 1023);
    const float g = sample_gumbel(bits);
    ASSERT_LE(g, sample_gumbel_bound(bits)) << bits;
    ASSERT_LE(sample_gumbel_bound(bits), sample_gumbel_bound(0));
    sum += g;
    sum2 += static_cast<double>(g) * g;
  }
  const double mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.5772157, 0.005);          // Euler-Mascheroni
  EXPECT_NEAR(var, 1.6449341, 0.01);             // pi^2 / 6
}

TEST(SampleMath, IntegerMassesAndTopPTarget) {
  EXPECT_EQ(sample_mass(0.0f), kSampleMassOne);
  EXPECT_EQ(sample_mass(-0.0f), kSampleMassOne);
  EXPECT_EQ(sample_mass(std::nextafter(kSampleMassCut, -100.0f)), 0u);
  EXPECT_GT(sample_mass(-20.0f), 0u);
  EXPECT_EQ(sample_mass(-std::numeric_limits<float>::infinity()), 0u);
  EXPECT_NEAR(static_cast<double>(sample_mass(-1.0f)), std::exp(-1.0) * 4294967296.0, 2048.0);
  EXPECT_EQ(sample_top_p_target(kSampleMassOne, 0.5), kSampleMassOne / 2);
  EXPECT_EQ(sample_top_p_target(kSampleMassOne, 1e-30), 1u);
  EXPECT_EQ(sample_top_p_target(kSampleMassOne * 3 + 1, 1.0), kSampleMassOne * 3 + 1);
  const uint64_t big = (uint64_t{1} << 62) + 12345;  // close to the largest possible row total
  EXPECT_LE(sample_top_p_target(big, 0.9999999999), big);
  EXPECT_GE(sample_top_p_target(big, 0.9999999999), big - (big >> 30));
  EXPECT_EQ(sample_inv_temperature(0.5), 2.0f);
  EXPECT_EQ(sample_scaled(3.0f, 3.0f, 7.0f), 0.0f);
}

// Every function of the header, built once plainly and once where the compiler may contract
// a * b + c into an fma: the results must agree to the bit (the host half of "same tokens on every
// device"). Skips where the CPU has no FMA.
TEST(SampleMath, BitIdenticalWhenFmaIsAvailable) {
  if (!fma_build::available()) GTEST_SKIP() << "no FMA on this CPU (or not an x86 build)";
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<float> us(-90.0f, 0.0f), ux(1e-6f, 40.0f), uv(0.0f, 1.0f);
  std::uniform_real_distribution<double> ut(0.05, 3.0);
  for (int i = 0; i < 100000; ++i) {
    const float s = us(rng), x = ux(rng), v = uv(rng);
    const uint64_t bits = rng();
    ASSERT_EQ(sample_float_bits(sample_exp(s)), sample_float_bits(fma_build::exp(s))) << s;
    ASSERT_EQ(sample_float_bits(sample_log(x)), sample_float_bits(fma_build::log(x))) << x;
    if (v > 0.0f && v < 1.0f) {
      ASSERT_EQ(sample_float_bits(sample_neg_log1m(v)), sample_float_bits(fma_build::neg_log1m(v))) << v;
    }
    ASSERT_EQ(sample_float_bits(sample_gumbel(bits)), sample_float_bits(fma_build::gumbel(bits))) << bits;
    ASSERT_EQ(sample_mass(s), fma_build::mass(s)) << s;
    const float z = us(rng) + 40.0f, zmax = 45.0f;
    const float inv_t = sample_inv_temperature(ut(rng));
    const float sc = sample_scaled(z, zmax, inv_t);
    ASSERT_EQ(sample_float_bits(sc), sample_float_bits(fma_build::scaled(z, zmax, inv_t)));
    ASSERT_EQ(sample_float_bits(sample_gumbel_key(sc, bits, i)), sample_float_bits(fma_build::gumbel_key(sc, bits, i)));
    const double rep = ut(rng), pres = ut(rng) - 1.5, freq = ut(rng) - 1.0;
    ASSERT_EQ(sample_float_bits(sample_penalize(z, i % 4, rep, pres, freq)),
              sample_float_bits(fma_build::penalize(z, i % 4, rep, pres, freq)));
  }
}

}  // namespace
}  // namespace eli
