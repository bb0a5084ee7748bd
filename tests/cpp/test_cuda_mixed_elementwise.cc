// tests/cpp/test_cuda_mixed_elementwise.cc: the CUDA NormCast (bf16, f16, f32 out; accumulating
// into f32 rows), GatedAct (SiLU and GELU-tanh; bf16, f16, f32) and RopeKvWrite (f32 / bf16 / f16
// cache, q in f32 or a 16-bit type, with and without q/k norm, with per-token RoPE tables; without
// rotary dims as the plain KV write) against their CPU references, on odd shapes and strides; a
// bf16 q with an f16 cache (or f16 q with a bf16 cache) must be rejected, as must an accumulating
// NormCast into a 16-bit output. Outputs are poisoned first; 16-bit outputs must match the
// reference's rounding within a ~2 ulp tolerance of their type (bf16 1.6e-2, f16 2e-3 relative:
// both round an f32 value that differs only by f32 arithmetic order); the KV write rounds the same
// f32 values and must match bit for bit. Skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "eli/error.h"
#include "kernels/ops.h"
#include "kernels/ref/float_convert.h"
#include "kernels/registry.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"
#include "tests/cpp/device_test_util.h"

namespace eli {
namespace {

class CudaKernelMixedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    dev_ = create_cuda_device(0);
    ctx_.stream = dev_->default_stream().native();
  }
  std::unique_ptr<Device> dev_;
  ExecContext ctx_;
};

bool is16(DType dt) { return dt == DType::kBF16 || dt == DType::kF16; }
uint16_t narrow(DType dt, float v) { return dt == DType::kF16 ? f32_to_f16(v) : f32_to_bf16(v); }
std::vector<float> widen(DType dt, const std::vector<uint16_t>& b) {
  std::vector<float> f(b.size());
  for (size_t i = 0; i < b.size(); ++i) f[i] = dt == DType::kF16 ? f16_to_f32(b[i]) : bf16_to_f32(b[i]);
  return f;
}

// Element buffers of any of the three dtypes, as raw 16-bit (bf16 / f16) or 32-bit words on host
// and device.
struct ActBuffer {
  ActBuffer(Device& dev, DType dt, size_t n, float poison) : dt(dt) {
    if (is16(dt)) {
      h16.assign(n, narrow(dt, poison));
      d16 = std::make_unique<DeviceBuffer<uint16_t>>(dev, h16);
    } else {
      h32.assign(n, poison);
      d32 = std::make_unique<DeviceBuffer<float>>(dev, h32);
    }
  }
  void* host() { return is16(dt) ? static_cast<void*>(h16.data()) : static_cast<void*>(h32.data()); }
  void* dev() { return is16(dt) ? static_cast<void*>(d16->get()) : static_cast<void*>(d32->get()); }
  std::vector<float> host_f32() const { return is16(dt) ? widen(dt, h16) : h32; }
  std::vector<float> dev_f32() const { return is16(dt) ? widen(dt, d16->download()) : d32->download(); }
  // Host values (rounded to dt) -> both copies.
  void set(const std::vector<float>& v) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (is16(dt)) h16[i] = narrow(dt, v[i]); else h32[i] = v[i];
    }
    if (is16(dt)) d16->upload(h16); else d32->upload(h32);
  }
  DType dt;
  std::vector<uint16_t> h16;
  std::vector<float> h32;
  std::unique_ptr<DeviceBuffer<uint16_t>> d16;
  std::unique_ptr<DeviceBuffer<float>> d32;
};

// About two ulps of the stored type (bf16: 8 significant bits, f16: 11), relative.
float tol_for(DType dt) { return dt == DType::kBF16 ? 1.6e-2f : dt == DType::kF16 ? 2e-3f : 2e-5f; }

TEST_F(CudaKernelMixedTest, NormCastMatchesRef) {
  const KernelEntry& ref = get_kernel(Op::kNormCast, DeviceKind::kCPU, DType::kF32, "ref");
  const KernelEntry& cu = get_kernel(Op::kNormCast, DeviceKind::kCUDA, DType::kF32);
  std::mt19937 rng(11);
  for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (int64_t rows : {1, 5, 130}) {
      // Odd strides take the element-wise kernel; packed rows (hidden % 4 == 0) the float4 one.
      for (int64_t hidden : {7, 576, 2048, 4099}) for (bool packed : {false, true}) for (bool acc : {false, true}) {
        if (acc && dt != DType::kF32) continue;  // accumulating needs f32 rows (NormCastRejects...)
        const int64_t xs = packed ? hidden : hidden + 3, os = packed ? hidden : hidden + 5;
        std::vector<float> x = random_floats(rows * xs, rng), w = random_floats(hidden, rng, 0.5f, 1.5f);
        DeviceBuffer<float> dx(*dev_, x), dw(*dev_, w);
        ActBuffer out(*dev_, dt, rows * os, 9.f);
        if (acc) out.set(random_floats(rows * os, rng, -3.f, 3.f));  // the residual rows (padding too)
        NormCastArgs h{out.host(), x.data(), w.data(), rows, hidden, os, xs, 1e-5f, 0.25f, dt};
        h.accumulate = acc;
        NormCastArgs d{out.dev(), dx.get(), dw.get(), rows, hidden, os, xs, 1e-5f, 0.25f, dt};
        d.accumulate = acc;
        ref.fn(&h, ExecContext{});
        cu.fn(&d, ctx_);
        dev_->synchronize();
        expect_close(out.dev_f32(), out.host_f32(), tol_for(dt), 1e-5f,
                     std::string("norm_cast ") + dtype_name(dt) + " rows=" + std::to_string(rows) +
                         " hidden=" + std::to_string(hidden) + (packed ? " packed" : " strided") +
                         (acc ? " accumulate" : ""));
      }
    }
  }
}

// Accumulating needs f32 output rows: a 16-bit output with accumulate is refused (any row count).
TEST_F(CudaKernelMixedTest, NormCastRejectsAccumulateInto16Bit) {
  const KernelEntry& cu = get_kernel(Op::kNormCast, DeviceKind::kCUDA, DType::kF32);
  for (DType dt : {DType::kBF16, DType::kF16}) {
    NormCastArgs a{nullptr, nullptr, nullptr, 0, 8, 8, 8, 1e-5f, 0.f, dt};
    a.accumulate = true;
    EXPECT_THROW(cu.fn(&a, ctx_), Error) << dtype_name(dt);
  }
}

TEST_F(CudaKernelMixedTest, GatedActMatchesRef) {
  const KernelEntry& ref = get_kernel(Op::kGatedAct, DeviceKind::kCPU, DType::kF32, "ref");
  const KernelEntry& cu = get_kernel(Op::kGatedAct, DeviceKind::kCUDA, DType::kF32);
  std::mt19937 rng(12);
  for (GatedAct act : {GatedAct::kSilu, GatedAct::kGeluTanh}) {
    for (DType dt : {DType::kBF16, DType::kF16, DType::kF32}) {
      for (int64_t rows : {1, 3, 70}) {
        // Odd strides take the element-wise kernel; packed 16-bit rows (inter % 8 == 0) the 8-wide one.
        for (int64_t inter : {1, 33, 8192, 14336}) for (bool packed : {false, true}) {
          const int64_t is = packed ? 2 * inter : 2 * inter + 1, os = packed ? inter : inter + 2;
          std::vector<float> gu = random_floats(rows * is, rng, -6.f, 6.f);
          ActBuffer in(*dev_, dt, rows * is, 0.f), out(*dev_, dt, rows * os, 5.f);
          in.set(gu);
          GatedActArgs h{out.host(), in.host(), rows, inter, os, is, dt, act};
          GatedActArgs d{out.dev(), in.dev(), rows, inter, os, is, dt, act};
          ref.fn(&h, ExecContext{});
          cu.fn(&d, ctx_);
          dev_->synchronize();
          // GELU's 1 + tanhf(z) cancels for negative gates: an absolute error of a few f32 ulps of 1
          // times 0.5 |gate| |up| (<= 18), which the atol covers.
          expect_close(out.dev_f32(), out.host_f32(), tol_for(dt), act == GatedAct::kGeluTanh ? 2e-5f : 1e-5f,
                       std::string("gated_act ") + gated_act_name(act) + " " + dtype_name(dt) + " rows=" +
                           std::to_string(rows) + " inter=" + std::to_string(inter) +
                           (packed ? " packed" : " strided"));
        }
      }
    }
  }
}

// No activation (kNone is GEMV-only) is refused.
TEST_F(CudaKernelMixedTest, GatedActRejectsNoActivation) {
  const KernelEntry& cu = get_kernel(Op::kGatedAct, DeviceKind::kCUDA, DType::kF32);
  GatedActArgs a{nullptr, nullptr, 0, 8, 8, 16, DType::kBF16, GatedAct::kNone};
  EXPECT_THROW(cu.fn(&a, ctx_), Error);
}

// Runs RopeKvWrite on both backends and compares q_out and both caches (every slot, so that skipped
// slots must keep their poison). tables: two RoPE tables (the second at a quarter of the first's
// frequencies), picked per token.
void check_rope_kv(Device& dev, const ExecContext& ctx, DType cache, DType qdt, bool qk_norm, int64_t T, int64_t nh,
                   int64_t nkv, int64_t hd, int64_t rot_dim, std::mt19937& rng, bool tables = false) {
  const KernelEntry& ref = get_kernel(Op::kRopeKvWrite, DeviceKind::kCPU, cache, "ref");
  const KernelEntry& cu = get_kernel(Op::kRopeKvWrite, DeviceKind::kCUDA, cache);
  const int64_t qkv_dim = (nh + 2 * nkv) * hd, stride = qkv_dim + 4;
  const int64_t n_slots = 3 * T + 5;
  std::vector<float> qkv = random_floats(T * stride, rng);
  std::vector<float> qn = random_floats(hd, rng, 0.5f, 1.5f), kn = random_floats(hd, rng, 0.5f, 1.5f);
  std::vector<float> inv_freq(rot_dim);  // (2 tables, rot_dim / 2)
  for (int64_t i = 0; i < rot_dim / 2; ++i) {
    inv_freq[i] = std::pow(10000.f, -2.f * i / rot_dim);
    inv_freq[rot_dim / 2 + i] = 0.25f * inv_freq[i];
  }
  std::vector<int32_t> pos(T), slots(T), table(T);
  for (int64_t t = 0; t < T; ++t) table[t] = static_cast<int32_t>((t * 5 + 1) % 3 == 0);
  std::uniform_int_distribution<int> pd(0, 5000);
  for (int64_t t = 0; t < T; ++t) {
    pos[t] = pd(rng);
    slots[t] = (t % 5 == 4) ? -1 : static_cast<int32_t>((t * 7 + 3) % n_slots);  // some skipped
  }
  // Distinct slots only (a repeated slot would make the written value order-dependent).
  for (int64_t t = 0; t < T; ++t)
    for (int64_t u = 0; u < t; ++u)
      if (slots[u] == slots[t]) slots[t] = -1;
  DeviceBuffer<float> dqkv(dev, qkv), dqn(dev, qn), dkn(dev, kn), dfreq(dev, inv_freq);
  DeviceBuffer<int32_t> dpos(dev, pos), dslots(dev, slots), dtable(dev, table);
  ActBuffer q(dev, qdt, T * nh * hd, 3.f), kc(dev, cache, n_slots * nkv * hd, -4.f),
      vc(dev, cache, n_slots * nkv * hd, -5.f);
  RopeKvWriteArgs h{};
  h.q_out = q.host();
  h.k_cache = kc.host();
  h.v_cache = vc.host();
  h.qkv = qkv.data();
  h.q_norm = qk_norm ? qn.data() : nullptr;
  h.k_norm = qk_norm ? kn.data() : nullptr;
  h.positions = pos.data();
  h.slot_mapping = slots.data();
  h.inv_freq = inv_freq.data();
  h.table_of_token = tables ? table.data() : nullptr;
  h.n_tokens = T;
  h.n_heads = nh;
  h.n_kv_heads = nkv;
  h.head_dim = hd;
  h.rot_dim = rot_dim;
  h.qkv_stride = stride;
  h.n_slots = n_slots;
  h.attention_scaling = 1.1f;
  h.norm_eps = 1e-6f;
  h.q_dtype = qdt;
  RopeKvWriteArgs d = h;
  d.q_out = q.dev();
  d.k_cache = kc.dev();
  d.v_cache = vc.dev();
  d.qkv = dqkv.get();
  d.q_norm = qk_norm ? dqn.get() : nullptr;
  d.k_norm = qk_norm ? dkn.get() : nullptr;
  d.positions = dpos.get();
  d.slot_mapping = dslots.get();
  d.inv_freq = dfreq.get();
  d.table_of_token = tables ? dtable.get() : nullptr;
  ref.fn(&h, ExecContext{});
  cu.fn(&d, ctx);
  dev.synchronize();
  const std::string what = std::string("rope_kv cache ") + dtype_name(cache) + " q " + dtype_name(qdt) +
                           " T=" + std::to_string(T) + " nh=" + std::to_string(nh) + " nkv=" +
                           std::to_string(nkv) + " hd=" + std::to_string(hd) + " rot=" + std::to_string(rot_dim) +
                           " norm=" + std::to_string(qk_norm) + " tables=" + std::to_string(tables);
  expect_close(q.dev_f32(), q.host_f32(), tol_for(qdt), 1e-4f, what + " q");
  expect_close(kc.dev_f32(), kc.host_f32(), tol_for(cache), 1e-4f, what + " k cache");
  expect_close(vc.dev_f32(), vc.host_f32(), tol_for(cache), 0.f, what + " v cache");
}

TEST_F(CudaKernelMixedTest, RopeKvWriteMatchesRef) {
  std::mt19937 rng(13);
  for (DType cache : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (DType qdt : {DType::kBF16, DType::kF16, DType::kF32}) {
      if (is16(cache) && is16(qdt) && qdt != cache) continue;  // never mixed: RopeKvWriteRejectsMixed16Bit
      for (bool norm : {false, true}) {
        check_rope_kv(*dev_, ctx_, cache, qdt, norm, 1, 32, 8, 128, 128, rng);
        check_rope_kv(*dev_, ctx_, cache, qdt, norm, 37, 9, 3, 64, 64, rng);
        check_rope_kv(*dev_, ctx_, cache, qdt, norm, 6, 4, 1, 80, 40, rng);   // partial rotary, MQA
        check_rope_kv(*dev_, ctx_, cache, qdt, norm, 300, 2, 2, 256, 256, rng);
        // Past 128 pairs the kernel computes the remaining cos/sin after its wait (kRopePre).
        check_rope_kv(*dev_, ctx_, cache, qdt, norm, 3, 2, 1, 512, 512, rng);
        check_rope_kv(*dev_, ctx_, cache, qdt, norm, 5, 3, 1, 384, 320, rng);  // partial rotary, 160 pairs
        // Per-token RoPE tables (Gemma 3's local / global bases, LongRoPE's factors).
        check_rope_kv(*dev_, ctx_, cache, qdt, norm, 37, 8, 4, 256, 256, rng, true);
        check_rope_kv(*dev_, ctx_, cache, qdt, norm, 6, 4, 1, 96, 64, rng, true);
      }
    }
  }
}

// A bf16 q with an f16 cache, or an f16 q with a bf16 cache, is kUnsupported (checked before
// anything is read, so even an empty batch is refused).
TEST_F(CudaKernelMixedTest, RopeKvWriteRejectsMixed16Bit) {
  for (DType cache : {DType::kF16, DType::kBF16}) {
    const DType qdt = cache == DType::kF16 ? DType::kBF16 : DType::kF16;
    const KernelEntry& cu = get_kernel(Op::kRopeKvWrite, DeviceKind::kCUDA, cache);
    RopeKvWriteArgs a{};
    a.n_tokens = 0;
    a.n_heads = 2;
    a.n_kv_heads = 1;
    a.head_dim = 8;
    a.rot_dim = 8;
    a.qkv_stride = 32;
    a.n_slots = 4;
    a.q_dtype = qdt;
    const std::string what = std::string("q ") + dtype_name(qdt) + " cache " + dtype_name(cache);
    try {
      cu.fn(&a, ctx_);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), ErrorKind::kUnsupported) << what << ": " << err.what();
    }
    a.q_dtype = DType::kF32;  // f32 q goes with any cache
    EXPECT_NO_THROW(cu.fn(&a, ctx_)) << what;
    a.q_dtype = cache;
    EXPECT_NO_THROW(cu.fn(&a, ctx_)) << what;
  }
}

// RopeKvWrite without rotary dims or norms is the KV write into a 16-bit cache: the same rounding
// of the same f32 values as the reference, bit for bit (inf, subnormal ties and zeros too); q
// (f32) is a copy.
TEST_F(CudaKernelMixedTest, KvWrite16MatchesRef) {
  for (DType dt : {DType::kBF16, DType::kF16}) {
    const KernelEntry& ref = get_kernel(Op::kRopeKvWrite, DeviceKind::kCPU, dt, "ref");
    const KernelEntry& cu = get_kernel(Op::kRopeKvWrite, DeviceKind::kCUDA, dt);
    std::mt19937 rng(14);
    const int64_t T = 21, nh = 2, nkv = 3, hd = 40, ks = (nh + 2 * nkv) * hd + 7, n_slots = 50;
    std::vector<float> qkv = random_floats(T * ks, rng);
    if (dt == DType::kF16) {  // token 0's k (slot 0): overflow to inf, subnormal ties, a tie to even
      float* k = qkv.data() + nh * hd;
      k[0] = 1e6f;
      k[1] = -70000.f;
      k[2] = std::ldexp(3.0f, -25);
      k[3] = std::ldexp(1.0f, -25);
      k[4] = 1.0f + std::ldexp(1.0f, -11);
    }
    std::vector<int32_t> slots(T), pos(T);
    for (int64_t t = 0; t < T; ++t) {
      slots[t] = t == 3 ? -2 : (t == 4 ? 999 : static_cast<int32_t>(t * 2));
      pos[t] = static_cast<int32_t>(t + 100);
    }
    DeviceBuffer<float> dqkv(*dev_, qkv);
    DeviceBuffer<int32_t> ds(*dev_, slots), dpos(*dev_, pos);
    ActBuffer q(*dev_, DType::kF32, T * nh * hd, 3.f), kc(*dev_, dt, n_slots * nkv * hd, 1.f),
        vc(*dev_, dt, n_slots * nkv * hd, 2.f);
    RopeKvWriteArgs h{};
    h.q_out = q.host();
    h.k_cache = kc.host();
    h.v_cache = vc.host();
    h.qkv = qkv.data();
    h.positions = pos.data();
    h.slot_mapping = slots.data();
    h.n_tokens = T;
    h.n_heads = nh;
    h.n_kv_heads = nkv;
    h.head_dim = hd;
    h.rot_dim = 0;
    h.qkv_stride = ks;
    h.n_slots = n_slots;
    h.attention_scaling = 1.f;
    h.q_dtype = DType::kF32;
    RopeKvWriteArgs d = h;
    d.q_out = q.dev();
    d.k_cache = kc.dev();
    d.v_cache = vc.dev();
    d.qkv = dqkv.get();
    d.positions = dpos.get();
    d.slot_mapping = ds.get();
    ref.fn(&h, ExecContext{});
    cu.fn(&d, ctx_);
    dev_->synchronize();
    // The same rounding of the same f32 values: bit for bit (raw 16-bit words; inf and zeros too).
    EXPECT_EQ(kc.d16->download(), kc.h16) << "kv_write " << dtype_name(dt) << " k";
    EXPECT_EQ(vc.d16->download(), vc.h16) << "kv_write " << dtype_name(dt) << " v";
    EXPECT_EQ(q.d32->download(), q.h32) << "kv_write " << dtype_name(dt) << " q";
    if (dt == DType::kF16) {
      EXPECT_EQ(kc.h16[0], 0x7c00);  // the reference's roundings of the edge cases, for the record
      EXPECT_EQ(kc.h16[1], 0xfc00);
      EXPECT_EQ(kc.h16[2], 0x0002);
      EXPECT_EQ(kc.h16[3], 0x0000);
      EXPECT_EQ(kc.h16[4], 0x3c00);
    }
  }
}

// Op::kScatterTokens: next-step token ids from the sampler's device output, with out-of-range
// sampled ids clamped to 0, against the CPU reference; n = 0 is a no-op.
TEST_F(CudaKernelMixedTest, ScatterTokensMatchesRef) {
  std::mt19937 rng(9);
  const int64_t vocab = 1000;
  for (int64_t n : {0, 1, 7, 300}) {
    std::vector<int32_t> ids(static_cast<size_t>(n + 13));
    for (int32_t& v : ids) v = static_cast<int32_t>(rng() % vocab);
    std::vector<int32_t> src(static_cast<size_t>(n + 5));
    for (size_t i = 0; i < src.size(); ++i) src[i] = i % 6 == 5 ? (i % 2 ? -3 : 5000) : static_cast<int32_t>(rng() % vocab);
    std::vector<int32_t> dst_index(static_cast<size_t>(n)), src_index(static_cast<size_t>(n));
    std::vector<int32_t> perm(ids.size());
    for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int32_t>(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t i = 0; i < n; ++i) {
      dst_index[i] = perm[i];  // distinct destinations
      src_index[i] = static_cast<int32_t>(rng() % src.size());
    }
    std::vector<int32_t> want = ids;
    ScatterTokensArgs ra{want.data(), dst_index.data(), src.data(), src_index.data(), n, vocab};
    get_kernel(Op::kScatterTokens, DeviceKind::kCPU, DType::kF32, "ref").fn(&ra, ExecContext{});
    DeviceBuffer<int32_t> d_ids(*dev_, ids), d_dst(*dev_, dst_index), d_src(*dev_, src), d_sidx(*dev_, src_index);
    ScatterTokensArgs ga{d_ids.get(), d_dst.get(), d_src.get(), d_sidx.get(), n, vocab};
    get_kernel(Op::kScatterTokens, DeviceKind::kCUDA, DType::kF32).fn(&ga, ctx_);
    EXPECT_EQ(d_ids.download(), want) << "n " << n;
    for (int32_t v : want) ASSERT_TRUE(v >= 0 && v < vocab);
  }
}

}  // namespace
}  // namespace eli
