// tests/cpp/test_wq_cuda_host.cc: the host-and-device index math of the CUDA W4A16 / W8A16 kernels
// (kernels/cuda/wq_w4a16.cuh, plain C++ here) against the reference dequantization
// (kernels/ref/wq_ref.cc) of the canonical layout built the way linear_wq.cc builds it, the GEMM
// split / workspace plans' invariants, and the GEMV's arithmetic: the int4 / int8 tile unpack and
// the dp4a emulation against scalar sums, the activation quantization's error bound, and a host
// emulation of the whole GEMV (prep + every warp's lanes in the kernel's order + the butterfly
// reduction + the epilogue, through the same helpers the kernel calls) against the reference with
// the tolerance the GPU test uses. Runs in CI; the kernels themselves are checked on the GPU by
// test_cuda_wq_kernels.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/wq_w4a16.cuh"
#include "kernels/ref/activation.h"
#include "kernels/ref/wq_ref.h"
#include "tests/cpp/wq_test_util.h"

namespace eli {
namespace {

// Packs (n, k) q values in the canonical layout of wq_matrix.h (the same loop as build_wq).
std::vector<uint8_t> pack(int bits, const std::vector<uint8_t>& q, int64_t n, int64_t k) {
  if (bits == 8) return q;
  std::vector<uint8_t> out(static_cast<size_t>(n * k / 2));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k / 32; ++c) {
      for (int i = 0; i < 16; ++i) {
        out[r * k / 2 + 16 * c + i] =
            static_cast<uint8_t>((q[r * k + 32 * c + i] & 15) | ((q[r * k + 32 * c + 16 + i] & 15) << 4));
      }
    }
  }
  return out;
}

class WqCudaHost : public ::testing::TestWithParam<int> {};

TEST_P(WqCudaHost, ChunkWordsTilesAndDequantMatchTheReference) {
  const int bits = GetParam();
  const int64_t n = 5, k = 32 * 7, gs = 32;
  std::mt19937 rng(5);
  std::vector<uint8_t> q(static_cast<size_t>(n * k));
  for (uint8_t& v : q) v = static_cast<uint8_t>(rng() % (bits == 4 ? 16 : 256));
  const std::vector<uint8_t> packed = pack(bits, q, n, k);
  std::vector<float> scales(static_cast<size_t>(n * k / gs)), zeros(scales.size());
  for (size_t i = 0; i < scales.size(); ++i) {
    scales[i] = 0.001f * static_cast<float>(1 + rng() % 50);
    zeros[i] = static_cast<float>(rng() % (bits == 4 ? 16 : 256)) + (i % 3 == 0 ? 0.5f : 0.f);
  }
  WqMatrix w = grouped_view(bits, packed, scales, zeros, gs);
  const int64_t row_bytes = k * bits / 8;
  std::vector<float> ref(static_cast<size_t>(k));
  for (int64_t r = 0; r < n; ++r) {
    wq_dequant_row(w, k, r, ref.data());
    const uint8_t* row = packed.data() + r * row_bytes;
    // GEMV view: 16-byte chunks, 32-bit words.
    const int vc = wq_cuda::chunk_cols(bits);
    for (int64_t c = 0; c < row_bytes / 16; ++c) {
      for (int wd = 0; wd < 4; ++wd) {
        uint32_t word = 0;
        for (int b = 0; b < 4; ++b) word |= static_cast<uint32_t>(row[16 * c + 4 * wd + b]) << (8 * b);
        for (int v = 0; v < wq_cuda::word_vals(bits); ++v) {
          const int64_t col = c * vc + wq_cuda::word_col(bits, wd, v);
          ASSERT_EQ(wq_cuda::word_q(bits, word, v), q[r * k + col]) << "r " << r << " chunk " << c << " w " << wd;
          const int64_t gi = r * (k / gs) + col / gs;
          EXPECT_EQ(wq_cuda::dequant(wq_cuda::word_q(bits, word, v), scales[gi], zeros[gi]), ref[col]);
        }
      }
    }
    // GEMM view: 32-column k-tiles.
    for (int64_t kt = 0; kt < k / 32; ++kt) {
      const uint8_t* tile = row + kt * 32 * bits / 8;
      for (int s = 0; s < 2; ++s) {  // the fragment reads: 16-bit pairs
        for (int j = 0; j < 2; ++j) {
          for (int t = 0; t < 4; ++t) {
            const int off = wq_cuda::frag_pair_offset(bits, s, j, t);
            ASSERT_EQ(off % 2, 0);
            ASSERT_LT(off + 1, 32 * bits / 8);
            const uint32_t pair = tile[off] | (static_cast<uint32_t>(tile[off + 1]) << 8);
            for (int e = 0; e < 2; ++e) {
              EXPECT_EQ(wq_cuda::frag_pair_q(bits, pair, s, e), q[r * k + kt * 32 + wq_cuda::frag_col(s, j, t, e)])
                  << "r " << r << " tile " << kt << " s " << s << " j " << j << " t " << t << " e " << e;
            }
          }
        }
      }
      for (int c = 0; c < 32; ++c) {
        ASSERT_EQ(wq_cuda::tile_q(bits, tile, c), q[r * k + kt * 32 + c]) << "r " << r << " tile " << kt;
        const int64_t gi = r * (k / gs) + (kt * 32 + c) / gs;
        EXPECT_EQ(wq_cuda::dequant(wq_cuda::tile_q(bits, tile, c), scales[gi], zeros[gi]), ref[kt * 32 + c]);
      }
    }
  }
  // Every word of a chunk covers distinct columns, all of the chunk's.
  std::vector<int> seen(static_cast<size_t>(wq_cuda::chunk_cols(bits)), 0);
  for (int wd = 0; wd < 4; ++wd) {
    for (int v = 0; v < wq_cuda::word_vals(bits); ++v) ++seen[wq_cuda::word_col(bits, wd, v)];
  }
  for (int s : seen) EXPECT_EQ(s, 1);
}

INSTANTIATE_TEST_SUITE_P(Bits, WqCudaHost, ::testing::Values(4, 8));

TEST(WqCudaHostPlan, FragmentColumnsCoverEachKStepOnce) {
  for (int s = 0; s < 2; ++s) {
    std::vector<int> seen(32, 0);
    for (int t = 0; t < 4; ++t) {
      for (int j = 0; j < 2; ++j) {
        for (int e = 0; e < 2; ++e) ++seen[wq_cuda::frag_col(s, j, t, e)];
      }
    }
    for (int c = 0; c < 32; ++c) EXPECT_EQ(seen[c], c / 16 == s ? 1 : 0) << "k-step " << s << " column " << c;
  }
}

TEST(WqCudaHostPlan, SplitsCoverKAndStayWithinTheWorkspace) {
  for (int64_t m : {9, 16, 17, 33, 64, 257, 1024}) {
    for (int64_t n : {37, 301, 4096, 14336, 28672, 128256}) {
      for (int64_t k : {96, 416, 2144, 4096, 14336}) {
        const int s = wq_cuda::gemm_splits(m, n, k);
        const int64_t ktiles = k / 32;
        ASSERT_GE(s, 1);
        ASSERT_LE(s, 16);
        const int64_t per = wq_cuda::gemm_split_tiles(k, s);
        EXPECT_GE(per * s, ktiles) << m << " " << n << " " << k;
        if (s > 1) {
          EXPECT_GE(ktiles / s, 8);
          EXPECT_LE(static_cast<int64_t>(s) * m * n * 4, wq_cuda::kGemmMaxPartialBytes);
          EXPECT_GE(wq_cuda::gemm_partial_bytes(m, n, k), static_cast<size_t>(s * m * n * 4));
        } else {
          EXPECT_EQ(wq_cuda::gemm_partial_bytes(m, n, k), 0u);
        }
        if (m < wq_cuda::dequant_gemm_rows()) {
          EXPECT_EQ(wq_cuda::gemm_workspace_bytes(m, n, k, true),
                    wq_cuda::gemm_x_bytes(m, k, true) + wq_cuda::gemm_partial_bytes(m, n, k));
        } else {  // dequantize-to-bf16 chunks + cuBLASLt
          const int64_t rows = wq_cuda::dequant_chunk_rows(n, k);
          EXPECT_TRUE(rows == n || rows % 128 == 0) << n << " " << k;
          EXPECT_LE(rows, n);
          EXPECT_GE(wq_cuda::dequant_chunk_bytes(n, k), static_cast<size_t>(rows * k * 2));
          EXPECT_EQ(wq_cuda::gemm_workspace_bytes(m, n, k, true),
                    wq_cuda::gemm_x_bytes(m, k, true) + wq_cuda::dequant_chunk_bytes(n, k) + wq_cuda::kDequantBlasBytes);
        }
        EXPECT_GE(wq_cuda::gemm_x_bytes(m, k, true), static_cast<size_t>(m * k * 2));
      }
    }
  }
  // The route threshold: 128 by default, the environment overrides it, 0 turns the route off.
  EXPECT_EQ(wq_cuda::parse_dequant_gemm_rows(nullptr), 128);
  EXPECT_EQ(wq_cuda::parse_dequant_gemm_rows(""), 128);
  EXPECT_EQ(wq_cuda::parse_dequant_gemm_rows("64"), 64);
  EXPECT_GT(wq_cuda::parse_dequant_gemm_rows("0"), int64_t{1} << 40);
  EXPECT_EQ(wq_cuda::gemm_mt(9), 1);
  EXPECT_EQ(wq_cuda::gemm_mt(17), 2);
  EXPECT_EQ(wq_cuda::gemm_mt(33), 4);
}

// --- GEMV arithmetic -------------------------------------------------------------------------------

uint32_t load_word(const uint8_t* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);  // little-endian, as the device's 32-bit words
  return w;
}

TEST_P(WqCudaHost, TileUnpackAndDp4aMatchScalarSums) {
  const int bits = GetParam();
  std::mt19937 rng(11);
  const int tb = 32 * bits / 8;
  for (int it = 0; it < 200; ++it) {
    std::vector<uint8_t> tile(static_cast<size_t>(tb));
    for (uint8_t& b : tile) b = static_cast<uint8_t>(rng());
    int8_t xq[32];
    for (int c = 0; c < 32; ++c) xq[c] = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
    if (it == 0) {  // extremes: every code at its maximum against -127
      std::fill(tile.begin(), tile.end(), uint8_t{255});
      std::fill(xq, xq + 32, int8_t{-127});
    }
    uint32_t w[8], x[8], u[8];
    for (int i = 0; i < wq_cuda::TileWords<4>::kWords * (bits == 4 ? 1 : 2); ++i) w[i] = load_word(tile.data() + 4 * i);
    for (int i = 0; i < 8; ++i) x[i] = load_word(reinterpret_cast<const uint8_t*>(xq) + 4 * i);
    if (bits == 4) {
      wq_cuda::tile_unpack<4>(w, u);
    } else {
      wq_cuda::tile_unpack<8>(w, u);
    }
    // Unpacked word v, byte b is the code of column 4v + b.
    int64_t want = 0;
    for (int c = 0; c < 32; ++c) {
      ASSERT_EQ((u[c / 4] >> (8 * (c % 4))) & 255u, wq_cuda::tile_q(bits, tile.data(), c)) << "column " << c;
      want += static_cast<int64_t>(wq_cuda::tile_q(bits, tile.data(), c)) * xq[c];
    }
    EXPECT_EQ(wq_cuda::tile_dot(u, x), want);
    EXPECT_EQ(wq_cuda::dp4a_us(0xFF80017Fu, 0x80FF7F01u, 5), 5 + 127 * 1 + 1 * 127 + 128 * -1 + 255 * -128);
  }
}

TEST(WqCudaHostPlan, ActivationCodesStayWithinHalfAStep) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-3.f, 3.f);
  for (int it = 0; it < 100; ++it) {
    float v[32], amax = 0.f;
    for (float& e : v) {
      e = u(rng) * (it % 7 == 0 ? 1e-30f : 1.f);
      amax = std::max(amax, std::fabs(e));
    }
    const float d = wq_cuda::xq_scale(amax), inv = wq_cuda::xq_inv_scale(amax);
    bool hit_max = false;
    for (float e : v) {
      const int q = wq_cuda::xq_code(e, inv);
      ASSERT_LE(std::abs(q), 127);
      hit_max = hit_max || std::abs(q) == 127;
      EXPECT_LE(std::fabs(e - d * static_cast<float>(q)), 0.5f * d * (1 + 1e-5f) + 1e-45f) << e << " " << d;
    }
    EXPECT_TRUE(hit_max);
  }
  EXPECT_EQ(wq_cuda::xq_inv_scale(0.f), 0.f);
  EXPECT_EQ(wq_cuda::xq_code(0.5f, 1.f), 0);  // half to even
  EXPECT_EQ(wq_cuda::xq_code(1.5f, 1.f), 2);
  EXPECT_EQ(wq_cuda::xq_code(-300.f, 1.f), -127);
}

TEST(WqCudaHostPlan, GemvWarpRowsCoverEveryOutputOnce) {
  for (int64_t n : {1, 2, 5, 8, 37, 130}) {
    for (bool gated : {false, true}) {
      if (gated && n % 2 != 0) continue;
      const int64_t n_out = gated ? n / 2 : n, ro = gated ? wq_cuda::kGemvRows / 2 : wq_cuda::kGemvRows;
      std::vector<int> seen(static_cast<size_t>(n), 0);
      for (int64_t o0 = 0; o0 < n_out; o0 += ro) {
        for (int r = 0; r < wq_cuda::kGemvRows; ++r) {
          const int64_t row = wq_cuda::gemv_warp_row(n, gated, o0, r);
          ASSERT_GE(row, 0);
          ASSERT_LT(row, n);
          const int o = gated ? r % (wq_cuda::kGemvRows / 2) : r;
          if (o0 + o >= n_out) continue;  // clamped, dropped at the store
          ++seen[row];
          if (gated) EXPECT_EQ(row, r < wq_cuda::kGemvRows / 2 ? o0 + o : n_out + o0 + o);
          else EXPECT_EQ(row, o0 + r);
        }
      }
      for (int64_t j = 0; j < n; ++j) EXPECT_EQ(seen[j], 1) << "n " << n << " gated " << gated << " row " << j;
    }
  }
  EXPECT_GE(wq_cuda::gemv_workspace_bytes(8, 4096), size_t{8} * 4096 + 8 * 128 * 8);
  // kw: 4 only when kw = 1 leaves SMs without a CTA; forced settings win.
  EXPECT_EQ(wq_cuda::gemv_k_warps(4096, false, 132, 0), 1);   // 256 CTAs
  EXPECT_EQ(wq_cuda::gemv_k_warps(1024, false, 132, 0), 4);   // 64 CTAs
  EXPECT_EQ(wq_cuda::gemv_k_warps(14336, true, 132, 0), 1);
  EXPECT_EQ(wq_cuda::gemv_k_warps(4096, false, 132, 4), 4);
  EXPECT_EQ(wq_cuda::gemv_k_warps(37, false, 132, 1), 1);
  EXPECT_EQ(wq_cuda::gemv_xq_bytes(3, 96) % 256, 0u);
}

struct GemvCase {
  int64_t m, n, k, gs;
  bool perm, bias, norm, accumulate;
  GatedAct gated;
};

// The prep kernel's output for one x row: codes (k) and per tile {d, sum of codes}.
void emulate_prep(const float* x, int64_t k, const float* nw, float off, float eps, const std::vector<int32_t>& perm,
                  std::vector<int8_t>& qs, std::vector<float>& d, std::vector<float>& sums) {
  float inv = 1.f;
  if (nw != nullptr) {
    float ss = 0.f;
    for (int64_t j = 0; j < k; ++j) ss = std::fma(x[j], x[j], ss);
    inv = 1.0f / std::sqrt(ss / static_cast<float>(k) + eps);
  }
  const int64_t nt = k / 32;
  qs.assign(static_cast<size_t>(k), 0);
  d.assign(static_cast<size_t>(nt), 0.f);
  sums.assign(static_cast<size_t>(nt), 0.f);
  for (int64_t t = 0; t < nt; ++t) {
    float v[32], amax = 0.f;
    for (int c = 0; c < 32; ++c) {
      const int64_t j = 32 * t + c, src = perm.empty() ? j : perm[j];
      v[c] = nw != nullptr ? x[src] * inv * (nw[src] + off) : x[src];
      amax = std::max(amax, std::fabs(v[c]));
    }
    const float id = wq_cuda::xq_inv_scale(amax);
    int sum = 0;
    for (int c = 0; c < 32; ++c) {
      const int q = wq_cuda::xq_code(v[c], id);
      qs[32 * t + c] = static_cast<int8_t>(q);
      sum += q;
    }
    d[t] = wq_cuda::xq_scale(amax);
    sums[t] = static_cast<float>(sum);
  }
}

// The GEMV kernel's arithmetic for a GemvArgs (host pointers) and kw warps per row group, in its
// order: thread j = 32 * warp + lane of the group owning output rows o0.. accumulates tiles j,
// j + 32 kw, ... through tile_unpack / tile_dot / tile_fma; each warp's lanes are summed by the xor
// butterfly, the kw warp sums added in warp order (kw > 1, starting from 0 as the kernel), then
// bias, act, store. Returns the per-row activation steps d (for the tolerance) in *dx.
void emulate_gemv(int bits, int kw, const GemvArgs& a, std::vector<std::vector<float>>* dx) {
  const WqMatrix& w = *static_cast<const WqMatrix*>(a.w);
  const int64_t k = a.k, nt = k / 32, gs = w.group_size > 0 ? w.group_size : k, tpg = gs / 32, groups = k / gs;
  const int64_t row_bytes = k * bits / 8, tb = 32 * bits / 8;
  const bool gated = a.gated != GatedAct::kNone;
  const int64_t n_out = gated ? a.n / 2 : a.n, ro = gated ? wq_cuda::kGemvRows / 2 : wq_cuda::kGemvRows;
  const int64_t xs = a.m > 1 ? a.x_stride : k, os = a.m > 1 ? a.out_stride : n_out;
  std::vector<int32_t> perm;
  if (w.perm != nullptr) perm.assign(w.perm, w.perm + k);
  std::vector<std::vector<int8_t>> qs(static_cast<size_t>(a.m));
  std::vector<std::vector<float>> d(static_cast<size_t>(a.m)), sums(static_cast<size_t>(a.m));
  for (int64_t i = 0; i < a.m; ++i) {
    emulate_prep(a.x + i * xs, k, a.norm_weight, a.norm_weight_offset, a.norm_eps, perm, qs[i], d[i], sums[i]);
  }
  if (dx != nullptr) *dx = d;
  const uint8_t* q = static_cast<const uint8_t*>(w.q);
  constexpr int R = wq_cuda::kGemvRows;
  const int64_t e_per = a.m * R;  // sums per thread: [i][r]
  for (int64_t o0 = 0; o0 < n_out; o0 += ro) {
    int64_t rows[R];
    for (int r = 0; r < R; ++r) rows[r] = wq_cuda::gemv_warp_row(a.n, gated, o0, r);
    std::vector<float> total(static_cast<size_t>(e_per), 0.f);
    for (int wp = 0; wp < kw; ++wp) {
      std::vector<float> lanes(static_cast<size_t>(32 * e_per), 0.f);  // [lane][i][r]
      for (int lane = 0; lane < 32; ++lane) {
        for (int64_t t = 32 * wp + lane; t < nt; t += 32 * kw) {
          for (int64_t i = 0; i < a.m; ++i) {
            uint32_t xw[8];
            for (int v = 0; v < 8; ++v) xw[v] = load_word(reinterpret_cast<const uint8_t*>(qs[i].data()) + 32 * t + 4 * v);
            for (int r = 0; r < R; ++r) {
              uint32_t ww[8], u[8];
              for (int v = 0; v < tb / 4; ++v) ww[v] = load_word(q + rows[r] * row_bytes + t * tb + 4 * v);
              if (bits == 4) {
                wq_cuda::tile_unpack<4>(ww, u);
              } else {
                wq_cuda::tile_unpack<8>(ww, u);
              }
              const int64_t g = rows[r] * groups + t / tpg;
              float& acc = lanes[lane * e_per + i * R + r];
              acc = wq_cuda::tile_fma(acc, w.scales[g], w.zeros[g], d[i][t], sums[i][t], wq_cuda::tile_dot(u, xw));
            }
          }
        }
      }
      for (int off = 16; off > 0; off >>= 1) {  // butterfly, as cuda::warp_reduce_sum
        std::vector<float> next(lanes.size());
        for (int lane = 0; lane < 32; ++lane) {
          for (int64_t e = 0; e < e_per; ++e) next[lane * e_per + e] = lanes[lane * e_per + e] + lanes[(lane ^ off) * e_per + e];
        }
        lanes.swap(next);
      }
      for (int64_t e = 0; e < e_per; ++e) total[e] = kw == 1 ? lanes[e] : total[e] + lanes[e];
    }
    for (int64_t i = 0; i < a.m; ++i) {
      for (int o = 0; o < ro; ++o) {
        const int64_t col = o0 + o;
        if (col >= n_out) continue;
        float y = total[i * R + o];
        if (a.bias != nullptr) y += a.bias[col];
        if (gated) {
          float up = total[i * R + o + R / 2];
          if (a.bias != nullptr) up += a.bias[n_out + col];
          y = gated_act_value(a.gated, y) * up;
        }
        float* dst = a.out + i * os + col;
        *dst = a.accumulate ? *dst + y : y;
      }
    }
  }
}

TEST_P(WqCudaHost, GemvEmulationMatchesTheReference) {
  const int bits = GetParam();
  std::mt19937 rng(17);
  const uint32_t qmax = bits == 4 ? 16 : 256;
  std::vector<GemvCase> cases;
  for (int64_t m : {1, 2, 3, 5, 8}) {
    cases.push_back({m, 37, 416, 32, false, false, false, false, GatedAct::kNone});
    cases.push_back({m, 29, 416, 416, true, true, true, true, GatedAct::kNone});
    cases.push_back({m, 22, 320, 64, false, true, true, false, GatedAct::kSilu});
    cases.push_back({m, 18, 384, 128, true, false, false, true, GatedAct::kGeluTanh});
    cases.push_back({m, 7, 4192, 32, false, true, false, false, GatedAct::kNone});  // lanes take 2+ trips
  }
  for (const GemvCase& c : cases) {
    SCOPED_TRACE("m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) + " k=" + std::to_string(c.k) +
                 " gs=" + std::to_string(c.gs));
    std::vector<uint8_t> qv(static_cast<size_t>(c.n * c.k));
    for (uint8_t& v : qv) v = static_cast<uint8_t>(rng() % qmax);
    const std::vector<uint8_t> packed = pack(bits, qv, c.n, c.k);
    const size_t ng = static_cast<size_t>(c.n * (c.k / c.gs));
    std::vector<float> scales(ng), zeros(ng);
    std::uniform_real_distribution<float> sd(0.002f, 0.02f), xd(-2.f, 2.f), nd(0.5f, 1.5f);
    for (size_t i = 0; i < ng; ++i) {
      scales[i] = (bits == 4 ? 8.f : 0.5f) * sd(rng);
      zeros[i] = static_cast<float>(rng() % qmax) + (i % 5 == 0 ? 0.5f : 0.f);
    }
    std::vector<int32_t> perm;
    if (c.perm) {
      perm.resize(static_cast<size_t>(c.k));
      for (int64_t j = 0; j < c.k; ++j) perm[j] = static_cast<int32_t>(j);
      std::shuffle(perm.begin(), perm.end(), rng);
    }
    const WqMatrix w = grouped_view(bits, packed, scales, zeros, c.gs, perm);
    const bool gated = c.gated != GatedAct::kNone;
    const int64_t n_out = gated ? c.n / 2 : c.n, xs = c.k + 3, os = n_out + 2;
    std::vector<float> x(static_cast<size_t>(c.m * xs)), nw(static_cast<size_t>(c.k)), bias(static_cast<size_t>(c.n)),
        out0(static_cast<size_t>(c.m * os));
    for (float& v : x) v = xd(rng);
    for (float& v : nw) v = nd(rng);
    for (float& v : bias) v = xd(rng);
    for (float& v : out0) v = xd(rng);
    GemvArgs a{};
    a.m = c.m;
    a.n = c.n;
    a.k = c.k;
    a.out_stride = os;
    a.x_stride = xs;
    a.norm_eps = 1e-5f;
    a.norm_weight_offset = 0.25f;
    a.gated = c.gated;
    a.accumulate = c.accumulate;
    a.x = x.data();
    a.w = &w;
    a.bias = c.bias ? bias.data() : nullptr;
    a.norm_weight = c.norm ? nw.data() : nullptr;
    std::vector<float> want = out0, got = out0;
    a.out = want.data();
    wq_gemv_ref(&a, ExecContext{});
    const int kw = (c.n + c.m) % 2 == 0 ? 1 : 4;  // both row-group widths over the cases
    a.out = got.data();
    std::vector<std::vector<float>> dx;
    emulate_gemv(bits, kw, a, &dx);

    // Tolerance (docs/quantization.md "Tolerance"): per output, E = sum_t (d_t / 2) sum_{j in t} |w_j|
    // from the activation rounding, plus 1e-4 of sum_j |w_j x_j| for f32 arithmetic; gated: propagated.
    std::vector<float> row(static_cast<size_t>(c.k));
    for (int64_t i = 0; i < c.m; ++i) {
      // Effective x (double), as the reference sees it.
      const float* xr = x.data() + i * xs;
      double ss = 0.0;
      for (int64_t j = 0; j < c.k; ++j) ss += static_cast<double>(xr[j]) * xr[j];
      const double inv = c.norm ? 1.0 / std::sqrt(ss / static_cast<double>(c.k) + 1e-5) : 1.0;
      std::vector<double> xe(static_cast<size_t>(c.k));
      for (int64_t j = 0; j < c.k; ++j) {
        const int64_t src = perm.empty() ? j : perm[j];
        xe[j] = c.norm ? xr[src] * inv * (nw[src] + 0.25) : xr[src];
      }
      std::vector<double> tol(static_cast<size_t>(c.n)), pre(static_cast<size_t>(c.n));
      for (int64_t r = 0; r < c.n; ++r) {
        wq_dequant_row(w, c.k, r, row.data());
        double mag = 0.0, e = 0.0, s = c.bias ? bias[r] : 0.0;
        for (int64_t j = 0; j < c.k; ++j) {
          mag += std::fabs(row[j] * xe[j]);
          e += 0.5 * dx[i][j / 32] * 1.001 * std::fabs(row[j]);
          s += row[j] * xe[j];
        }
        tol[r] = e + 1e-4 * mag + 1e-5;
        pre[r] = s;
      }
      for (int64_t col = 0; col < n_out; ++col) {
        double t = tol[col];
        if (gated) {
          const double tu = tol[col + n_out];
          t = 1.2 * t * (std::fabs(pre[col + n_out]) + tu) + std::fabs(gated_act_value(c.gated, pre[col])) * tu + 1e-5;
        }
        t += c.accumulate ? 1e-6 * std::fabs(out0[i * os + col]) : 0.0;
        const size_t idx = static_cast<size_t>(i * os + col);
        EXPECT_LE(std::fabs(static_cast<double>(got[idx]) - want[idx]), t) << "row " << i << " col " << col;
      }
      for (int64_t col = n_out; col < os; ++col) {  // the stride's padding stays untouched
        EXPECT_EQ(got[i * os + col], out0[i * os + col]);
      }
    }
  }
}

// Without the activation rounding (x already on each tile's int8 grid) the emulated kernel equals
// the reference to f32 rounding: the integer dot products, the zero term and the group indexing
// are exact, so any indexing slip shows up far above this bound.
TEST_P(WqCudaHost, GemvEmulationIsExactOnGridActivations) {
  const int bits = GetParam();
  std::mt19937 rng(23);
  const uint32_t qmax = bits == 4 ? 16 : 256;
  for (int64_t gs : {32, 64, 128}) {
    const int64_t m = 4, n = 11, k = 32 * 37 - (gs == 128 ? 32 * 5 : 0);  // k % gs == 0 below
    const int64_t kk = k / gs * gs;
    std::vector<uint8_t> qv(static_cast<size_t>(n * kk));
    for (uint8_t& v : qv) v = static_cast<uint8_t>(rng() % qmax);
    const std::vector<uint8_t> packed = pack(bits, qv, n, kk);
    std::vector<float> scales(static_cast<size_t>(n * (kk / gs))), zeros(scales.size());
    for (size_t i = 0; i < scales.size(); ++i) {
      scales[i] = std::ldexp(static_cast<float>(1 + rng() % 15), -8);
      zeros[i] = static_cast<float>(rng() % qmax);
    }
    WqMatrix w = grouped_view(bits, packed, scales, zeros, gs);
    // x = d * code with d = amax / 127 exactly representable: every tile holds a +-127 code.
    std::vector<float> x(static_cast<size_t>(m * kk));
    for (int64_t i = 0; i < m * kk; ++i) {
      const int code = (i % 32 == 0) ? 127 : static_cast<int>(rng() % 255) - 127;
      x[i] = static_cast<float>(code) * 0.5f;
    }
    GemvArgs a{};
    a.m = m;
    a.n = n;
    a.k = kk;
    a.out_stride = n;
    a.x_stride = kk;
    a.x = x.data();
    a.w = &w;
    std::vector<float> want(static_cast<size_t>(m * n)), got(want.size());
    a.out = want.data();
    wq_gemv_ref(&a, ExecContext{});
    for (int kw : {1, 4}) {
    std::fill(got.begin(), got.end(), 0.f);
    a.out = got.data();
    emulate_gemv(bits, kw, a, nullptr);
    std::vector<float> row(static_cast<size_t>(kk));
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t r = 0; r < n; ++r) {
        wq_dequant_row(w, kk, r, row.data());
        double mag = 0.0;
        for (int64_t j = 0; j < kk; ++j) mag += std::fabs(row[j] * x[i * kk + j]);
        EXPECT_LE(std::fabs(got[i * n + r] - want[i * n + r]), 1e-5 * mag + 1e-6)
            << "gs " << gs << " kw " << kw << " " << i << " " << r;
      }
    }
    }
  }
}

}  // namespace
}  // namespace eli
