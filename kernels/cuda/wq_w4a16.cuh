// kernels/cuda/wq_w4a16.cuh: the CUDA kernels of eli's weight-only grouped integer layouts
// (WeightFormat kInt4Grouped "W4A16" and kInt8Grouped "W8A16", kernels/wq_matrix.h), and the
// index math / plans / per-tile arithmetic they share with the host. Plain C++ outside nvcc (the
// helpers are host-and-device), so runtime/model/linear_wq.cc sizes its scratch with the same
// functions the kernels check against, and tests/cpp/test_wq_cuda_host.cc tests the index math and
// emulates the GEMV's whole arithmetic in CI.
//
// Device layout: the canonical one of wq_matrix.h, unchanged (no re-tiling at repack): q row-major
// (n, k * bits / 8), scales / zeros (n, k / group_size) f32, perm (k) int32. Both kernels read the
// weight in 16-byte pieces of one row:
//   - a 16-byte chunk of a kInt4Grouped row holds 32 columns: byte i -> column i (low nibble) and
//     16 + i (high nibble); of a kInt8Grouped row 16 columns (byte i -> column i).
//   - the GEMM's k-tile is 32 columns (one int4 chunk, two int8 chunks); group_size is a multiple
//     of 32, so a k-tile (and a GEMV tile) lies in one group.
//
// Routes (WqLinearBase::apply): m <= kGemvMaxRows -> Op::kGemv (int8 activations, dp4a; see
// wq_w4a16_gemv.cu and "GEMV" below); m > kGemvMaxRows -> Op::kGemm
// (tensor-core mma.sync m16n8k16, bf16 x; f32 x or an act-order permutation are converted /
// gathered to bf16 rows in the workspace first; split-K over the grid with a deterministic
// reduction through the workspace when the output tiles are too few to fill the GPU; f32 out, or
// bf16 out without accumulate for a gated product whose activation rows are bf16); from
// dequant_gemm_rows() rows on, dequantize-to-bf16 in row chunks + cuBLASLt instead.
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <cmath>
#include <cstdlib>

#if defined(__CUDACC__)
#define ELI_WQ_HD __host__ __device__ __forceinline__
#define ELI_WQ_UNROLL _Pragma("unroll")
#else
#define ELI_WQ_HD inline
#define ELI_WQ_UNROLL
#endif

namespace eli {
namespace wq_cuda {

// --- element index math (16-byte chunks and 32-bit words of a row) -------------------------------

// Columns one 16-byte chunk of a row holds.
ELI_WQ_HD int chunk_cols(int bits) { return bits == 4 ? 32 : 16; }
// Values one 32-bit word (bytes 4w .. 4w + 3 of a chunk) holds.
ELI_WQ_HD int word_vals(int bits) { return bits == 4 ? 8 : 4; }

// Value v (< word_vals) of `word`, word w (< 4) of its chunk: its column within the chunk and its q.
//   int4: v < 4: low nibble of byte v -> column 4w + v;  v >= 4: high nibble of byte v - 4 -> 16 + 4w + v - 4
//   int8: byte v -> column 4w + v
ELI_WQ_HD int word_col(int bits, int w, int v) { return bits == 4 ? (v < 4 ? 4 * w + v : 16 + 4 * w + v - 4) : 4 * w + v; }
ELI_WQ_HD uint32_t word_q(int bits, uint32_t word, int v) {
  return bits == 4 ? (word >> (v < 4 ? 8 * v : 8 * (v - 4) + 4)) & 15u : (word >> (8 * v)) & 255u;
}

// q of column c (< 32) of a 32-column k-tile of one row, `tile` pointing at its first byte
// (int4: 16 bytes, int8: 32 bytes).
ELI_WQ_HD uint32_t tile_q(int bits, const uint8_t* tile, int c) {
  return bits == 4 ? (c < 16 ? tile[c] & 15u : static_cast<uint32_t>(tile[c - 16]) >> 4) : tile[c];
}

// The k-tile column of a B (k x n, "col") fragment element of mma m16n8k16: k-step s (0, 1: columns
// 16 s ..), register j (0: k rows 2t, 2t + 1; 1: k rows 2t + 8, 2t + 9), half e (0: lower k), for
// lane t = lane % 4 (the fragment's column n is lane / 4). The A fragment uses the same k columns.
ELI_WQ_HD int frag_col(int s, int j, int t, int e) { return 16 * s + 8 * j + 2 * t + e; }

// How the GEMM reads a B fragment from the k-tile: one 16-bit load per register j at byte
// frag_pair_offset, whose two bytes give the register's two elements (e = 0, 1) via frag_pair_q.
// int4: the pair at 2t + 8j serves both k-steps (low nibbles: columns 0..15, high: 16..31);
// int8: the pair at 16 s + 2t + 8j. Equal to tile_q(frag_col(s, j, t, e)) (tested on the host).
ELI_WQ_HD int frag_pair_offset(int bits, int s, int j, int t) { return (bits == 4 ? 0 : 16 * s) + 8 * j + 2 * t; }
ELI_WQ_HD uint32_t frag_pair_q(int bits, uint32_t pair, int s, int e) {
  return bits == 4 ? (pair >> (8 * e + 4 * s)) & 15u : (pair >> (8 * e)) & 255u;
}

// The f32 weight value, exactly as kernels/ref/wq_ref.cc computes it.
ELI_WQ_HD float dequant(uint32_t q, float scale, float zero) { return (static_cast<float>(q) - zero) * scale; }

// --- plans shared by the kernels and the LinearMethod's scratch sizing -----------------------------

constexpr int kGemmThreads = 128;  // 4 warps side by side along n
constexpr int kGemmBN = 128;       // output columns per CTA (32 per warp)
constexpr int kGemmBK = 32;        // k columns per pipeline stage
constexpr int64_t kGemmTargetCtas = 264;              // ~2 CTAs per SM of an H100 (fixed: plans must not depend on the device)
constexpr int64_t kGemmMaxPartialBytes = int64_t{256} << 20;

ELI_WQ_HD size_t align256(size_t n) { return (n + 255) / 256 * 256; }

// m16 tiles per CTA (each warp takes all of them): 1, 2 or 4 (BM = 16, 32, 64).
ELI_WQ_HD int gemm_mt(int64_t m) { return m <= 16 ? 1 : m <= 32 ? 2 : 4; }

// Split-K factor: enough CTAs to fill the GPU while every split keeps >= 8 k-tiles; capped so that
// the f32 partial sums (splits x m x n) stay within kGemmMaxPartialBytes.
ELI_WQ_HD int gemm_splits(int64_t m, int64_t n, int64_t k) {
  const int64_t bm = 16 * gemm_mt(m);
  const int64_t tiles = ((m + bm - 1) / bm) * ((n + kGemmBN - 1) / kGemmBN);
  const int64_t ktiles = k / kGemmBK;
  if (tiles >= kGemmTargetCtas || ktiles < 16) return 1;
  int64_t s = (kGemmTargetCtas + tiles - 1) / tiles;
  if (s > ktiles / 8) s = ktiles / 8;
  if (s > 16) s = 16;
  while (s > 1 && s * m * n * 4 > kGemmMaxPartialBytes) --s;
  return s < 1 ? 1 : static_cast<int>(s);
}

// k-tiles each split takes (the last splits may take fewer, or none).
ELI_WQ_HD int64_t gemm_split_tiles(int64_t k, int splits) { return (k / kGemmBK + splits - 1) / splits; }

// Large m: the weight is dequantized to bf16 in row chunks of ~kDequantChunkBytes (multiples of
// 128 rows) and each chunk multiplied by cuBLASLt (eli's bf16 GEMM), which beats the mma.sync
// kernel once the product is compute-bound. From dequant_gemm_rows() rows on: 128 by default (on
// an H100 the dequantize route beat the mma route from M = 128 on the 8B gate_up / up / qo shapes,
// bench/results/2026-12-07_h100_wq_w4a16.json),
// ELI_WQ_DEQUANT_GEMM_ROWS=<rows> in the environment overrides it (0: never), read once per
// process; tests and the bench set dequant_gemm_rows_setting() directly. The scratch sizing and
// the kernel read the same setting, so it must not change between sizing and running.
constexpr size_t kDequantChunkBytes = size_t{64} << 20;
constexpr size_t kDequantBlasBytes = size_t{4} << 20;  // cuBLASLt's workspace on that route
inline int64_t parse_dequant_gemm_rows(const char* v) {
  if (v == nullptr || *v == '\0') return 128;
  const long long r = std::atoll(v);
  return r <= 0 ? INT64_MAX : static_cast<int64_t>(r);
}
inline int64_t& dequant_gemm_rows_setting() {
  static int64_t rows = parse_dequant_gemm_rows(std::getenv("ELI_WQ_DEQUANT_GEMM_ROWS"));
  return rows;
}
inline int64_t dequant_gemm_rows() { return dequant_gemm_rows_setting(); }
ELI_WQ_HD int64_t dequant_chunk_rows(int64_t n, int64_t k) {
  int64_t rows = static_cast<int64_t>(kDequantChunkBytes / (static_cast<size_t>(k) * 2)) / 128 * 128;
  if (rows < 128) rows = 128;
  return rows < n ? rows : n;
}

// GEMM workspace: [bf16 x rows (m, k) when x must be converted or gathered][mma route: f32 partials
// (splits, m, n) when splits > 1 | dequant route: bf16 weight chunk, then cuBLASLt's workspace],
// each part 256-byte aligned.
ELI_WQ_HD size_t gemm_x_bytes(int64_t m, int64_t k, bool convert_x) {
  return convert_x ? align256(static_cast<size_t>(m) * static_cast<size_t>(k) * 2) : 0;
}
ELI_WQ_HD size_t gemm_partial_bytes(int64_t m, int64_t n, int64_t k) {
  const int s = gemm_splits(m, n, k);
  return s > 1 ? align256(static_cast<size_t>(s) * static_cast<size_t>(m) * static_cast<size_t>(n) * 4) : 0;
}
ELI_WQ_HD size_t dequant_chunk_bytes(int64_t n, int64_t k) {
  return align256(static_cast<size_t>(dequant_chunk_rows(n, k)) * static_cast<size_t>(k) * 2);
}
inline size_t gemm_workspace_bytes(int64_t m, int64_t n, int64_t k, bool convert_x) {
  if (m >= dequant_gemm_rows()) return gemm_x_bytes(m, k, convert_x) + dequant_chunk_bytes(n, k) + kDequantBlasBytes;
  return gemm_x_bytes(m, k, convert_x) + gemm_partial_bytes(m, n, k);
}

// --- GEMV: int8 activations, exact integer tile dot products -------------------------------------
//
// A 32-column k-tile ("tile" t: columns 32t .. 32t + 31) is the GEMV's unit: 16 bytes of an int4
// row (one chunk), 32 bytes of an int8 row, and one activation block. The prep kernel writes the
// effective x rows (RMSNorm, then the act-order gather, in stored column order) quantized per tile:
//   d = max|v| / 127, q_j = round-half-even(v_j / d) in [-127, 127] (d = 0, q = 0 for a zero tile),
// so |v_j - d q_j| <= d / 2 is the only error against "dequantize, then f32". Per (weight row,
// tile, x row): dot = sum_j qw_j qx_j (exact int32, 8 dp4a), then
//   acc += (s_w d) * (dot - z_w sum_j qx_j)     [fma: one rounding of the bracket; sum qx exact]
// which is sum_j (qw_j - z_w) s_w (d qx_j) up to f32 rounding.

// GEMV workspace: [x codes (m, k) int8, tile t of row i at bytes (i * k + 32 t)][per (i, t): float2
// {d, sum of the tile's 32 codes (exact)}], each part 256-byte aligned.
ELI_WQ_HD size_t gemv_xq_bytes(int64_t m, int64_t k) { return align256(static_cast<size_t>(m) * static_cast<size_t>(k)); }
ELI_WQ_HD size_t gemv_workspace_bytes(int64_t m, int64_t k) {
  return gemv_xq_bytes(m, k) + align256(static_cast<size_t>(m) * static_cast<size_t>(k / 32) * 8);
}

// Activation quantization of one element: d and 1/d from the tile's max|v|, the code of v.
ELI_WQ_HD float xq_scale(float amax) { return amax / 127.f; }
ELI_WQ_HD float xq_inv_scale(float amax) { return amax > 0.f ? 127.f / amax : 0.f; }
ELI_WQ_HD int xq_code(float v, float inv) {
#if defined(__CUDA_ARCH__)
  const int q = __float2int_rn(v * inv);
#else
  const int q = static_cast<int>(std::nearbyint(v * inv));  // default rounding: half to even
#endif
  return q < -127 ? -127 : q > 127 ? 127 : q;
}

// Unsigned-by-signed 4-byte dot product: c + sum_b (uint8) a_b * (int8) b_b (dp4a.u32.s32).
ELI_WQ_HD int32_t dp4a_us(uint32_t a, uint32_t b, int32_t c) {
#if defined(__CUDA_ARCH__)
  int32_t d;
  asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
#else
  for (int i = 0; i < 4; ++i) {
    c += static_cast<int32_t>((a >> (8 * i)) & 255u) * static_cast<int32_t>(static_cast<int8_t>((b >> (8 * i)) & 255u));
  }
  return c;
#endif
}

// Words of a tile of one weight row as loaded (int4: the chunk's 4 words; int8: the tile's 8 words).
template <int BITS>
struct TileWords {
  static constexpr int kWords = BITS == 4 ? 4 : 8;
};

// The tile's 32 weight codes as 8 words of 4 bytes in column order (word v: columns 4v .. 4v + 3),
// matching the x tile's words. int4: chunk word w's low nibbles are columns 4w .. 4w + 3, its high
// nibbles 16 + 4w .. 16 + 4w + 3 (three operations per 8 codes); int8: the words as loaded.
template <int BITS>
ELI_WQ_HD void tile_unpack(const uint32_t* w, uint32_t (&out)[8]) {
  if (BITS == 4) {
    ELI_WQ_UNROLL
    for (int i = 0; i < 4; ++i) {
      out[i] = w[i] & 0x0F0F0F0Fu;
      out[4 + i] = (w[i] >> 4) & 0x0F0F0F0Fu;
    }
  } else {
    ELI_WQ_UNROLL
    for (int i = 0; i < 8; ++i) out[i] = w[i];
  }
}

// Exact integer dot product of an unpacked weight tile and an x tile (8 words of int8 codes each).
ELI_WQ_HD int32_t tile_dot(const uint32_t (&w)[8], const uint32_t (&x)[8]) {
  int32_t d = 0;
  ELI_WQ_UNROLL
  for (int i = 0; i < 8; ++i) d = dp4a_us(w[i], x[i], d);
  return d;
}

// acc + (s * d) * (dot - z * sumq) for one (weight row, tile, x row).
ELI_WQ_HD float fma32(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return fmaf(a, b, c);
#else
  return std::fma(a, b, c);  // fused on the host too: the emulation matches the device bit for bit
#endif
}
ELI_WQ_HD float tile_fma(float acc, float s, float z, float d, float sumq, int32_t dot) {
  return fma32(s * d, fma32(-z, sumq, static_cast<float>(dot)), acc);
}

// Work split: a group of kw warps (kw = 1, or all 4 warps of the CTA) owns kGemvRows weight rows
// (half gate, half up when gated); thread j = 32 * (warp % kw) + lane of the group takes the tiles
// j, j + 32 kw, ... of them, gemv_unroll(bits) tiles per loop trip (all of a trip's weight loads are
// issued before the first is used: 16 16-byte loads per thread in flight). Each warp sums its lanes
// by the xor butterfly; with kw = 4 the CTA then adds the 4 warps' sums in warp order (shared
// memory). kw = 4 is for matrices too short to give every SM a CTA with kw = 1 (k/v projections,
// TP shards): it spreads one row group over 4 warps, 4x the CTAs.
constexpr int kGemvThreads = 128;
constexpr int kGemvRows = 4;
ELI_WQ_HD int gemv_unroll(int bits) { return bits == 4 ? 4 : 2; }
// 0: pick kw by the shape (gemv_k_warps); 1 or 4: forced (tests, the bench).
inline int& gemv_k_warps_setting() {
  static int kw = 0;
  return kw;
}
ELI_WQ_HD int gemv_k_warps(int64_t n_out, bool gated, int sm_count, int setting) {
  if (setting == 1 || setting == 4) return setting;
  const int64_t ro = gated ? kGemvRows / 2 : kGemvRows;
  const int64_t ctas = ((n_out + ro - 1) / ro + 3) / 4;  // with kw = 1
  return ctas < sm_count ? 4 : 1;
}
// The weight row a warp loads as its r-th row (clamped into range; dropped at the store).
ELI_WQ_HD int64_t gemv_warp_row(int64_t n, bool gated, int64_t o0, int r) {
  if (!gated) return o0 + r < n - 1 ? o0 + r : n - 1;
  const int64_t half = n / 2, h = kGemvRows / 2;
  const int64_t rr = r < h ? o0 + r : o0 + r - h;
  return (r < h ? 0 : half) + (rr < half - 1 ? rr : half - 1);
}

}  // namespace wq_cuda

#if !defined(ELI_WQ_NO_KERNEL_DECLS)
struct ExecContext;
// Registry entries (Op::kGemv / kGemm, cuda, kInt4Grouped / kInt8Grouped, DType::kU8). args:
// GemvArgs / GemmArgs with w -> WqMatrix (device pointers).
void wq_w4a16_gemv_cuda(const void* args, const ExecContext& ctx);
void wq_w8a16_gemv_cuda(const void* args, const ExecContext& ctx);
void wq_w4a16_gemm_cuda(const void* args, const ExecContext& ctx);
void wq_w8a16_gemm_cuda(const void* args, const ExecContext& ctx);
#endif

}  // namespace eli
