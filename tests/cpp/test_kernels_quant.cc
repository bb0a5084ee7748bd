// tests/cpp/test_kernels_quant.cc: the GGUF block types on the CPU.
//   QuantDequant: the reference dequantization of all 12 types against gguf-py's numpy
//     dequantizers (tests/data/quant/, made by scripts/make_quant_references.py), bit for bit.
//   QuantEmbedding: row lookups of a block table.
//   QuantMatmul: every usable CPU kGemv / kGemm entry of WeightFormat::kGgufBlocks (generic, AVX2)
//     against the reference (dequantize, then the f32 product in double) on odd shapes, with and
//     without the RMSNorm prologue, bias, gated and accumulating epilogues.
//   QuantTiles: the AVX2 rows form (decode) and register tiles (1 x 4 and 2 x 4 weight rows x
//     activation rows) give the one-row dot product's bits for every pair, on odd block counts and padded weight strides;
//     the AVX2 activation quantizer writes the generic one's bytes; the grouped prefill GEMM of
//     the 32-element types (decoded weight tiles x groups of four activation rows) gives them too.
// Tolerance (the activation-quantization error, a bound not an estimate): x is quantized per
// activation block b (32 values, or 256 for the K types) with step d_b = amax_b / 127, so each
// value moves by at most d_b / 2 and an output sum_j w_j x_j by at most
//   E = sum_b (d_b / 2) * sum_{j in b} |w_j|,
// plus float rounding (1e-5 of sum_j |w_j x_j|). A gated output act(g) * u adds the propagated
// bound 1.2 E_g (|u| + E_u) + (|act(g)| + 1.2 E_g) E_u (|act'| <= 1.2 for silu and gelu_tanh).
// Generic and AVX2 quantize x identically and sum exact integers, so they must agree to float
// rounding (1e-5 relative of sum |w x|).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "eli/error.h"
#include "kernel_test_util.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/cpu/quant_gemm.h"
#include "kernels/ref/activation.h"
#include "kernels/ref/dequant_ref.h"
#include "kernels/registry.h"
#include "runtime/core/float_convert.h"
#include "runtime/core/thread_pool.h"

namespace eli {
namespace {

const std::string kQuantDir = std::string(ELI_TEST_DATA_DIR) + "/quant/";

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path << " missing (run scripts/make_quant_references.py)";
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

TEST(QuantDequant, AllTwelveTypesMatchGgufPyBitForBit) {
  ThreadPool pool(2);
  for (DType dt : kGgufBlockTypes) {
    const DTypeInfo& info = dtype_info(dt);
    SCOPED_TRACE(info.name);
    const std::vector<uint8_t> blocks = read_file(kQuantDir + info.name + ".blocks");
    const std::vector<uint8_t> raw_ref = read_file(kQuantDir + info.name + ".f32");
    ASSERT_EQ(raw_ref.size() % 4, 0u);
    const int64_t n = static_cast<int64_t>(raw_ref.size() / 4);
    ASSERT_GT(n, 0);
    ASSERT_EQ(static_cast<int64_t>(blocks.size()), n / info.block_elems * info.block_bytes);
    std::vector<float> ref(static_cast<size_t>(n)), got(static_cast<size_t>(n), -1.0f);
    std::memcpy(ref.data(), raw_ref.data(), raw_ref.size());
    dequant_row_ref(dt, blocks.data(), got.data(), n);
    int bad = 0;
    for (int64_t i = 0; i < n && bad < 5; ++i) {
      if (f32_to_bits(got[i]) != f32_to_bits(ref[i])) {
        ++bad;
        ADD_FAILURE() << info.name << "[" << i << "]: got " << got[i] << ", gguf-py " << ref[i];
      }
    }
    // The registry's kDequant kernel (rows on a pool) gives the same values.
    const int64_t cols = info.block_elems;
    std::vector<float> rows(static_cast<size_t>(n), -1.0f);
    DequantArgs args{rows.data(), blocks.data(), n / cols, cols};
    ExecContext ctx;
    ctx.pool = &pool;
    get_kernel(Op::kDequant, DeviceKind::kCPU, WeightFormat::kGgufBlocks, dt).fn(&args, ctx);
    EXPECT_EQ(0, std::memcmp(rows.data(), got.data(), got.size() * sizeof(float)));
  }
}

// ---- matmuls ---------------------------------------------------------------------------------

// Byte offsets of the fp16 fields in one block (everything else is random bytes).
std::vector<int> fp16_fields(DType dt) {
  switch (dt) {
    case DType::kQ4_1: case DType::kQ5_1: case DType::kQ4_K: case DType::kQ5_K: return {0, 2};
    case DType::kQ2_K: return {80, 82};
    case DType::kQ3_K: return {108};
    case DType::kQ6_K: return {208};
    default: return {0};
  }
}

std::vector<uint8_t> rand_blocks(std::mt19937& rng, DType dt, int64_t n, int64_t k) {
  const DTypeInfo& info = dtype_info(dt);
  const int64_t n_blocks = n * k / info.block_elems;
  std::vector<uint8_t> raw(static_cast<size_t>(n_blocks * info.block_bytes));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  for (uint8_t& b : raw) b = static_cast<uint8_t>(byte(rng));
  for (int64_t i = 0; i < n_blocks; ++i) {
    for (int off : fp16_fields(dt)) {
      const uint16_t h = f32_to_f16(scale(rng));
      raw[static_cast<size_t>(i * info.block_bytes + off)] = static_cast<uint8_t>(h & 0xff);
      raw[static_cast<size_t>(i * info.block_bytes + off + 1)] = static_cast<uint8_t>(h >> 8);
    }
  }
  return raw;
}

struct Case {
  int64_t m, n, k;
  bool bias, norm, accumulate;
  GatedAct gated;
};

// Per output: the activation-quantization bound E (see the header) and sum |w x|.
struct Bounds {
  std::vector<double> e, mag;
};

Bounds bounds_of(DType dt, const std::vector<float>& wf, const std::vector<double>& xn, int64_t m, int64_t n, int64_t k) {
  const int64_t blk = quant_uses_q8k(dt) ? 256 : 32;
  Bounds b{std::vector<double>(static_cast<size_t>(m * n)), std::vector<double>(static_cast<size_t>(m * n))};
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t c = 0; c < n; ++c) {
      double e = 0.0, mag = 0.0;
      for (int64_t b0 = 0; b0 < k; b0 += blk) {
        double amax = 0.0, wsum = 0.0;
        for (int64_t j = b0; j < b0 + blk; ++j) {
          amax = std::fmax(amax, std::fabs(xn[i * k + j]));
          wsum += std::fabs(wf[c * k + j]);
          mag += std::fabs(wf[c * k + j] * xn[i * k + j]);
        }
        e += amax / 127.0 / 2.0 * wsum;
      }
      b.e[i * n + c] = e + 1e-5 * mag;
      b.mag[i * n + c] = mag;
    }
  }
  return b;
}

// Runs entry `e` (kGemv or kGemm) on the case; x, w, bias, norm given; out starts at `init`.
std::vector<float> run_entry(const KernelEntry& e, const Case& c, const std::vector<float>& x,
                             const std::vector<uint8_t>& w, const std::vector<float>& bias,
                             const std::vector<float>& norm, const std::vector<float>& init, ThreadPool* pool) {
  const int64_t n_out = c.gated != GatedAct::kNone ? c.n / 2 : c.n;
  std::vector<float> out = init;
  std::vector<uint8_t> ws(static_cast<size_t>(c.m * (c.k / 32) * kQuantActBytesPer32) + 256);
  void* aligned = ws.data() + (256 - reinterpret_cast<uintptr_t>(ws.data()) % 256) % 256;
  ExecContext ctx;
  ctx.pool = pool;
  if (e.op == Op::kGemv) {
    GemvArgs a{out.data(), x.data(), w.data(), c.bias ? bias.data() : nullptr, c.norm ? norm.data() : nullptr,
               c.m, c.n, c.k, n_out + 3, c.k + 5};
    a.norm_eps = 1e-5f;
    a.gated = c.gated;
    a.accumulate = c.accumulate;
    a.workspace = aligned;
    a.workspace_bytes = static_cast<size_t>(c.m * (c.k / 32) * kQuantActBytesPer32);
    e.fn(&a, ctx);
  } else {
    GemmArgs a{out.data(), x.data(), w.data(), c.bias ? bias.data() : nullptr, c.m, c.n, c.k, n_out + 3, c.k + 5};
    a.x_dtype = DType::kF32;
    a.out_dtype = DType::kF32;
    a.accumulate = c.accumulate;
    a.workspace = aligned;
    a.workspace_bytes = static_cast<size_t>(c.m * (c.k / 32) * kQuantActBytesPer32);
    e.fn(&a, ctx);
  }
  return out;
}

void check_case(const KernelEntry& e, const Case& c, std::mt19937& rng) {
  const std::string what = ktest::entry_name(e) + " m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
                           " k=" + std::to_string(c.k) + " bias=" + std::to_string(c.bias) + " norm=" +
                           std::to_string(c.norm) + " acc=" + std::to_string(c.accumulate) + " gated=" +
                           gated_act_name(c.gated);
  SCOPED_TRACE(what);
  const DType dt = e.dtype;
  const int64_t xs = c.k + 5, n_out = c.gated != GatedAct::kNone ? c.n / 2 : c.n, os = n_out + 3;
  const std::vector<float> x = ktest::rand_vec(rng, static_cast<size_t>(c.m * xs), -2.0f, 2.0f);
  const std::vector<uint8_t> w = rand_blocks(rng, dt, c.n, c.k);
  const std::vector<float> bias = ktest::rand_vec(rng, static_cast<size_t>(c.n));
  const std::vector<float> norm = ktest::rand_vec(rng, static_cast<size_t>(c.k), 0.5f, 1.5f);
  const std::vector<float> init = ktest::rand_vec(rng, static_cast<size_t>(c.m * os));
  // The products' inputs as the kernel sees them (normalised rows) and the weight as f32.
  std::vector<float> wf(static_cast<size_t>(c.n * c.k));
  const int64_t row_bytes = c.k / dtype_info(dt).block_elems * dtype_info(dt).block_bytes;
  for (int64_t r = 0; r < c.n; ++r) dequant_row_ref(dt, w.data() + r * row_bytes, wf.data() + r * c.k, c.k);
  std::vector<double> xn(static_cast<size_t>(c.m * c.k));
  for (int64_t i = 0; i < c.m; ++i) {
    double ss = 0.0;
    for (int64_t j = 0; j < c.k; ++j) ss += static_cast<double>(x[i * xs + j]) * x[i * xs + j];
    const double inv = c.norm ? 1.0 / std::sqrt(ss / static_cast<double>(c.k) + 1e-5) : 1.0;
    for (int64_t j = 0; j < c.k; ++j) xn[i * c.k + j] = x[i * xs + j] * inv * (c.norm ? norm[j] : 1.0);
  }
  const Bounds bd = bounds_of(dt, wf, xn, c.m, c.n, c.k);

  const std::vector<float> ref = run_entry(ktest::ref_of(e), c, x, w, bias, norm, init, nullptr);
  for (ThreadPool* pool : ktest::pools_for(e)) {
    const std::vector<float> got = run_entry(e, c, x, w, bias, norm, init, pool);
    int bad = 0;
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t o = 0; o < os; ++o) {
        const size_t idx = static_cast<size_t>(i * os + o);
        if (o >= n_out) {  // the row stride's padding is never written
          EXPECT_EQ(got[idx], init[idx]);
          continue;
        }
        double tol;
        if (c.gated != GatedAct::kNone) {
          const double eg = bd.e[i * c.n + o], eu = bd.e[i * c.n + o + n_out];
          double g = c.bias ? bias[o] : 0.0, u = c.bias ? bias[o + n_out] : 0.0;
          for (int64_t j = 0; j < c.k; ++j) {
            g += static_cast<double>(wf[o * c.k + j]) * xn[i * c.k + j];
            u += static_cast<double>(wf[(o + n_out) * c.k + j]) * xn[i * c.k + j];
          }
          tol = 1.2 * eg * (std::fabs(u) + eu) + (std::fabs(gated_act_value(c.gated, g)) + 1.2 * eg) * eu;
        } else {
          tol = bd.e[i * c.n + o];
        }
        tol += 1e-5 * (std::fabs(ref[idx]) + 1.0);
        const double err = std::fabs(static_cast<double>(got[idx]) - ref[idx]);
        if (!(err <= tol) && bad++ < 5) {
          ADD_FAILURE() << "out[" << i << "][" << o << "]: got " << got[idx] << ", ref " << ref[idx] << ", error " << err
                        << " > bound " << tol << (pool ? " (pool)" : "");
        }
      }
    }
  }
}

std::vector<const KernelEntry*> quant_candidates(Op op) { return ktest::cpu_candidates(op, WeightFormat::kGgufBlocks); }

TEST(QuantMatmul, EveryTypeHasCpuKernels) {
  for (DType dt : kGgufBlockTypes) {
    for (Op op : {Op::kGemv, Op::kGemm}) {
      const KernelEntry* e = find_kernel(op, DeviceKind::kCPU, WeightFormat::kGgufBlocks, dt);
      ASSERT_NE(e, nullptr) << op_name(op) << " " << dtype_name(dt);
      EXPECT_NE(std::string(e->variant), "ref") << op_name(op) << " " << dtype_name(dt);
    }
  }
}

TEST(QuantMatmul, GemvMatchesReferenceOnOddShapes) {
  std::mt19937 rng(14);
  const auto cands = quant_candidates(Op::kGemv);
  ASSERT_GE(cands.size(), 12u);
  int i = 0;
  for (const KernelEntry* e : cands) {
    const int64_t blk = dtype_info(e->dtype).block_elems;
    // k = 256 * odd for every type; 32 * odd too for the 32-element types.
    check_case(*e, {1, 7, 768, false, false, false, GatedAct::kNone}, rng);
    check_case(*e, {3, 33, 256, true, true, true, GatedAct::kNone}, rng);
    check_case(*e, {5, 10, 256, true, true, false, i % 2 ? GatedAct::kSilu : GatedAct::kGeluTanh}, rng);
    if (blk == 32) check_case(*e, {2, 9, 96, true, false, true, GatedAct::kNone}, rng);
    for (int64_t m : {2, 4, 8, 17}) check_case(*e, {m, 3, 256, m % 2 == 0, m > 4, m == 8, GatedAct::kNone}, rng);
    ++i;
  }
}

TEST(QuantMatmul, GemmMatchesReferenceOnOddShapes) {
  std::mt19937 rng(15);
  const auto cands = quant_candidates(Op::kGemm);
  ASSERT_GE(cands.size(), 12u);
  for (const KernelEntry* e : cands) {
    for (int64_t m : {1, 6, 17, 40}) check_case(*e, {m, 5, 256, m % 2 == 1, false, m == 6, GatedAct::kNone}, rng);
    check_case(*e, {9, 35, 768, true, false, false, GatedAct::kNone}, rng);
  }
}

// The grouped prefill route (m >= 8 on AVX2, 32-element types): whole groups of four rows plus 1-3
// rows after them, column counts that leave partial column tiles (24 wide) and odd register tiles,
// and more blocks than one scale chunk (32), against the reference; bias and accumulate on and off.
TEST(QuantMatmul, GemmGroupedRouteMatchesReference) {
  std::mt19937 rng(19);
  for (const KernelEntry* e : quant_candidates(Op::kGemm)) {
    if (dtype_info(e->dtype).block_elems != 32) continue;
    for (int64_t m : {8, 9, 10, 11}) check_case(*e, {m, 53, 32 * 35, m % 2 == 0, false, m == 9, GatedAct::kNone}, rng);
    check_case(*e, {12, 1, 32, true, false, false, GatedAct::kNone}, rng);
    check_case(*e, {20, 24, 64, false, false, true, GatedAct::kNone}, rng);
  }
}

// Every m from 1 to 17 through the GEMV of one type per activation format.
TEST(QuantMatmul, GemvEveryRowCount) {
  std::mt19937 rng(16);
  for (const KernelEntry* e : quant_candidates(Op::kGemv)) {
    if (e->dtype != DType::kQ4_1 && e->dtype != DType::kQ4_K) continue;
    for (int64_t m = 1; m <= 17; ++m) check_case(*e, {m, 3, 256, true, m % 3 == 0, m % 2 == 0, GatedAct::kNone}, rng);
  }
}

// Generic and AVX2 see the same quantized x and sum exact integers: they agree to float rounding.
TEST(QuantMatmul, IsaVariantsAgreeToRounding) {
  std::mt19937 rng(17);
  for (DType dt : kGgufBlockTypes) {
    const KernelEntry* gen = find_kernel(Op::kGemv, DeviceKind::kCPU, WeightFormat::kGgufBlocks, dt, "generic");
    ASSERT_NE(gen, nullptr);
    for (const KernelEntry* e : quant_candidates(Op::kGemv)) {
      if (e->dtype != dt || e == gen) continue;
      const Case c{3, 11, 1280, true, true, false, GatedAct::kNone};
      const std::vector<float> x = ktest::rand_vec(rng, static_cast<size_t>(c.m * (c.k + 5)), -2.0f, 2.0f);
      const std::vector<uint8_t> w = rand_blocks(rng, dt, c.n, c.k);
      const std::vector<float> bias = ktest::rand_vec(rng, static_cast<size_t>(c.n));
      const std::vector<float> norm = ktest::rand_vec(rng, static_cast<size_t>(c.k), 0.5f, 1.5f);
      const std::vector<float> init(static_cast<size_t>(c.m * (c.n + 3)), 0.0f);
      const auto a = run_entry(*gen, c, x, w, bias, norm, init, nullptr);
      const auto b = run_entry(*e, c, x, w, bias, norm, init, nullptr);
      ktest::expect_close(b, a, 2e-5, ktest::entry_name(*e) + " vs generic", 1.0);
    }
  }
}

// Activations already on the 8-bit grid (per 256 values one step d, integer multiples in
// [-127, 127] with a +-127 in every 32) quantize exactly, so the integer dot products must give the
// reference to float rounding: a strict check of every layout, type and variant.
TEST(QuantMatmul, ExactForActivationsOnTheGrid) {
  std::mt19937 rng(18);
  std::uniform_int_distribution<int> q(-127, 127);
  std::uniform_real_distribution<float> step(0.001f, 0.02f);
  for (Op op : {Op::kGemv, Op::kGemm}) {
    for (const KernelEntry* e : quant_candidates(op)) {
      const Case c{4, 13, 768, true, false, false, GatedAct::kNone};
      const int64_t xs = c.k + 5;
      std::vector<float> x(static_cast<size_t>(c.m * xs), 0.0f);
      for (int64_t i = 0; i < c.m; ++i) {
        for (int64_t b = 0; b < c.k; b += 256) {
          const float d = step(rng);
          for (int64_t j = b; j < b + 256; ++j) x[i * xs + j] = d * static_cast<float>(j % 32 == 7 ? (j % 64 < 32 ? 127 : -127) : q(rng));
        }
      }
      const std::vector<uint8_t> w = rand_blocks(rng, e->dtype, c.n, c.k);
      const std::vector<float> bias = ktest::rand_vec(rng, static_cast<size_t>(c.n));
      const std::vector<float> init(static_cast<size_t>(c.m * (c.n + 3)), 0.0f);
      const auto ref = run_entry(ktest::ref_of(*e), c, x, w, bias, {}, init, nullptr);
      const auto got = run_entry(*e, c, x, w, bias, {}, init, nullptr);
      ktest::expect_close(got, ref, 2e-5, ktest::entry_name(*e) + " on-grid x", 1.0);
    }
  }
}

// A row's outputs do not depend on how many rows are computed with it (the four-row prefill dot
// products give the one-row results bit for bit): decode, chunked and whole prefill agree.
TEST(QuantMatmul, RowsAreIndependentOfM) {
  std::mt19937 rng(20);
  for (Op op : {Op::kGemv, Op::kGemm}) {
    for (const KernelEntry* e : quant_candidates(op)) {
      SCOPED_TRACE(ktest::entry_name(*e));
      const Case c{13, 19, 512, true, op == Op::kGemv, false, GatedAct::kNone};
      const std::vector<float> x = ktest::rand_vec(rng, static_cast<size_t>(c.m * (c.k + 5)), -2.0f, 2.0f);
      const std::vector<uint8_t> w = rand_blocks(rng, e->dtype, c.n, c.k);
      const std::vector<float> bias = ktest::rand_vec(rng, static_cast<size_t>(c.n));
      const std::vector<float> norm = ktest::rand_vec(rng, static_cast<size_t>(c.k), 0.5f, 1.5f);
      const std::vector<float> init = ktest::rand_vec(rng, static_cast<size_t>(c.m * (c.n + 3)));
      const std::vector<float> all = run_entry(*e, c, x, w, bias, norm, init, nullptr);
      for (int64_t r = 0; r < c.m; ++r) {
        Case one = c;
        one.m = 1;
        const std::vector<float> xr(x.begin() + r * (c.k + 5), x.begin() + (r + 1) * (c.k + 5));
        const std::vector<float> ir(init.begin() + r * (c.n + 3), init.begin() + (r + 1) * (c.n + 3));
        const std::vector<float> got = run_entry(*e, one, xr, w, bias, norm, ir, nullptr);
        ASSERT_EQ(0, std::memcmp(got.data(), all.data() + r * (c.n + 3), got.size() * sizeof(float))) << "row " << r;
      }
    }
  }
}

#ifdef ELI_X86
// The prefill tiles compute each (weight row, activation row) pair with the one-row dot
// product's operations: every output must equal it bit for bit (and so the reference within the
// bounds the matmul tests check), on odd block counts, rows of unequal scale and a weight stride
// with padding between the two weight rows.
TEST(QuantTiles, RowsOneByFourAndTwoByFourGiveTheOneRowBits) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  std::mt19937 rng(21);
  int tiled = 0, four = 0;
  for (DType dt : kGgufBlockTypes) {
    const QuantVecDotFn dot = quant_vec_dot_avx2(dt);
    const QuantVecDot4Fn dot4 = quant_vec_dot4_avx2(dt);
    const QuantVecDot2x4Fn dot2x4 = quant_vec_dot2x4_avx2(dt);
    ASSERT_NE(dot, nullptr) << dtype_name(dt);
    if (dot4 != nullptr) ++four;
    if (dot2x4 != nullptr) {
      ++tiled;
      EXPECT_NE(dot4, nullptr) << dtype_name(dt) << ": a 2 x 4 tile without the 1 x 4 form";
    }
    const DTypeInfo& info = dtype_info(dt);
    for (int64_t blocks : {1, 3, 7}) {
      const int64_t k = blocks * (info.block_elems == 32 ? 9 : 1) * info.block_elems;
      SCOPED_TRACE(std::string(dtype_name(dt)) + " k=" + std::to_string(k));
      const int64_t row = k / info.block_elems * info.block_bytes, stride = row + 3 * info.block_bytes + 5;
      const std::vector<uint8_t> wr = rand_blocks(rng, dt, 3, k);  // rows 0 and 1, and the padding
      std::vector<uint8_t> w(static_cast<size_t>(stride + row));
      std::memcpy(w.data(), wr.data(), static_cast<size_t>(row));
      std::memcpy(w.data() + row, wr.data() + 2 * row, static_cast<size_t>(stride - row));  // garbage between
      std::memcpy(w.data() + stride, wr.data() + row, static_cast<size_t>(row));
      std::vector<std::vector<uint8_t>> xq(4, std::vector<uint8_t>(quant_act_row_bytes(dt, k) + 8));
      const void* xr[4];
      for (int r = 0; r < 4; ++r) {
        const float amp = r == 2 ? 1e-3f : static_cast<float>(r + 1);  // unequal activation scales
        const std::vector<float> x = ktest::rand_vec(rng, static_cast<size_t>(k), -amp, amp);
        quantize_act_row(dt, x.data(), nullptr, 1.0f, 0.0f, k, xq[r].data());
        xr[r] = xq[r].data();
      }
      float one[2][4];
      for (int i = 0; i < 2; ++i) {
        for (int r = 0; r < 4; ++r) one[i][r] = dot(k, w.data() + i * stride, xr[r]);
      }
      const QuantVecDotRowsFn rows = quant_vec_dot_rows_avx2(dt);
      ASSERT_NE(rows, nullptr) << dtype_name(dt);
      for (int r = 0; r < 4; ++r) {
        float y[2];
        rows(k, w.data(), stride, 2, xr[r], y);
        for (int i = 0; i < 2; ++i) {
          EXPECT_EQ(0, std::memcmp(&y[i], &one[i][r], sizeof(float))) << "rows " << i << " x " << r << ": " << y[i] << " vs " << one[i][r];
        }
      }
      if (dot4 != nullptr) {
        for (int i = 0; i < 2; ++i) {
          float y[4];
          dot4(k, w.data() + i * stride, xr, y);
          for (int r = 0; r < 4; ++r) {
            EXPECT_EQ(0, std::memcmp(&y[r], &one[i][r], sizeof(float))) << "1x4 row " << i << " x " << r << ": " << y[r] << " vs " << one[i][r];
          }
        }
      }
      if (dot2x4 != nullptr) {
        float y[8];
        dot2x4(k, w.data(), stride, xr, y);
        for (int i = 0; i < 2; ++i) {
          for (int r = 0; r < 4; ++r) {
            EXPECT_EQ(0, std::memcmp(&y[i * 4 + r], &one[i][r], sizeof(float)))
                << "2x4 row " << i << " x " << r << ": " << y[i * 4 + r] << " vs " << one[i][r];
          }
        }
      }
    }
  }
  EXPECT_GE(tiled, 6) << "2 x 4 tiles: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL";
  EXPECT_GE(four, 8) << "1 x 4 tiles: those and Q4_K, Q6_K";
}

// The grouped GEMM (quant_gemm.h) gives the one-row dot product's bits for every (weight row,
// activation row) pair: 1 to 17 weight rows decoded into panels (a part-filled panel, one and two
// panels, the second zeroed as the matmul does for a last tile), 1 to 4 activation rows per call,
// 1, 9 and 35 blocks, weight rows with padding between them, activation rows of unequal scale;
// the activation rows are widened with widen_q8x32_row.
TEST(QuantTiles, GroupedGemmGivesTheOneRowBits) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  std::mt19937 rng(23);
  int types = 0;
  for (DType dt : kGgufBlockTypes) {
    const QuantDecodePanelsFn decode = quant_decode_panels_avx2(dt);
    const QuantGemmPanelsFn gemm = quant_gemm_panels_avx2(dt);
    const DTypeInfo& info = dtype_info(dt);
    ASSERT_EQ(decode == nullptr, gemm == nullptr) << dtype_name(dt);
    if (gemm == nullptr) {
      EXPECT_NE(info.block_elems, 32) << dtype_name(dt) << ": a 32-element type without the grouped GEMM";
      continue;
    }
    ++types;
    const QuantVecDotFn dot = quant_vec_dot_avx2(dt);
    for (int64_t nb : {1, 9, 35}) {
      const int64_t k = 32 * nb, row = nb * info.block_bytes, stride = row + info.block_bytes + 3;
      for (int64_t rows : {1, 5, 8, 13, 16}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + " nb=" + std::to_string(nb) + " rows=" + std::to_string(rows));
        const std::vector<uint8_t> wr = rand_blocks(rng, dt, rows + 1, k);
        std::vector<uint8_t> w(static_cast<size_t>(stride * rows), 0xa5);
        for (int64_t r = 0; r < rows; ++r) {
          std::memcpy(w.data() + r * stride, wr.data() + r * row, static_cast<size_t>(row));
          std::memcpy(w.data() + r * stride + row, wr.data() + rows * row, static_cast<size_t>(stride - row));
        }
        std::vector<std::vector<BlockQ8x32>> xq(4, std::vector<BlockQ8x32>(static_cast<size_t>(nb)));
        std::vector<std::vector<BlockX16>> xw(4, std::vector<BlockX16>(static_cast<size_t>(nb)));
        for (int j = 0; j < 4; ++j) {
          const float amp = j == 1 ? 1e-3f : static_cast<float>(j + 1);
          const std::vector<float> x = ktest::rand_vec(rng, static_cast<size_t>(k), -amp, amp);
          quantize_act_row(dt, x.data(), nullptr, 1.0f, 0.0f, k, xq[j].data());
          widen_q8x32_row(nb, xq[j].data(), xw[j].data());
        }
        std::vector<WPanel32> dec(static_cast<size_t>(2 * nb));
        decode(nb, w.data(), stride, rows, dec.data());
        if (rows <= kPanelRows) std::memset(static_cast<void*>(dec.data() + nb), 0, static_cast<size_t>(nb) * sizeof(WPanel32));
        for (int rx = 1; rx <= 4; ++rx) {
          const BlockX16* xr[4];
          for (int j = 0; j < 4; ++j) xr[j] = xw[static_cast<size_t>(j < rx ? j : 0)].data();
          std::vector<float> y(static_cast<size_t>(4 * 16), 0.0f);
          gemm(nb, dec.data(), xr, rx, y.data());
          for (int64_t r = 0; r < rows; ++r) {
            for (int j = 0; j < rx; ++j) {
              const float one = dot(k, w.data() + r * stride, xq[j].data());
              EXPECT_EQ(0, std::memcmp(&y[static_cast<size_t>(j * 16 + r)], &one, sizeof(float)))
                  << "rx " << rx << " row " << r << " x " << j << ": " << y[static_cast<size_t>(j * 16 + r)] << " vs " << one;
            }
          }
          for (int j = 0; j < rx; ++j) {  // rows past the matrix (zero panels) give exact zeros
            for (int64_t r = rows; r < 16; ++r) EXPECT_EQ(y[static_cast<size_t>(j * 16 + r)], 0.0f);
          }
        }
      }
    }
  }
  EXPECT_EQ(types, 6) << "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL";
}

// Decode and prefill agree bit for bit: a row through kGemv alone (m = 1) and the same row inside
// an m = 40 kGemm batch (the grouped route on AVX2, 10 groups of four) give identical outputs,
// for every type and both ISA variants, with a bias, on odd n and k.
TEST(QuantMatmul, GemvRowEqualsGemmBatchRowBitForBit) {
  std::mt19937 rng(29);
  int checked = 0;
  for (const KernelEntry* gemm : quant_candidates(Op::kGemm)) {
    if (std::string(gemm->variant) == "ref") continue;  // the oracle itself
    const KernelEntry* gemv = nullptr;
    for (const KernelEntry* e : quant_candidates(Op::kGemv)) {
      if (e->dtype == gemm->dtype && std::string(e->variant) == gemm->variant) gemv = e;
    }
    ASSERT_NE(gemv, nullptr) << ktest::entry_name(*gemm) << ": no kGemv of the same variant";
    SCOPED_TRACE(ktest::entry_name(*gemm));
    const DTypeInfo& info = dtype_info(gemm->dtype);
    const int64_t k = info.block_elems == 32 ? 32 * 19 : 256 * 3;
    const Case batch{40, 37, k, true, false, false, GatedAct::kNone};
    const std::vector<float> x = ktest::rand_vec(rng, static_cast<size_t>(batch.m * (k + 5)), -2.0f, 2.0f);
    const std::vector<uint8_t> w = rand_blocks(rng, gemm->dtype, batch.n, k);
    const std::vector<float> bias = ktest::rand_vec(rng, static_cast<size_t>(batch.n));
    const std::vector<float> init(static_cast<size_t>(batch.m * (batch.n + 3)), 0.0f);
    const std::vector<float> all = run_entry(*gemm, batch, x, w, bias, {}, init, nullptr);
    for (int64_t r : {int64_t{0}, int64_t{17}, int64_t{39}}) {
      Case one = batch;
      one.m = 1;
      const std::vector<float> xr(x.begin() + r * (k + 5), x.begin() + (r + 1) * (k + 5));
      const std::vector<float> ir(init.begin() + r * (batch.n + 3), init.begin() + (r + 1) * (batch.n + 3));
      const std::vector<float> got = run_entry(*gemv, one, xr, w, bias, {}, ir, nullptr);
      ASSERT_EQ(0, std::memcmp(got.data(), all.data() + r * (batch.n + 3), got.size() * sizeof(float))) << "row " << r;
    }
    ++checked;
  }
  EXPECT_GE(checked, 12);
}

// The AVX2 activation quantizer writes the generic one's bytes (both formats, with and without the
// norm prologue): ties at .5 steps (rounded away from zero), zero blocks, a NaN (ignored by amax,
// quantized to 0), an infinity (an infinite scale, every quant 0) and values near the block max.
TEST(QuantTiles, Avx2ActivationQuantizationIsTheGenericBytes) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  std::mt19937 rng(22);
  const int64_t k = 768;
  std::vector<float> x = ktest::rand_vec(rng, static_cast<size_t>(k), -3.0f, 3.0f);
  for (int j = 0; j < 32; ++j) x[static_cast<size_t>(j)] = j == 5 ? 127.0f : 0.5f * static_cast<float>(j - 16);  // ties
  for (int j = 32; j < 64; ++j) x[static_cast<size_t>(j)] = 0.0f;
  x[70] = std::nanf("");
  x[300] = INFINITY;
  x[400] = -1e-30f;
  x[513] = 1e30f;
  const std::vector<float> norm = ktest::rand_vec(rng, static_cast<size_t>(k), 0.5f, 1.5f);
  for (DType dt : {DType::kQ8_0, DType::kQ4_K}) {
    for (bool with_norm : {false, true}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + (with_norm ? " norm" : ""));
      const size_t bytes = quant_act_row_bytes(dt, k);
      std::vector<uint8_t> a(bytes + 4, 0xcd), b(bytes + 4, 0xcd);
      const float* nw = with_norm ? norm.data() : nullptr;
      quantize_act_row(dt, x.data(), nw, 0.37f, 0.25f, k, a.data());
      quantize_act_row_avx2(dt, x.data(), nw, 0.37f, 0.25f, k, b.data());
      int diff = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        if (a[i] != b[i] && diff++ < 5) ADD_FAILURE() << "byte " << i << ": generic " << int(a[i]) << ", avx2 " << int(b[i]);
      }
    }
  }
  // The tie row is on the grid (d = 1): quants are the rounded-away values.
  std::vector<uint8_t> q(quant_act_row_bytes(DType::kQ8_0, k));
  quantize_act_row_avx2(DType::kQ8_0, x.data(), nullptr, 1.0f, 0.0f, k, q.data());
  const auto* blk = reinterpret_cast<const BlockQ8x32*>(q.data());
  EXPECT_EQ(blk[0].d, 1.0f);
  EXPECT_EQ(blk[0].qs[0], -8);
  EXPECT_EQ(blk[0].qs[1], -8);  // -7.5 -> -8
  EXPECT_EQ(blk[0].qs[17], 1);  // 0.5 -> 1
  EXPECT_EQ(blk[0].qs[19], 2);  // 1.5 -> 2
  EXPECT_EQ(blk[1].d, 0.0f);
}
#endif

// The block table's row lookup: the reference rows (times the scale), ids clamped into the table.
TEST(QuantEmbedding, RowsAreTheDequantizedRows) {
  std::mt19937 rng(19);
  for (DType dt : kGgufBlockTypes) {
    const KernelEntry* e = find_kernel(Op::kEmbedding, DeviceKind::kCPU, WeightFormat::kGgufBlocks, dt);
    ASSERT_NE(e, nullptr) << dtype_name(dt);
    const int64_t V = 5, H = 512, row_bytes = H / dtype_info(dt).block_elems * dtype_info(dt).block_bytes;
    const std::vector<uint8_t> table = rand_blocks(rng, dt, V, H);
    const std::vector<int32_t> ids = {3, 0, -2, 9, 4};
    std::vector<float> out(ids.size() * H, -1.0f), row(H);
    EmbeddingArgs a{out.data(), table.data(), ids.data(), static_cast<int64_t>(ids.size()), H, V, 0.5f};
    e->fn(&a, ExecContext{});
    for (size_t t = 0; t < ids.size(); ++t) {
      const int64_t id = std::min<int64_t>(std::max<int64_t>(ids[t], 0), V - 1);
      dequant_row_ref(dt, table.data() + id * row_bytes, row.data(), H);
      for (int64_t j = 0; j < H; ++j) ASSERT_EQ(out[t * H + j], row[j] * 0.5f) << dtype_name(dt) << " token " << t;
    }
  }
}

TEST(QuantMatmul, BadArgumentsAreTypedErrors) {
  for (const KernelEntry* e : quant_candidates(Op::kGemv)) {
    std::vector<float> x(512, 1.0f), out(8);
    std::vector<uint8_t> w(static_cast<size_t>(dtype_info(e->dtype).block_bytes * 8));
    std::vector<uint8_t> ws(4096);
    GemvArgs a{out.data(), x.data(), w.data(), nullptr, nullptr, 1, 1, 256, 1, 256};
    a.workspace = ws.data();
    a.workspace_bytes = 4;  // too small
    ktest::expect_error_kind(ErrorKind::kInvalidArgument, [&] { e->fn(&a, ExecContext{}); }, "small workspace");
    a.workspace_bytes = ws.size();
    a.k = 100;  // not a multiple of any block size
    ktest::expect_error_kind(ErrorKind::kInvalidArgument, [&] { e->fn(&a, ExecContext{}); }, "partial block");
  }
  for (const KernelEntry* e : quant_candidates(Op::kGemm)) {
    std::vector<float> x(256, 1.0f), out(1);
    std::vector<uint8_t> w(static_cast<size_t>(dtype_info(e->dtype).block_bytes * 8)), ws(4096);
    GemmArgs a{out.data(), x.data(), w.data(), nullptr, 1, 1, 256, 1, 256};
    a.workspace = ws.data();
    a.workspace_bytes = ws.size();
    ktest::expect_error_kind(ErrorKind::kUnsupported, [&] { e->fn(&a, ExecContext{}); }, "bf16 x");
  }
}

}  // namespace
}  // namespace eli
