// tests/cpp/test_cuda_attention_kvquant.cc: the CUDA compressed-KV kernels (int8 / fp8 e4m3 with
// per-(slot, kv head) f32 scales): RopeKvWrite (kernels/cuda/mixed_elementwise.cu, quantizing in
// the warp that writes the row) and Attention (kernels/cuda/attention_kvquant*.cu, dequantizing in
// registers: decode batches with head_dim % 8 == 0 and q / out f32 or bf16 run the split-K decode
// kernel of the 16-bit cache on the stored bytes, attention_decode_{i8,fp8}_*.cu; everything else
// attention_kvquant*.cu) against the CPU references (kernels/ref), on the same ragged paged batches as the CPU
// tests (kvquant_test_util.h) plus long decode contexts and batches of many sequences: head_dim
// 64 / 128 / 256 and unaligned ones (72, 40, 12), GQA 1 / 3 / 8, block sizes 1 / 16 / 5, windows,
// q and out f32 / bf16 / f16. Tolerance: relative to max |ref|, 1e-4 with f32 q and out, 2e-2
// (bf16) and 4e-3 (f16) with 16-bit ones (the reference reads the same q bits). RopeKvWrite: V
// codes and scales bit for bit (a plain quantized copy), K within one quantization step (RoPE in
// f32 vs the reference's double). Skipped without a GPU (suite CudaKernelAttnKvQuant; the lead
// runs them on the device with --gtest_filter='Cuda*').
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernel_test_util.h"
#include "kernels/ref/kv_quant.h"
#include "kvquant_test_util.h"
#include "runtime/core/float_convert.h"

namespace eli {
namespace {

using ktest::expect_close;
using ktest::kSentinel;
using ktest::rand_vec;
using kvqtest::attention_args;
using kvqtest::Heads;
using kvqtest::kQuantDtypes;
using kvqtest::Paged;
using kvqtest::QuantCache;
using kvqtest::SeqSpec;

class CudaKernelAttnKvQuant : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

// Activations of dtype dt: bits as the kernel reads them (f32 or 16-bit) and their f32 values.
struct Act {
  DType dt;
  std::vector<float> f;
  std::vector<uint16_t> h;
  Act(DType d, std::vector<float> v) : dt(d), f(std::move(v)) {
    if (dt == DType::kF32) return;
    h.resize(f.size());
    for (size_t i = 0; i < f.size(); ++i) {
      h[i] = dt == DType::kF16 ? f32_to_f16(f[i]) : f32_to_bf16(f[i]);
      f[i] = dt == DType::kF16 ? f16_to_f32(h[i]) : bf16_to_f32(h[i]);
    }
  }
};

double tol_for(DType q, DType out) {
  if (q == DType::kBF16 || out == DType::kBF16) return 2e-2;
  if (q == DType::kF16 || out == DType::kF16) return 4e-3;
  return 1e-4;
}

void check_attention(DType cache, DType qdt, DType odt, const std::vector<SeqSpec>& seqs, Heads hs, int64_t hd,
                     int64_t bs, int64_t window, bool known_bounds, std::mt19937& rng) {
  Paged b(seqs, bs, rng);
  const int64_t t = b.n_tokens(), qs = hs.nh * hd + 2, os = hs.nh * hd + 2;
  QuantCache c(b.n_blocks * bs * hs.nkv, hd, cache, rng);
  Act q(qdt, rand_vec(rng, static_cast<size_t>(t * qs), -2, 2));
  std::vector<float> ref(static_cast<size_t>(t * os), kSentinel);
  AttentionArgs ra = attention_args(b, hs, hd, window, qs, os, ref.data(), q.f.data());
  ra.k_cache = c.k.data();
  ra.v_cache = c.v.data();
  ra.k_scale = c.ks.data();
  ra.v_scale = c.vs.data();
  get_kernel(Op::kAttention, DeviceKind::kCPU, cache, "ref").fn(&ra, ExecContext{});
  ktest::Stage st(DeviceKind::kCUDA);
  AttentionArgs a = ra;
  std::vector<float> out_f(ref.size(), kSentinel);
  std::vector<uint16_t> out_h(odt == DType::kF32 ? 0 : ref.size(), f32_to_bf16(kSentinel));
  a.out = odt == DType::kF32 ? static_cast<void*>(st.inout(out_f)) : st.inout(out_h);
  a.out_dtype = odt;
  a.q = qdt == DType::kF32 ? static_cast<const void*>(st.in(q.f)) : st.in(q.h);
  a.q_dtype = qdt;
  a.k_cache = st.in(c.k);
  a.v_cache = st.in(c.v);
  a.k_scale = st.in(c.ks);
  a.v_scale = st.in(c.vs);
  a.cu_seqlens = st.in(b.cu);
  a.positions = st.in(b.positions);
  a.context_lens = st.in(b.context_lens);
  a.block_tables = st.in(b.tables);
  std::vector<float> ws;
  if (known_bounds) {
    for (size_t s = 0; s + 1 < b.cu.size(); ++s) a.max_query_len = std::max<int64_t>(a.max_query_len, b.cu[s + 1] - b.cu[s]);
    for (int32_t l : b.context_lens) a.max_context_len = std::max<int64_t>(a.max_context_len, l);
    // A split-K workspace (poisoned: the kernel must not depend on its contents).
    ws.assign(attention_workspace_bytes(b.n_seqs() * a.max_query_len, hs.nh, hd) / sizeof(float), NAN);
    a.workspace = st.inout(ws);
    a.workspace_bytes = ws.size() * sizeof(float);
  }
  ExecContext ctx;
  get_kernel(Op::kAttention, DeviceKind::kCUDA, cache).fn(&a, ctx);
  st.finish();
  std::vector<float> got = out_f;
  if (odt != DType::kF32) {
    for (size_t i = 0; i < got.size(); ++i) {
      const bool pad = static_cast<int64_t>(i % os) >= hs.nh * hd;
      got[i] = pad ? kSentinel : (odt == DType::kF16 ? f16_to_f32(out_h[i]) : bf16_to_f32(out_h[i]));
    }
  }
  expect_close(got, ref, tol_for(qdt, odt),
               std::string(dtype_name(cache)) + " q " + dtype_name(qdt) + " out " + dtype_name(odt) + " hd=" +
                   std::to_string(hd) + " nh=" + std::to_string(hs.nh) + " nkv=" + std::to_string(hs.nkv) +
                   " bs=" + std::to_string(bs) + " window=" + std::to_string(window));
}

// Prefill-and-decode batches (the compressed-KV kernel) and decode-only ones (the split-K decode
// kernel where head_dim % 8 == 0, with a workspace when the bounds are known).
TEST_F(CudaKernelAttnKvQuant, AttentionMatchesRefOnRaggedBatches) {
  std::mt19937 rng(5);
  const std::vector<SeqSpec> decode = {{1, 1}, {17, 1}, {40, 1}, {33, 2}, {700, 4}, {129, 1}};
  for (DType cache : kQuantDtypes)
    for (const auto* seqs : {&kvqtest::kSeqs, &decode})
      for (int64_t hd : {64, 128, 256, 72, 40, 12})
        for (Heads hs : {Heads{4, 4}, Heads{6, 2}, Heads{8, 1}})
          for (int64_t bs : {1, 16, 5})
            for (int64_t window : {0, 7})
              for (bool known : {true, false})
                check_attention(cache, DType::kF32, DType::kF32, *seqs, hs, hd, bs, window, known, rng);
}

TEST_F(CudaKernelAttnKvQuant, AttentionQAndOut16Bit) {
  std::mt19937 rng(6);
  for (DType cache : kQuantDtypes)
    for (DType act : {DType::kBF16, DType::kF16}) {
      check_attention(cache, act, act, kvqtest::kSeqs, Heads{8, 2}, 128, 16, 0, true, rng);
      check_attention(cache, act, DType::kF32, kvqtest::kSeqs, Heads{4, 1}, 64, 16, 0, true, rng);
      check_attention(cache, DType::kF32, act, kvqtest::kSeqs, Heads{4, 4}, 80, 16, 5, false, rng);
    }
}

TEST_F(CudaKernelAttnKvQuant, DecodeLongContextsAndManySequences) {
  std::mt19937 rng(7);
  for (DType cache : kQuantDtypes) {
    // Llama-8B-like decode: 32 q heads on 8 kv heads of 128, contexts up to 3000.
    check_attention(cache, DType::kBF16, DType::kBF16, {{3000, 1}, {17, 1}, {1200, 1}}, Heads{32, 8}, 128, 16, 0,
                    true, rng);
    std::vector<SeqSpec> many;
    for (int i = 0; i < 64; ++i) many.push_back({1 + (i * 37) % 400, 1});
    check_attention(cache, DType::kF32, DType::kF32, many, Heads{8, 2}, 64, 16, 0, true, rng);
    // Speculative-style multi-token decode.
    check_attention(cache, DType::kF32, DType::kF32, {{500, 4}, {30, 3}}, Heads{6, 3}, 128, 16, 0, true, rng);
  }
}

TEST_F(CudaKernelAttnKvQuant, RopeKvWriteMatchesRef) {
  std::mt19937 rng(8);
  for (DType cache : kQuantDtypes)
    for (DType qdt : {DType::kF32, DType::kBF16, DType::kF16})
      for (int64_t hd : {64, 128, 256, 40})
        for (Heads hs : {Heads{8, 2}, Heads{4, 4}, Heads{3, 1}}) {
          Paged b({{5, 5}, {20, 1}, {33, 19}}, 16, rng);
          const int64_t t = b.n_tokens(), stride = (hs.nh + 2 * hs.nkv) * hd + 3, n_slots = b.n_blocks * 16;
          const size_t rows = static_cast<size_t>(n_slots * hs.nkv);
          std::vector<float> qkv = rand_vec(rng, static_cast<size_t>(t * stride), -2, 2);
          std::vector<float> inv(static_cast<size_t>(hd / 2));
          for (int64_t i = 0; i < hd / 2; ++i) inv[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / hd));
          std::vector<int32_t> slots = b.slots;
          slots[1] = -1;
          std::vector<uint8_t> k0(rows * hd, 0x11), v0(rows * hd, 0x22);
          std::vector<float> s0(rows, 7.0f), rq(static_cast<size_t>(t * hs.nh * hd)), rks = s0, rvs = s0;
          std::vector<uint8_t> rk = k0, rv = v0;
          RopeKvWriteArgs h{};
          h.q_out = rq.data();
          h.k_cache = rk.data();
          h.v_cache = rv.data();
          h.k_scale = rks.data();
          h.v_scale = rvs.data();
          h.qkv = qkv.data();
          h.positions = b.positions.data();
          h.slot_mapping = slots.data();
          h.inv_freq = inv.data();
          h.n_tokens = t;
          h.n_heads = hs.nh;
          h.n_kv_heads = hs.nkv;
          h.head_dim = hd;
          h.rot_dim = hd;
          h.qkv_stride = stride;
          h.n_slots = n_slots;
          h.attention_scaling = 1.0f;
          h.norm_eps = 1e-6f;
          h.q_dtype = DType::kF32;  // the reference's q in f32; the device's in qdt (checked loosely)
          get_kernel(Op::kRopeKvWrite, DeviceKind::kCPU, cache, "ref").fn(&h, ExecContext{});
          ktest::Stage st(DeviceKind::kCUDA);
          std::vector<uint8_t> gk = k0, gv = v0;
          std::vector<float> gks = s0, gvs = s0, gq(rq.size());
          std::vector<uint16_t> gqh(qdt == DType::kF32 ? 0 : rq.size());
          RopeKvWriteArgs d = h;
          d.q_out = qdt == DType::kF32 ? static_cast<void*>(st.inout(gq)) : st.inout(gqh);
          d.q_dtype = qdt;
          d.k_cache = st.inout(gk);
          d.v_cache = st.inout(gv);
          d.k_scale = st.inout(gks);
          d.v_scale = st.inout(gvs);
          d.qkv = st.in(qkv);
          d.positions = st.in(b.positions);
          d.slot_mapping = st.in(slots);
          d.inv_freq = st.in(inv);
          get_kernel(Op::kRopeKvWrite, DeviceKind::kCUDA, cache).fn(&d, ExecContext{});
          st.finish();
          const std::string what = std::string(dtype_name(cache)) + " q " + dtype_name(qdt) + " hd=" +
                                   std::to_string(hd) + " nh=" + std::to_string(hs.nh) + " nkv=" + std::to_string(hs.nkv);
          if (qdt != DType::kF32)
            for (size_t i = 0; i < gq.size(); ++i) gq[i] = qdt == DType::kF16 ? f16_to_f32(gqh[i]) : bf16_to_f32(gqh[i]);
          expect_close(gq, rq, qdt == DType::kF32 ? 1e-5 : 1e-2, what + " q");
          EXPECT_EQ(gv, rv) << what << " v codes";
          EXPECT_EQ(gvs, rvs) << what << " v scales";
          expect_close(gks, rks, 1e-5, what + " k scales");
          for (size_t r = 0; r < rows; ++r)
            for (int64_t e = 0; e < hd; ++e) {
              const float x = kv_load_unscaled(gk.data() + r * hd, cache, e) * gks[r];
              const float y = kv_load_unscaled(rk.data() + r * hd, cache, e) * rks[r];
              const float step = cache == DType::kI8 ? rks[r] : std::max(std::fabs(y) / 8.0f, rks[r] * std::ldexp(1.0f, -9));
              ASSERT_LE(std::fabs(x - y), step * 1.001f + 1e-6f) << what << " k row " << r << " d " << e;
            }
        }
}

// Argument checks that need no device: a quantized cache without scales is an internal error.
TEST(CudaKernelAttnKvQuantArgs, MissingScalesRefused) {
  for (DType cache : kQuantDtypes) {
    const KernelEntry* e = find_kernel(Op::kAttention, DeviceKind::kCUDA, cache);
    if (e == nullptr) GTEST_SKIP() << "no CUDA kernels in this build";
    std::vector<int32_t> cu = {0, 1}, pos = {0}, lens = {1}, table = {0};
    AttentionArgs a{};
    a.cu_seqlens = cu.data();
    a.positions = pos.data();
    a.context_lens = lens.data();
    a.block_tables = table.data();
    a.n_seqs = 1;
    a.n_heads = a.n_kv_heads = 1;
    a.head_dim = 64;
    a.block_size = 16;
    a.max_blocks_per_seq = 1;
    ktest::expect_error_kind(ErrorKind::kInternal, [&] { e->fn(&a, ExecContext{}); }, dtype_name(cache));
  }
}

}  // namespace
}  // namespace eli
