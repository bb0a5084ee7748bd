// tests/cpp/test_kernels.cc: kernel registry tests and parity of every Matmul, RmsNorm, Rope,
// Swiglu and Embedding entry (f32, bf16 and f16 tables) against the reference on odd shapes and
// strided (padded) rows, with and without a thread pool. Attention/KvWrite parity and hand-checked
// references are in test_kernels_attention.cc; the f16 references' own checks in test_ref_f16.cc.
#include <gtest/gtest.h>

#include <set>
#include <tuple>

#include "eli/error.h"
#include "kernel_test_util.h"

namespace eli {
namespace {

using ktest::candidates;
using ktest::expect_close;
using ktest::kSentinel;
using ktest::rand_vec;

TEST(KernelRegistry, EntriesAreWellFormedAndUnique) {
  std::set<std::tuple<int, int, int, std::string>> keys;
  for (const KernelEntry& e : all_kernels()) {
    EXPECT_NE(e.fn, nullptr) << ktest::entry_name(e);
    EXPECT_TRUE(keys.insert({static_cast<int>(e.op), static_cast<int>(e.device), static_cast<int>(e.dtype),
                             e.variant}).second)
        << "duplicate " << ktest::entry_name(e);
    if (std::string(e.variant) == "ref") EXPECT_EQ(e.priority, 0) << ktest::entry_name(e);
  }
  // Every op except kDequant has an f32 CPU reference.
  for (Op op : {Op::kEmbedding, Op::kRmsNorm, Op::kMatmul, Op::kRope, Op::kSwiglu, Op::kKvWrite, Op::kAttention})
    EXPECT_NE(find_kernel(op, DeviceKind::kCPU, DType::kF32, "ref"), nullptr) << op_name(op);
  EXPECT_NE(find_kernel(Op::kMatmul, DeviceKind::kCPU, DType::kBF16, "ref"), nullptr);
  EXPECT_NE(find_kernel(Op::kDequant, DeviceKind::kCPU, DType::kQ4_K, "ref"), nullptr);
}

TEST(KernelRegistry, DefaultIsHighestPriorityUsable) {
  for (const KernelEntry& e : all_kernels()) {
    const KernelEntry* best = find_kernel(e.op, e.device, e.dtype);
    ASSERT_NE(best, nullptr) << ktest::entry_name(e);
    if (e.usable == nullptr || e.usable()) EXPECT_GE(best->priority, e.priority) << ktest::entry_name(e);
  }
  const KernelEntry* mm = find_kernel(Op::kMatmul, DeviceKind::kCPU, DType::kF32);
  ASSERT_NE(mm, nullptr);
  EXPECT_NE(std::string(mm->variant), "ref");  // an optimized CPU matmul always exists
}

TEST(KernelRegistry, MissingKernelThrowsUnsupported) {
  EXPECT_EQ(find_kernel(Op::kMatmul, DeviceKind::kCPU, DType::kI64), nullptr);
  EXPECT_EQ(find_kernel(Op::kMatmul, DeviceKind::kCPU, DType::kF32, "no_such_variant"), nullptr);
  try {
    get_kernel(Op::kMatmul, DeviceKind::kCPU, DType::kI64);
    FAIL() << "expected eli::Error";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::kUnsupported);
    const std::string msg = err.what();
    EXPECT_NE(msg.find("matmul"), std::string::npos) << msg;
    EXPECT_NE(msg.find("i64"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cpu"), std::string::npos) << msg;
  }
  EXPECT_STREQ(op_name(Op::kAttention), "attention");
  EXPECT_STREQ(op_name(Op::kCount), "unknown_op");
}

// ---- Matmul -------------------------------------------------------------------------------

struct MatmulCase {
  int64_t m, n, k;
  bool bias, accumulate;
};

void check_matmul(const KernelEntry& e, const MatmulCase& c, std::mt19937& rng) {
  const int64_t xs = c.k + 3, os = c.n + 2;  // padded rows
  std::vector<float> x = rand_vec(rng, static_cast<size_t>(c.m * xs));
  std::vector<float> wf = rand_vec(rng, static_cast<size_t>(c.n * c.k));
  std::vector<uint16_t> wh(wf.size());
  for (size_t i = 0; i < wf.size(); ++i) wh[i] = f32_to_bf16(wf[i]);
  std::vector<float> bias = rand_vec(rng, static_cast<size_t>(c.n));
  std::vector<float> out0 = rand_vec(rng, static_cast<size_t>(c.m * os));
  for (int64_t i = 0; i < c.m; ++i) out0[i * os + c.n] = out0[i * os + c.n + 1] = kSentinel;
  const bool bf16 = e.dtype == DType::kBF16;

  std::vector<float> ref = out0;
  MatmulArgs ra{ref.data(), x.data(), bf16 ? static_cast<const void*>(wh.data()) : wf.data(),
                c.bias ? bias.data() : nullptr, c.m, c.n, c.k, os, xs, c.accumulate};
  ktest::ref_of(e).fn(&ra, ExecContext{});

  for (ThreadPool* pool : ktest::pools_for(e)) {
    std::vector<float> got = out0;
    ktest::Stage st(e.device);
    MatmulArgs a = ra;
    a.out = st.inout(got);
    a.x = st.in(x);
    a.w = bf16 ? static_cast<const void*>(st.in(wh)) : st.in(wf);
    a.bias = c.bias ? st.in(bias) : nullptr;
    ExecContext ctx;
    ctx.pool = pool;
    e.fn(&a, ctx);
    st.finish();
    expect_close(got, ref, 1e-5,
                 ktest::entry_name(e) + " m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
                     " k=" + std::to_string(c.k) + " bias=" + std::to_string(c.bias) +
                     " acc=" + std::to_string(c.accumulate) + (pool ? " pool" : ""));
  }
}

TEST(KernelMatmul, MatchesReferenceOnOddShapes) {
  auto cands = candidates(Op::kMatmul);
  ASSERT_GE(cands.size(), 2u);  // at least the generic f32 and bf16 kernels
  std::mt19937 rng(1234);
  int i = 0;
  for (const KernelEntry* e : cands) {
    for (int64_t m : {1, 2, 3, 7, 9, 33, 130})
      for (int64_t n : {1, 5, 111, 769})
        for (int64_t k : {1, 13, 64, 300}) {
          ++i;
          check_matmul(*e, {m, n, k, i % 2 == 0, i % 3 == 0}, rng);
        }
  }
}

TEST(KernelMatmul, MatchesReferenceAcrossKChunks) {
  // K past the CPU GEMM's K chunk (512) and not a multiple of 8; M past its row block.
  std::mt19937 rng(99);
  for (const KernelEntry* e : candidates(Op::kMatmul)) {
    check_matmul(*e, {8, 70, 1100, true, false}, rng);
    check_matmul(*e, {200, 67, 1029, false, true}, rng);
  }
}

// ---- RmsNorm ------------------------------------------------------------------------------

TEST(KernelRmsNorm, MatchesReference) {
  auto cands = candidates(Op::kRmsNorm);
  ASSERT_FALSE(cands.empty());
  std::mt19937 rng(7);
  for (const KernelEntry* e : cands)
    for (int64_t rows : {1, 3, 17})
      for (int64_t h : {1, 7, 64, 300, 1025})
        for (int mode = 0; mode < 4; ++mode) {
          const bool use_res = mode & 1, in_place = mode & 2;
          const int64_t xs = h + 5, os = in_place ? xs : h + 1;
          std::vector<float> x = rand_vec(rng, static_cast<size_t>(rows * xs), -3, 3);
          std::vector<float> w = rand_vec(rng, static_cast<size_t>(h));
          std::vector<float> res0 = rand_vec(rng, static_cast<size_t>(rows * h));
          std::vector<float> out0(static_cast<size_t>(rows * os), kSentinel);
          const float offset = mode == 1 ? 1.0f : 0.0f;
          std::vector<float> ref_out = in_place ? x : out0, ref_x = x, ref_res = res0;
          RmsNormArgs ra{in_place ? ref_x.data() : ref_out.data(), use_res ? ref_res.data() : nullptr,
                         ref_x.data(), w.data(), rows, h, os, xs, 1e-6f, offset};
          ktest::ref_of(*e).fn(&ra, ExecContext{});
          if (in_place) ref_out = ref_x;
          for (ThreadPool* pool : ktest::pools_for(*e)) {
            std::vector<float> got_out = out0, got_x = x, got_res = res0;
            ktest::Stage st(e->device);
            RmsNormArgs a = ra;
            a.x = st.inout(got_x);
            a.out = in_place ? const_cast<float*>(a.x) : st.inout(got_out);
            a.residual = use_res ? st.inout(got_res) : nullptr;
            a.weight = st.in(w);
            ExecContext ctx;
            ctx.pool = pool;
            e->fn(&a, ctx);
            st.finish();
            if (in_place) got_out = got_x;
            const std::string what = ktest::entry_name(*e) + " rows=" + std::to_string(rows) +
                                     " h=" + std::to_string(h) + " mode=" + std::to_string(mode);
            expect_close(got_out, ref_out, 1e-5, what);
            expect_close(got_res, ref_res, 1e-6, what + " residual");
          }
        }
}

// ---- Rope ---------------------------------------------------------------------------------

TEST(KernelRope, MatchesReference) {
  auto cands = candidates(Op::kRope);
  ASSERT_FALSE(cands.empty());
  std::mt19937 rng(11);
  for (const KernelEntry* e : cands)
    for (int64_t t : {1, 5, 19})
      for (int64_t nh : {1, 3, 8})
        for (int64_t hd : {8, 12, 64, 128})
          for (int64_t rot : {hd, hd / 2}) {
            const int64_t rs = nh * hd + 4, half = rot / 2;
            std::vector<float> x0 = rand_vec(rng, static_cast<size_t>(t * rs), -2, 2);
            std::vector<int32_t> pos(t), table(t);
            for (int64_t i = 0; i < t; ++i) {
              pos[i] = static_cast<int32_t>(rng() % 5000);
              table[i] = static_cast<int32_t>(rng() % 2);
            }
            std::vector<float> inv(static_cast<size_t>(2 * half));
            for (int64_t i = 0; i < half; ++i) {
              inv[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / rot));
              inv[half + i] = inv[i] * 0.25f;
            }
            const bool tables = (t + nh) % 2 == 0;
            std::vector<float> ref = x0;
            RopeArgs ra{ref.data(), pos.data(), inv.data(), tables ? table.data() : nullptr, t, nh, hd, rot, rs,
                        tables ? 1.25f : 1.0f};
            ktest::ref_of(*e).fn(&ra, ExecContext{});
            for (ThreadPool* pool : ktest::pools_for(*e)) {
              std::vector<float> got = x0;
              ktest::Stage st(e->device);
              RopeArgs a = ra;
              a.x = st.inout(got);
              a.positions = st.in(pos);
              a.inv_freq = st.in(inv);
              a.table_of_token = tables ? st.in(table) : nullptr;
              ExecContext ctx;
              ctx.pool = pool;
              e->fn(&a, ctx);
              st.finish();
              expect_close(got, ref, 1e-5, ktest::entry_name(*e) + " t=" + std::to_string(t) + " nh=" +
                                               std::to_string(nh) + " hd=" + std::to_string(hd) +
                                               " rot=" + std::to_string(rot));
            }
          }
}

// ---- Swiglu -------------------------------------------------------------------------------

TEST(KernelSwiglu, MatchesReference) {
  auto cands = candidates(Op::kSwiglu);
  ASSERT_FALSE(cands.empty());
  std::mt19937 rng(5);
  for (const KernelEntry* e : cands)
    for (int64_t rows : {1, 4, 33})
      for (int64_t inter : {1, 7, 64, 300}) {
        const int64_t is = 2 * inter + 3, os = inter + 2;
        std::vector<float> in = rand_vec(rng, static_cast<size_t>(rows * is), -12, 12);
        in[0] = -100.0f;  // exp overflow side
        in[static_cast<size_t>(is - 1)] = 100.0f;
        std::vector<float> out0(static_cast<size_t>(rows * os), kSentinel);
        std::vector<float> ref = out0;
        SwigluArgs ra{ref.data(), in.data(), rows, inter, os, is};
        ktest::ref_of(*e).fn(&ra, ExecContext{});
        for (ThreadPool* pool : ktest::pools_for(*e)) {
          std::vector<float> got = out0;
          ktest::Stage st(e->device);
          SwigluArgs a = ra;
          a.out = st.inout(got);
          a.gate_up = st.in(in);
          ExecContext ctx;
          ctx.pool = pool;
          e->fn(&a, ctx);
          st.finish();
          expect_close(got, ref, 1e-5, ktest::entry_name(*e) + " rows=" + std::to_string(rows) +
                                           " inter=" + std::to_string(inter));
        }
      }
}

// ---- Embedding ----------------------------------------------------------------------------

TEST(KernelEmbedding, MatchesReferenceAndClampsIds) {
  auto cands = candidates(Op::kEmbedding);
  ASSERT_FALSE(cands.empty());
  std::mt19937 rng(3);
  const int64_t vocab = 50;
  for (const KernelEntry* e : cands)
    for (int64_t h : {1, 7, 64, 129}) {
      std::vector<float> tf = rand_vec(rng, static_cast<size_t>(vocab * h));
      // 16-bit tables (bf16 or f16: the entry's dtype) hold the rounded values of tf.
      const bool f16 = e->dtype == DType::kF16, is16 = e->dtype == DType::kBF16 || f16;
      std::vector<uint16_t> th(tf.size());
      for (size_t i = 0; i < tf.size(); ++i) th[i] = f16 ? f32_to_f16(tf[i]) : f32_to_bf16(tf[i]);
      std::vector<int32_t> ids = {0, 49, 7, -5, 53, 12, 12};
      const int64_t t = static_cast<int64_t>(ids.size());
      std::vector<float> ref(static_cast<size_t>(t * h), kSentinel);
      EmbeddingArgs ra{ref.data(), is16 ? static_cast<const void*>(th.data()) : tf.data(), ids.data(), t, h, vocab};
      ktest::ref_of(*e).fn(&ra, ExecContext{});
      // Clamping: id -5 reads row 0, id 53 reads row 49.
      for (int64_t j = 0; j < h; ++j) {
        ASSERT_EQ(ref[3 * h + j], ref[0 * h + j]);
        ASSERT_EQ(ref[4 * h + j], ref[1 * h + j]);
        const size_t i7 = static_cast<size_t>(7 * h + j);
        ASSERT_EQ(ref[2 * h + j], f16 ? f16_to_f32(th[i7]) : is16 ? bf16_to_f32(th[i7]) : tf[i7]);
      }
      for (ThreadPool* pool : ktest::pools_for(*e)) {
        std::vector<float> got(ref.size(), kSentinel);
        ktest::Stage st(e->device);
        EmbeddingArgs a = ra;
        a.out = st.inout(got);
        a.table = is16 ? static_cast<const void*>(st.in(th)) : st.in(tf);
        a.ids = st.in(ids);
        ExecContext ctx;
        ctx.pool = pool;
        e->fn(&a, ctx);
        st.finish();
        expect_close(got, ref, 0.0, ktest::entry_name(*e) + " h=" + std::to_string(h));
      }
    }
}

}  // namespace
}  // namespace eli
