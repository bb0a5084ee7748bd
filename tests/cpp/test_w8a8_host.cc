// tests/cpp/test_w8a8_host.cc: the device numerics of the W8A8 CUDA kernels that run as plain C++
// (kernels/cuda/wq_w8a8_numerics.cuh) against kernels/ref: e4m3 encode (every code, every tie
// between neighbours, saturation, NaN, random values) and decode, the e4m3 -> f16 widening used by
// the FP8 GEMV and the f16 tensor-core fallback, the per-token int8 / e4m3 row quantization (ties
// round half to even), and a host model of the GEMM's fragment mapping: the 8-bit m16n8k32 fragments
// widened into two f16 m16n8k16 MMAs must compute the same dot products. Runs in CI (no GPU).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/wq_w8a8.h"
#include "kernels/cuda/wq_w8a8_numerics.cuh"
#include "kernels/ref/fp8.h"
#include "kernels/ref/wq_ref.h"
#include "runtime/core/float_convert.h"

namespace eli {
namespace {

float bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(W8a8Host, E4m3DecodeMatchesTable) {
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7F) == 0x7F) continue;  // NaN codes: rejected at load
    EXPECT_EQ(w8a8::e4m3_to_f32(static_cast<uint8_t>(b)), fp8_e4m3_to_f32(static_cast<uint8_t>(b))) << b;
  }
}

TEST(W8a8Host, E4m3EncodeMatchesReference) {
  std::vector<float> probes = {0.0f, -0.0f, 448.0f, -448.0f, 449.0f, 464.0f, 465.0f, 1e6f, -1e6f, INFINITY,
                               -INFINITY, 1e-30f, -1e-30f, bits(1u), 1.0f / 1024, 3.0f / 1024, 1.0f / 512};
  // Every code, its neighbours' midpoints (exact ties) and one ulp either side of them.
  for (int b = 0; b < 0x7E; ++b) {
    const float lo = fp8_e4m3_to_f32(static_cast<uint8_t>(b)), hi = fp8_e4m3_to_f32(static_cast<uint8_t>(b + 1));
    const float mid = 0.5f * (lo + hi);
    for (float v : {lo, hi, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
      probes.push_back(v);
      probes.push_back(-v);
    }
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> e(-14.0f, 10.0f);
  for (int i = 0; i < 20000; ++i) probes.push_back((i & 1 ? -1.0f : 1.0f) * std::exp2(e(rng)));
  for (float v : probes) EXPECT_EQ(w8a8::f32_to_e4m3(v), f32_to_fp8_e4m3(v)) << v;
  EXPECT_EQ(w8a8::f32_to_e4m3(NAN), f32_to_fp8_e4m3(NAN));
}

TEST(W8a8Host, WidenToF16IsExactTimes2PowMinus8) {
  for (uint32_t b0 = 0; b0 < 256; ++b0) {
    for (uint32_t b1 = 0; b1 < 256; b1 += 3) {
      if ((b0 & 0x7F) == 0x7F || (b1 & 0x7F) == 0x7F) continue;
      const uint32_t lo_word = b0 | (b1 << 8) | (0x5Au << 16) | (0xA5u << 24);
      const uint32_t hi_word = 0x3Cu | (0xC3u << 8) | (b0 << 16) | (b1 << 24);
      for (auto [word, hi] : {std::pair<uint32_t, bool>{lo_word, false}, {hi_word, true}}) {
        const uint32_t h = w8a8::e4m3x4_to_f16x2(word, hi);
        EXPECT_EQ(f16_to_f32(static_cast<uint16_t>(h & 0xFFFF)),
                  fp8_e4m3_to_f32(static_cast<uint8_t>(b0)) / 256.0f) << b0 << " " << b1 << " " << hi;
        EXPECT_EQ(f16_to_f32(static_cast<uint16_t>(h >> 16)), fp8_e4m3_to_f32(static_cast<uint8_t>(b1)) / 256.0f)
            << b0 << " " << b1 << " " << hi;
      }
    }
  }
}

// The device quantizer's per-row arithmetic (wq_w8a8_quant.cu) on the host.
float quant_row_like_device(const std::vector<float>& x, bool fp8, float static_scale, std::vector<uint8_t>& q) {
  float amax = 0.0f;
  for (float v : x) amax = std::fmax(amax, std::fabs(v));
  const float s = w8a8::row_scale(amax, fp8 ? 448.0f : 127.0f, static_scale);
  q.resize(x.size());
  for (size_t j = 0; j < x.size(); ++j) {
    q[j] = fp8 ? w8a8::f32_to_e4m3(w8a8::div_rn(x[j], s)) : static_cast<uint8_t>(w8a8::quant_int8(x[j], s));
  }
  return s;
}

TEST(W8a8Host, RowQuantizationMatchesReference) {
  std::mt19937 rng(11);
  std::vector<std::vector<float>> rows;
  rows.push_back(std::vector<float>(37, 0.0f));  // all zero: scale 1
  // amax 127 -> scale exactly 1: x.5 values are exact ties, rounded half to even.
  rows.push_back({127.0f, 0.5f, 1.5f, 2.5f, -2.5f, -3.5f, 126.5f, -126.5f, 4.4999f, -0.5f});
  for (int i = 0; i < 50; ++i) {
    std::uniform_real_distribution<float> d(-3.0f, 3.0f);
    std::vector<float> r(1 + i * 7);
    for (float& v : r) v = d(rng) * (i % 5 == 0 ? 1e-3f : 1.0f);
    rows.push_back(r);
  }
  for (const auto& r : rows) {
    for (float st : {0.0f, 0.02f, 1.0f / 64}) {
      std::vector<uint8_t> got;
      std::vector<int8_t> want_i8(r.size());
      std::vector<uint8_t> want_f8(r.size());
      const float s_i8 = quant_row_like_device(r, false, st, got);
      EXPECT_EQ(s_i8, wq_quantize_row_int8(r.data(), static_cast<int64_t>(r.size()), want_i8.data(), st));
      for (size_t j = 0; j < r.size(); ++j) EXPECT_EQ(static_cast<int8_t>(got[j]), want_i8[j]) << r[j];
      const float s_f8 = quant_row_like_device(r, true, st, got);
      EXPECT_EQ(s_f8, wq_quantize_row_fp8(r.data(), static_cast<int64_t>(r.size()), want_f8.data(), st));
      for (size_t j = 0; j < r.size(); ++j) EXPECT_EQ(got[j], want_f8[j]) << r[j];
    }
  }
  EXPECT_EQ(w8a8::quant_int8(2.5f, 1.0f), 2);
  EXPECT_EQ(w8a8::quant_int8(3.5f, 1.0f), 4);
  EXPECT_EQ(w8a8::quant_int8(-2.5f, 1.0f), -2);
  EXPECT_EQ(w8a8::quant_int8(1000.0f, 1.0f), 127);  // static scales clamp
  EXPECT_EQ(w8a8::quant_int8(-1000.0f, 1.0f), -127);
}

TEST(W8a8Host, WorkspaceLayout) {
  EXPECT_EQ(wq_w8a8_padded_k(1), 64);
  EXPECT_EQ(wq_w8a8_padded_k(64), 64);
  EXPECT_EQ(wq_w8a8_padded_k(65), 128);
  EXPECT_EQ(wq_w8a8_workspace_bytes(3, 100), 3u * 128u + 16u);
  EXPECT_EQ(wq_w8a8_workspace_bytes(8, 4096) % 16, 0u);
}

// Host model of one warp's MMAs (PTX ISA fragment layouts; lane = 4 * groupID + threadID_in_group).
// 8-bit m16n8k32: A a0..a3 = (row g, k 4t..4t+3), (row g+8, same), (row g, k 16+4t..), (row g+8, ..);
// B b0, b1 = (k 4t.., col g), (k 16+4t.., col g). f16 m16n8k16: A a0..a3 = (row g, k 2t, 2t+1),
// (row g+8, ..), (row g, k 8+2t..), (row g+8, ..); B b0, b1 = (k 2t.., col g), (k 8+2t.., col g).
// The kernel's widening feeds the f16 MMA registers derived from the 8-bit ones; the model rebuilds
// the f16 MMA's logical operands from those registers and multiplies them as the hardware would.
TEST(W8a8Host, WidenedFragmentsComputeTheSameProduct) {
  std::mt19937 rng(3);
  uint8_t a[16][32], b[8][32];  // A row-major (m, k), B as stored (n, k)
  for (auto& r : a) for (auto& v : r) { do v = static_cast<uint8_t>(rng()); while ((v & 0x7F) == 0x7F); }
  for (auto& r : b) for (auto& v : r) { do v = static_cast<uint8_t>(rng()); while ((v & 0x7F) == 0x7F); }
  auto word = [](const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; };
  double acc[16][8] = {};
  auto f16 = [](uint32_t h, int i) { return static_cast<double>(f16_to_f32(static_cast<uint16_t>(i ? h >> 16 : h & 0xFFFF))); };
  for (int step = 0; step < 2; ++step) {  // the two f16 MMAs of one 8-bit MMA
    double A[16][16], B[16][8];
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane / 4, t = lane % 4;
      const uint32_t a8[4] = {word(&a[g][4 * t]), word(&a[g + 8][4 * t]), word(&a[g][16 + 4 * t]),
                              word(&a[g + 8][16 + 4 * t])};
      const uint32_t b8[2] = {word(&b[g][4 * t]), word(&b[g][16 + 4 * t])};
      const uint32_t* as = step == 0 ? a8 : a8 + 2;  // mma #1 uses a0, a1, b0; #2 a2, a3, b1
      const uint32_t af[4] = {w8a8::e4m3x4_to_f16x2(as[0], false), w8a8::e4m3x4_to_f16x2(as[1], false),
                              w8a8::e4m3x4_to_f16x2(as[0], true), w8a8::e4m3x4_to_f16x2(as[1], true)};
      const uint32_t bf[2] = {w8a8::e4m3x4_to_f16x2(b8[step], false), w8a8::e4m3x4_to_f16x2(b8[step], true)};
      for (int i = 0; i < 2; ++i) {
        A[g][2 * t + i] = f16(af[0], i);
        A[g + 8][2 * t + i] = f16(af[1], i);
        A[g][8 + 2 * t + i] = f16(af[2], i);
        A[g + 8][8 + 2 * t + i] = f16(af[3], i);
        B[2 * t + i][g] = f16(bf[0], i);
        B[8 + 2 * t + i][g] = f16(bf[1], i);
      }
    }
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 8; ++j)
        for (int kk = 0; kk < 16; ++kk) acc[i][j] += A[i][kk] * B[kk][j];
  }
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 8; ++j) {
      double want = 0.0;
      for (int kk = 0; kk < 32; ++kk) want += double(fp8_e4m3_to_f32(a[i][kk])) * fp8_e4m3_to_f32(b[j][kk]);
      EXPECT_EQ(acc[i][j] * w8a8::kF16WidenUnscale, want) << i << " " << j;
    }
  }
}

}  // namespace
}  // namespace eli
