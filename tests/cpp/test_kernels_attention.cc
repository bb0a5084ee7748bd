// tests/cpp/test_kernels_attention.cc: parity of every Attention and KvWrite entry against the
// reference on ragged batches (prefill, chunked prefill and decode sequences together) with
// shuffled, non-contiguous block tables, GQA head layouts, sliding windows and padded rows; plus
// hand-computed checks of the reference kernels themselves.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "kernel_test_util.h"

namespace eli {
namespace {

using ktest::candidates;
using ktest::expect_close;
using ktest::kSentinel;
using ktest::rand_vec;

struct SeqSpec {
  int32_t context_len, n_new;
};

// A ragged batch over a paged cache whose blocks are handed out in shuffled order.
struct PagedBatch {
  int64_t block_size, n_blocks, max_blocks;
  std::vector<int32_t> cu_seqlens{0}, positions, context_lens, block_tables, slot_mapping;

  PagedBatch(const std::vector<SeqSpec>& seqs, int64_t bs, std::mt19937& rng) : block_size(bs) {
    max_blocks = 0;
    int64_t total_blocks = 0;
    for (const SeqSpec& s : seqs) {
      const int64_t nb = (s.context_len + bs - 1) / bs;
      max_blocks = std::max(max_blocks, nb + 1);  // one spare column of padding
      total_blocks += nb;
    }
    n_blocks = total_blocks + 3;
    std::vector<int32_t> ids(static_cast<size_t>(n_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    size_t next = 0;
    block_tables.assign(static_cast<size_t>(seqs.size() * max_blocks), -1);
    for (size_t s = 0; s < seqs.size(); ++s) {
      const int64_t nb = (seqs[s].context_len + bs - 1) / bs;
      for (int64_t b = 0; b < nb; ++b) block_tables[s * max_blocks + b] = ids[next++];
      context_lens.push_back(seqs[s].context_len);
      for (int32_t i = 0; i < seqs[s].n_new; ++i) {
        const int32_t p = seqs[s].context_len - seqs[s].n_new + i;
        positions.push_back(p);
        slot_mapping.push_back(block_tables[s * max_blocks + p / bs] * static_cast<int32_t>(bs) + p % bs);
      }
      cu_seqlens.push_back(static_cast<int32_t>(positions.size()));
    }
  }
  int64_t n_tokens() const { return static_cast<int64_t>(positions.size()); }
  int64_t n_seqs() const { return static_cast<int64_t>(context_lens.size()); }
};

TEST(KernelAttention, MatchesReferenceOnRaggedPagedBatches) {
  auto cands = candidates(Op::kAttention);
  ASSERT_FALSE(cands.empty());
  std::mt19937 rng(42);
  const std::vector<SeqSpec> seqs = {{1, 1}, {17, 17}, {40, 1}, {33, 5}, {9, 1}, {70, 23}};
  struct Heads {
    int64_t nh, nkv;
  };
  for (const KernelEntry* e : cands)
    if (e->dtype == DType::kF32)  // bf16-cache kernels: tests/cpp/test_cuda_attention_bf16.cc
    for (int64_t hd : {8, 12, 64, 128})
      for (Heads hs : {Heads{4, 4}, Heads{6, 2}, Heads{8, 1}})
        for (int64_t bs : {4, 16})
          for (int64_t window : {0, 5}) {
            PagedBatch b(seqs, bs, rng);
            const int64_t t = b.n_tokens(), qs = hs.nh * hd + 3, os = hs.nh * hd + 1;
            const size_t cache = static_cast<size_t>(b.n_blocks * bs * hs.nkv * hd);
            std::vector<float> q = rand_vec(rng, static_cast<size_t>(t * qs), -2, 2);
            std::vector<float> kc = rand_vec(rng, cache), vc = rand_vec(rng, cache);
            std::vector<float> ref(static_cast<size_t>(t * os), kSentinel);
            AttentionArgs ra{ref.data(), q.data(), kc.data(), vc.data(), b.cu_seqlens.data(), b.positions.data(),
                             b.context_lens.data(), b.block_tables.data(), b.n_seqs(), hs.nh, hs.nkv, hd, bs,
                             b.max_blocks, qs, os, window, 1.0f / std::sqrt(static_cast<float>(hd))};
            ktest::ref_of(*e).fn(&ra, ExecContext{});
            for (ThreadPool* pool : ktest::pools_for(*e)) {
              std::vector<float> got(ref.size(), kSentinel);
              ktest::Stage st(e->device);
              AttentionArgs a = ra;
              a.out = st.inout(got);
              a.q = st.in(q);
              a.k_cache = st.in(kc);
              a.v_cache = st.in(vc);
              a.cu_seqlens = st.in(b.cu_seqlens);
              a.positions = st.in(b.positions);
              a.context_lens = st.in(b.context_lens);
              a.block_tables = st.in(b.block_tables);
              ExecContext ctx;
              ctx.pool = pool;
              e->fn(&a, ctx);
              st.finish();
              expect_close(got, ref, 1e-5, ktest::entry_name(*e) + " hd=" + std::to_string(hd) + " nh=" +
                                               std::to_string(hs.nh) + " nkv=" + std::to_string(hs.nkv) +
                                               " bs=" + std::to_string(bs) + " window=" + std::to_string(window));
            }
          }
}

TEST(KernelKvWrite, MatchesReference) {
  std::mt19937 rng(8);
  const std::vector<SeqSpec> seqs = {{5, 5}, {20, 1}, {12, 4}};
  for (const KernelEntry* e : candidates(Op::kKvWrite)) {
    if (e->dtype != DType::kF32) continue;  // bf16 cache: tests/cpp/test_cuda_mixed_elementwise.cc
    PagedBatch b(seqs, 4, rng);
    const int64_t nkv = 2, hd = 12, t = b.n_tokens(), ks = nkv * hd + 2;
    const size_t cache = static_cast<size_t>(b.n_blocks * 4 * nkv * hd);
    std::vector<float> k = rand_vec(rng, static_cast<size_t>(t * ks)), v = rand_vec(rng, static_cast<size_t>(t * ks));
    std::vector<float> kc0 = rand_vec(rng, cache), vc0 = rand_vec(rng, cache);
    std::vector<int32_t> slots = b.slot_mapping;
    slots[1] = -1;  // skipped token
    std::vector<float> rk = kc0, rv = vc0;
    KvWriteArgs ra{rk.data(), rv.data(), k.data(), v.data(), slots.data(), t, nkv, hd, ks, ks, b.n_blocks * 4};
    ktest::ref_of(*e).fn(&ra, ExecContext{});
    std::vector<float> gk = kc0, gv = vc0;
    ktest::Stage st(e->device);
    KvWriteArgs a = ra;
    a.k_cache = st.inout(gk);
    a.v_cache = st.inout(gv);
    a.k = st.in(k);
    a.v = st.in(v);
    a.slot_mapping = st.in(slots);
    e->fn(&a, ExecContext{});
    st.finish();
    expect_close(gk, rk, 0.0, ktest::entry_name(*e) + " k");
    expect_close(gv, rv, 0.0, ktest::entry_name(*e) + " v");
  }
}

// ---- hand-computed checks of the references -----------------------------------------------

TEST(KernelRefKnown, MatmulRmsNormSwiglu) {
  // x (2, 3) @ w (2, 3)^T + bias
  std::vector<float> x = {1, 2, 3, 4, 5, 6}, w = {1, 0, -1, 0.5f, 0.5f, 0.5f}, bias = {10, 20}, out(4, 1.0f);
  MatmulArgs m{out.data(), x.data(), w.data(), bias.data(), 2, 2, 3, 2, 3, true};
  matmul_ref_f32(&m, ExecContext{});
  EXPECT_EQ(out, (std::vector<float>{1 + 10 - 2, 1 + 20 + 3, 1 + 10 - 2, 1 + 20 + 7.5f}));

  std::vector<float> nx = {3, 4}, nw = {1, 2}, nres = {0, 0}, nout(2);
  RmsNormArgs r{nout.data(), nres.data(), nx.data(), nw.data(), 1, 2, 2, 2, 0.0f, 1.0f};
  rms_norm_ref(&r, ExecContext{});
  const float inv = 1.0f / std::sqrt(12.5f);
  EXPECT_NEAR(nout[0], 3 * inv * 2, 1e-6);
  EXPECT_NEAR(nout[1], 4 * inv * 3, 1e-6);
  EXPECT_EQ(nres, nx);

  std::vector<float> gu = {0, 2, 5, 3}, sout(2);
  SwigluArgs s{sout.data(), gu.data(), 1, 2, 2, 4};
  swiglu_ref(&s, ExecContext{});
  EXPECT_NEAR(sout[0], 0.0f, 1e-7);
  EXPECT_NEAR(sout[1], 2.0 / (1.0 + std::exp(-2.0)) * 3.0, 1e-6);
}

TEST(KernelRefKnown, RopeRotatesHalves) {
  // hd 6, rot 4: pairs (0, 2) and (1, 3); dims 4, 5 untouched. Angle pi/2 on pair 0, 0 on pair 1.
  std::vector<float> x = {1, 1, 0, 2, 7, 8};
  std::vector<int32_t> pos = {1};
  std::vector<float> inv = {static_cast<float>(M_PI / 2), 0.0f};
  RopeArgs a{x.data(), pos.data(), inv.data(), nullptr, 1, 1, 6, 4, 6, 2.0f};
  rope_ref(&a, ExecContext{});
  EXPECT_NEAR(x[0], 0.0f, 1e-6);  // (1*cos - 0*sin) * 2
  EXPECT_NEAR(x[2], 2.0f, 1e-6);  // (0*cos + 1*sin) * 2
  EXPECT_NEAR(x[1], 2.0f, 1e-6);  // angle 0: scaled only
  EXPECT_NEAR(x[3], 4.0f, 1e-6);
  EXPECT_EQ(x[4], 7.0f);
  EXPECT_EQ(x[5], 8.0f);
}

TEST(KernelRefKnown, AttentionMasksCausallyAndByWindow) {
  // One seq, block size 2, blocks {1, 0}: positions 0,1 in block 1, position 2 in block 0.
  // hd 1, one head; k = 0 everywhere (uniform softmax); v of position p = 10 * (p + 1).
  std::vector<float> kc(4, 0.0f), vc(4);
  vc[2] = 10, vc[3] = 20, vc[0] = 30, vc[1] = -1;  // slot 1 (block 0, offset 1) is beyond context
  std::vector<int32_t> cu = {0, 3}, pos = {0, 1, 2}, ctx = {3}, bt = {1, 0};
  std::vector<float> q = {1, 1, 1}, out(3);
  AttentionArgs a{out.data(), q.data(), kc.data(), vc.data(), cu.data(), pos.data(), ctx.data(), bt.data(),
                  1, 1, 1, 1, 2, 2, 1, 1, 0, 1.0f};
  attention_ref(&a, ExecContext{});
  EXPECT_NEAR(out[0], 10.0f, 1e-5);
  EXPECT_NEAR(out[1], 15.0f, 1e-5);
  EXPECT_NEAR(out[2], 20.0f, 1e-5);
  a.sliding_window = 2;  // position 2 sees 1..2
  attention_ref(&a, ExecContext{});
  EXPECT_NEAR(out[2], 25.0f, 1e-5);
  // GQA: 2 query heads share kv head 0 (nkv = 1).
  std::vector<float> q2 = {1, 1}, out2(2);
  std::vector<int32_t> cu2 = {0, 1}, pos2 = {0}, ctx2 = {1};
  AttentionArgs g{out2.data(), q2.data(), kc.data(), vc.data(), cu2.data(), pos2.data(), ctx2.data(), bt.data(),
                  1, 2, 1, 1, 2, 2, 2, 2, 0, 1.0f};
  attention_ref(&g, ExecContext{});
  EXPECT_NEAR(out2[0], 10.0f, 1e-5);
  EXPECT_NEAR(out2[1], 10.0f, 1e-5);
}

TEST(KernelRefKnown, KvWriteSkipsInvalidSlots) {
  std::vector<float> kc(8, 0.0f), vc(8, 0.0f), k = {1, 2, 3, 4, 5, 6}, v = {-1, -2, -3, -4, -5, -6};
  std::vector<int32_t> slots = {3, -1, 9};  // 9 >= n_slots (4): skipped
  KvWriteArgs a{kc.data(), vc.data(), k.data(), v.data(), slots.data(), 3, 1, 2, 2, 2, 4};
  kv_write_ref(&a, ExecContext{});
  EXPECT_EQ(kc, (std::vector<float>{0, 0, 0, 0, 0, 0, 1, 2}));
  EXPECT_EQ(vc, (std::vector<float>{0, 0, 0, 0, 0, 0, -1, -2}));
}

}  // namespace
}  // namespace eli
