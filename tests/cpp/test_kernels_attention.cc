// tests/cpp/test_kernels_attention.cc: parity of every Attention and CPU RopeKvWrite entry against
// the reference on ragged batches (prefill, chunked prefill and decode sequences together) with
// shuffled, non-contiguous block tables, GQA head layouts, sliding windows, padded rows; RopeKvWrite
// with q/k norms, partial rotary dims, per-token RoPE tables, attention scaling and skipped slots;
// plus hand-computed checks of the reference kernels themselves (GEMM, GEMV with its fusions,
// NormCast, both gated activations, RoPE, the KV write, attention masking).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <string>

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

// ---- RopeKvWrite ----------------------------------------------------------------------------

struct RopeKvCase {
  int64_t nh, nkv, hd, rot;
  bool norm, tables;
};

// One RopeKvWrite case on the CPU entry `e` against the reference: q_out and both caches compared
// in full (slots nobody writes must keep their old values).
void check_rope_kv(const KernelEntry& e, const std::vector<SeqSpec>& seqs, const RopeKvCase& c, std::mt19937& rng) {
  PagedBatch b(seqs, 4, rng);
  const int64_t t = b.n_tokens(), hd = c.hd, half = c.rot / 2;
  const int64_t stride = (c.nh + 2 * c.nkv) * hd + 3, n_slots = b.n_blocks * 4, row = c.nkv * hd;
  std::vector<float> qkv = rand_vec(rng, static_cast<size_t>(t * stride), -2, 2);
  std::vector<float> qn = rand_vec(rng, static_cast<size_t>(hd), 0.5f, 1.5f), kn = rand_vec(rng, static_cast<size_t>(hd), 0.5f, 1.5f);
  std::vector<int32_t> slots = b.slot_mapping, pos(static_cast<size_t>(t)), table(static_cast<size_t>(t));
  if (t > 1) slots[1] = -1;                                  // skipped: negative
  if (t > 2) slots[t - 1] = static_cast<int32_t>(n_slots + 3);  // skipped: past the cache
  for (int64_t i = 0; i < t; ++i) {
    pos[i] = b.positions[i] * 37 + static_cast<int32_t>(i % 3);  // angles of many turns
    table[i] = static_cast<int32_t>(rng() % 2);
  }
  std::vector<float> inv(static_cast<size_t>(2 * half));  // two tables (e.g. local and global RoPE)
  for (int64_t i = 0; i < half; ++i) {
    inv[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / c.rot));
    inv[half + i] = inv[i] * 0.25f;
  }
  std::vector<float> q0(static_cast<size_t>(t * c.nh * hd), kSentinel);
  std::vector<float> kc0 = rand_vec(rng, static_cast<size_t>(n_slots * row)), vc0 = rand_vec(rng, kc0.size());
  std::vector<float> rq = q0, rk = kc0, rv = vc0;
  RopeKvWriteArgs ra{};
  ra.q_out = rq.data();
  ra.k_cache = rk.data();
  ra.v_cache = rv.data();
  ra.qkv = qkv.data();
  ra.q_norm = c.norm ? qn.data() : nullptr;
  ra.k_norm = c.norm ? kn.data() : nullptr;
  ra.positions = pos.data();
  ra.slot_mapping = slots.data();
  ra.inv_freq = inv.data();
  ra.table_of_token = c.tables ? table.data() : nullptr;
  ra.n_tokens = t;
  ra.n_heads = c.nh;
  ra.n_kv_heads = c.nkv;
  ra.head_dim = hd;
  ra.rot_dim = c.rot;
  ra.qkv_stride = stride;
  ra.n_slots = n_slots;
  ra.attention_scaling = c.tables ? 1.25f : 1.0f;
  ra.norm_eps = 1e-6f;
  ra.q_dtype = DType::kF32;
  ktest::ref_of(e).fn(&ra, ExecContext{});
  for (ThreadPool* pool : ktest::pools_for(e)) {
    std::vector<float> gq = q0, gk = kc0, gv = vc0;
    RopeKvWriteArgs a = ra;
    a.q_out = gq.data();
    a.k_cache = gk.data();
    a.v_cache = gv.data();
    ExecContext ctx;
    ctx.pool = pool;
    e.fn(&a, ctx);
    const std::string what = ktest::entry_name(e) + " T=" + std::to_string(t) + " nh=" + std::to_string(c.nh) +
                             " nkv=" + std::to_string(c.nkv) + " hd=" + std::to_string(hd) + " rot=" +
                             std::to_string(c.rot) + " norm=" + std::to_string(c.norm) +
                             " tables=" + std::to_string(c.tables) + (pool ? " pool" : "");
    expect_close(gq, rq, 1e-5, what + " q");
    expect_close(gk, rk, 1e-5, what + " k cache");
    expect_close(gv, rv, 0.0, what + " v cache");  // a copy
  }
}

TEST(KernelRopeKvWrite, MatchesReference) {
  auto cands = ktest::cpu_candidates(Op::kRopeKvWrite);
  ASSERT_FALSE(cands.empty());
  std::mt19937 rng(8);
  const std::vector<std::vector<SeqSpec>> batches = {{{9, 1}}, {{5, 5}, {20, 1}, {12, 4}}, {{33, 19}}};
  struct Heads {
    int64_t nh, nkv;
  };
  for (const KernelEntry* e : cands)
    if (e->dtype == DType::kF32)  // int8 / fp8 caches: test_kernels_attention_kvquant.cc
    for (const auto& seqs : batches)
      for (Heads hs : {Heads{4, 4}, Heads{6, 2}, Heads{8, 1}})
        for (int64_t hd : {8, 12, 64, 128})
          for (int64_t rot : {hd, hd / 2, hd - 4})  // full and partial rotary (Phi, NeoX-style)
            for (int flags = 0; flags < 4; ++flags)
              check_rope_kv(*e, seqs, {hs.nh, hs.nkv, hd, rot, (flags & 1) != 0, (flags & 2) != 0}, rng);
}

TEST(KernelRopeKvWrite, NoRotaryIsAPlainCacheWrite) {
  // rot_dim 0: q copied, k/v written to their slots unchanged (bit for bit), slots skipped.
  std::mt19937 rng(9);
  for (const KernelEntry* e : ktest::cpu_candidates(Op::kRopeKvWrite))
    if (e->dtype == DType::kF32)
    for (bool norm : {false, true}) check_rope_kv(*e, {{5, 5}, {20, 1}}, {3, 1, 12, 0, norm, false}, rng);
}

TEST(KernelRopeKvWrite, CpuRejectsBadArguments) {
  std::vector<float> buf(64, 0.0f), inv(4, 1.0f);
  std::vector<int32_t> ids(1, 0);
  for (const KernelEntry* e : ktest::cpu_candidates(Op::kRopeKvWrite)) {
    if (e->dtype != DType::kF32) continue;  // quantized caches: test_kernels_attention_kvquant.cc
    RopeKvWriteArgs a{};
    a.q_out = buf.data();
    a.k_cache = buf.data();
    a.v_cache = buf.data();
    a.qkv = buf.data();
    a.positions = ids.data();
    a.slot_mapping = ids.data();
    a.inv_freq = inv.data();
    a.n_tokens = 1;
    a.n_heads = 1;
    a.n_kv_heads = 1;
    a.head_dim = 8;
    a.rot_dim = 8;
    a.qkv_stride = 24;
    a.n_slots = 1;
    a.attention_scaling = 1.0f;
    a.q_dtype = DType::kBF16;  // 16-bit q: the GPU's
    ktest::expect_error_kind(ErrorKind::kUnsupported, [&] { e->fn(&a, ExecContext{}); }, ktest::entry_name(*e));
    a.q_dtype = DType::kF32;
    // Kernels get their sizes from eli's own code: bad ones are an eli bug (kInternal, HTTP 500),
    // never the caller's InvalidRequestError.
    a.rot_dim = 7;  // odd
    ktest::expect_error_kind(ErrorKind::kInternal, [&] { e->fn(&a, ExecContext{}); }, ktest::entry_name(*e));
    a.rot_dim = 10;  // > head_dim
    ktest::expect_error_kind(ErrorKind::kInternal, [&] { e->fn(&a, ExecContext{}); }, ktest::entry_name(*e));
  }
}

// ---- hand-computed checks of the references -----------------------------------------------

TEST(KernelRefKnown, GemmGemvNormCastGatedAct) {
  // x (2, 3) @ w (2, 3)^T + bias, accumulated
  std::vector<float> x = {1, 2, 3, 4, 5, 6}, w = {1, 0, -1, 0.5f, 0.5f, 0.5f}, bias = {10, 20}, out(4, 1.0f);
  GemmArgs m{out.data(), x.data(), w.data(), bias.data(), 2, 2, 3, 2, 3};
  m.x_dtype = DType::kF32;
  m.accumulate = true;
  gemm_ref_f32(&m, ExecContext{});
  EXPECT_EQ(out, (std::vector<float>{1 + 10 - 2, 1 + 20 + 3, 1 + 10 - 2, 1 + 20 + 7.5f}));

  // RMSNorm with weight offset, accumulated into the output.
  const float inv = 1.0f / std::sqrt(12.5f);
  std::vector<float> nx = {3, 4}, nw = {1, 2}, nout = {10, 20};
  NormCastArgs r{nout.data(), nx.data(), nw.data(), 1, 2, 2, 2, 0.0f, 1.0f, DType::kF32};
  r.accumulate = true;
  norm_cast_ref(&r, ExecContext{});
  EXPECT_NEAR(nout[0], 10 + 3 * inv * 2, 1e-5);
  EXPECT_NEAR(nout[1], 20 + 4 * inv * 3, 1e-5);

  // act(gate) * up with act(1), act(2), act(-1), act(-3) (values from the formulas in double).
  std::vector<float> gu = {1, 2, -1, -3, 2, 3, 0.5f, 1}, sout(4), gout(4);
  GatedActArgs s{sout.data(), gu.data(), 1, 4, 4, 8, DType::kF32, GatedAct::kSilu};
  gated_act_ref(&s, ExecContext{});
  EXPECT_NEAR(sout[0], 0.7310585786300049 * 2, 1e-6);
  EXPECT_NEAR(sout[1], 1.7615941559557646 * 3, 1e-6);
  EXPECT_NEAR(sout[2], -0.2689414213699951 * 0.5, 1e-6);
  EXPECT_NEAR(sout[3], -0.14227761953270035, 1e-6);
  GatedActArgs g{gout.data(), gu.data(), 1, 4, 4, 8, DType::kF32, GatedAct::kGeluTanh};
  gated_act_ref(&g, ExecContext{});
  EXPECT_NEAR(gout[0], 0.8411919906082768 * 2, 1e-6);
  EXPECT_NEAR(gout[1], 1.954597694087775 * 3, 1e-6);
  EXPECT_NEAR(gout[2], -0.15880800939172324 * 0.5, 1e-6);
  EXPECT_NEAR(gout[3], -0.0036373920817729943, 1e-7);

  // GEMV with every fusion: norm (eps 0, offset 0) of x = (3, 4), w = [[2, 0], [0, 1]] (gate row,
  // up row), bias (0, 1): gate = 6 inv, up = 4 inv + 1; out = 5 + gelu(gate) * up.
  std::vector<float> vx = {3, 4}, vg = {1, 1}, vw = {2, 0, 0, 1}, vb = {0, 1}, vout = {5};
  GemvArgs v{vout.data(), vx.data(), vw.data(), vb.data(), vg.data(), 1, 2, 2, 1, 2};
  v.norm_eps = 0.0f;
  v.gated = GatedAct::kGeluTanh;
  v.accumulate = true;
  gemv_ref_f32(&v, ExecContext{});
  const double gate = 6.0 / std::sqrt(12.5), up = 4.0 / std::sqrt(12.5) + 1.0;
  const double gelu = 0.5 * gate * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (gate + 0.044715 * gate * gate * gate)));
  EXPECT_NEAR(vout[0], 5.0 + gelu * up, 1e-5);
}

TEST(KernelRefKnown, RopeRotatesHalves) {
  // hd 6, rot 4: pairs (0, 2) and (1, 3); dims 4, 5 untouched. Angle pi/2 on pair 0, 0 on pair 1.
  std::vector<float> x = {1, 1, 0, 2, 7, 8};
  std::vector<int32_t> pos = {1};
  std::vector<float> inv = {static_cast<float>(M_PI / 2), 0.0f};
  ref_rope_rows(x.data(), pos.data(), inv.data(), nullptr, 1, 1, 6, 4, 6, 2.0f);
  const std::vector<float> want = {0, 2, 2, 4, 7, 8};  // (1 cos - 0 sin) 2, (0 cos + 1 sin) 2; angle 0: scaled
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], want[i], 1e-6) << i;

  // The same rotation through RopeKvWrite, on q and k (one head each); v copied; a second table
  // (chosen by table_of_token) with angle 0 everywhere.
  std::vector<float> qkv = {1, 1, 0, 2, 7, 8, 1, 1, 0, 2, 7, 8, -1, -2, -3, -4, -5, -6};
  std::vector<float> inv2 = {static_cast<float>(M_PI / 2), 0.0f, 0.0f, 0.0f};
  std::vector<int32_t> slot = {1}, tab = {0};
  std::vector<float> q(6), kc(12, 0.0f), vc(12, 0.0f);
  RopeKvWriteArgs a{};
  a.q_out = q.data();
  a.k_cache = kc.data();
  a.v_cache = vc.data();
  a.qkv = qkv.data();
  a.positions = pos.data();
  a.slot_mapping = slot.data();
  a.inv_freq = inv2.data();
  a.table_of_token = tab.data();
  a.n_tokens = 1;
  a.n_heads = 1;
  a.n_kv_heads = 1;
  a.head_dim = 6;
  a.rot_dim = 4;
  a.qkv_stride = 18;
  a.n_slots = 2;
  a.attention_scaling = 2.0f;
  a.q_dtype = DType::kF32;
  rope_kv_write_ref_f32(&a, ExecContext{});
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_NEAR(q[i], want[i], 1e-6) << i;
    EXPECT_NEAR(kc[6 + i], want[i], 1e-6) << i;
    EXPECT_EQ(vc[6 + i], qkv[12 + i]) << i;
    EXPECT_EQ(kc[i], 0.0f);
  }
  tab[0] = 1;  // table 1: angle 0, cos = 1 scaled by 2
  rope_kv_write_ref_f32(&a, ExecContext{});
  EXPECT_EQ(q, (std::vector<float>{2, 2, 0, 4, 7, 8}));
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

TEST(KernelRefKnown, RopeKvWriteSkipsInvalidSlotsAndNormsHeads) {
  // rot_dim 0, one q and one kv head of dim 2; three tokens, slots 3, -1 and 9 (>= n_slots 4).
  std::vector<float> kc(8, 0.0f), vc(8, 0.0f), q(6, 0.0f);
  std::vector<float> qkv = {1, 2, 3, 4, -1, -2, 5, 6, 7, 8, -3, -4, 9, 10, 11, 12, -5, -6};
  std::vector<int32_t> slots = {3, -1, 9}, pos = {0, 1, 2};
  RopeKvWriteArgs a{};
  a.q_out = q.data();
  a.k_cache = kc.data();
  a.v_cache = vc.data();
  a.qkv = qkv.data();
  a.positions = pos.data();
  a.slot_mapping = slots.data();
  a.inv_freq = nullptr;
  a.n_tokens = 3;
  a.n_heads = 1;
  a.n_kv_heads = 1;
  a.head_dim = 2;
  a.rot_dim = 0;
  a.qkv_stride = 6;
  a.n_slots = 4;
  a.attention_scaling = 1.0f;
  a.q_dtype = DType::kF32;
  rope_kv_write_ref_f32(&a, ExecContext{});
  EXPECT_EQ(kc, (std::vector<float>{0, 0, 0, 0, 0, 0, 3, 4}));
  EXPECT_EQ(vc, (std::vector<float>{0, 0, 0, 0, 0, 0, -1, -2}));
  EXPECT_EQ(q, (std::vector<float>{1, 2, 5, 6, 9, 10}));  // q is written for every token
  // q/k RMSNorm (eps 0) with weights (1, 2) and (2, 1): row (3, 4) -> (3, 4) / sqrt(12.5) * w.
  std::vector<float> qn = {1, 2}, kn = {2, 1};
  qkv[0] = 3, qkv[1] = 4, qkv[2] = 3, qkv[3] = 4;
  a.q_norm = qn.data();
  a.k_norm = kn.data();
  a.norm_eps = 0.0f;
  rope_kv_write_ref_f32(&a, ExecContext{});
  const float inv = 1.0f / std::sqrt(12.5f);
  EXPECT_NEAR(q[0], 3 * inv, 1e-6);
  EXPECT_NEAR(q[1], 8 * inv, 1e-6);
  EXPECT_NEAR(kc[6], 6 * inv, 1e-6);
  EXPECT_NEAR(kc[7], 4 * inv, 1e-6);
  EXPECT_EQ(vc[6], -1.0f);  // v is never normalised
}

}  // namespace
}  // namespace eli
