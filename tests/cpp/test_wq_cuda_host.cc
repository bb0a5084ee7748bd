// tests/cpp/test_wq_cuda_host.cc: the host-and-device index math of the CUDA W4A16 / W8A16 kernels
// (kernels/cuda/wq_w4a16.cuh, plain C++ here) against the reference dequantization
// (kernels/ref/wq_ref.cc) of the canonical layout built the way linear_wq.cc builds it, and the
// GEMM split / workspace plans' invariants. Runs in CI; the kernels themselves are checked on the
// GPU by test_cuda_wq_kernels.cc.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/cuda/wq_w4a16.cuh"
#include "kernels/ref/wq_ref.h"

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
  WqMatrix w;
  w.q = packed.data();
  w.scales = scales.data();
  w.zeros = zeros.data();
  w.group_size = gs;
  w.format = bits == 4 ? WeightFormat::kInt4Grouped : WeightFormat::kInt8Grouped;
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

}  // namespace
}  // namespace eli
