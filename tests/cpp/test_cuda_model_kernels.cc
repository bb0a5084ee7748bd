// tests/cpp/test_cuda_model_kernels.cc: the CUDA kernels of the f32 forward pass (GEMV with f32 /
// bf16 weights, GEMM f32 and bf16, RopeKvWrite into an f32 cache with per-token RoPE tables and
// as a plain KV write, GatedAct SiLU / GELU-tanh in f32, f32 Attention) against the CPU "ref" entry
// of the same (op, dtype), on odd shapes, strides and masks; and the whole model on CUDA against
// the CPU engine. (The 16-bit paths: test_cuda_gemm.cc, test_cuda_mixed_elementwise.cc.)
// Skips with "no CUDA device" when the build or the machine has no GPU. Suite names start with
// CudaKernel so that bench/device_run.sh's 'CudaKernel*' filter picks them up.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "eli/engine.h"
#include "eli/error.h"
#include "kernels/ops.h"
#include "kernels/ref/float_convert.h"
#include "kernels/registry.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"
#include "tests/cpp/device_test_util.h"

namespace eli {
namespace {

std::vector<float> rnd(size_t n, std::mt19937& rng, float lo = -1.f, float hi = 1.f) {
  return random_floats(n, rng, lo, hi);
}

class CudaKernelOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    dev_ = create_cuda_device(0);
    ctx_.stream = dev_->default_stream().native();
  }
  const KernelEntry& cuda(Op op, DType dt) { return get_kernel(op, DeviceKind::kCUDA, dt); }
  const KernelEntry& ref(Op op, DType dt) { return get_kernel(op, DeviceKind::kCPU, dt, "ref"); }
  std::unique_ptr<Device> dev_;
  ExecContext ctx_;
  std::mt19937 rng_{11};
};

// The products of the f32 path: GEMV (f32 x; f32 or bf16 weights) at decode row counts, GEMM past
// them (f32 x and weights; bf16 x and weights, as cuBLASLt takes them), with bias and accumulate.
TEST_F(CudaKernelOps, GemvAndGemmMatchRef) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (int64_t m : {1, 3, 8, 9, 70}) {
      for (int64_t k : {64, 67}) {
        for (bool acc : {false, true}) {
          const int64_t n = 131, xs = k + 5, os = n + 3;
          const bool gemv = m <= kGemvMaxRows;
          std::vector<float> x = rnd(m * xs, rng_), wf = rnd(n * k, rng_), bias = rnd(n, rng_);
          std::vector<float> out = rnd(m * os, rng_);
          std::vector<uint16_t> wb(wf.size()), xb(x.size());
          for (size_t i = 0; i < wf.size(); ++i) wb[i] = f32_to_bf16(wf[i]);
          for (size_t i = 0; i < x.size(); ++i) xb[i] = f32_to_bf16(x[i]);
          DeviceBuffer<float> dx(*dev_, x), dwf(*dev_, wf), db(*dev_, bias), dout(*dev_, out);
          DeviceBuffer<uint16_t> dwb(*dev_, wb), dxb(*dev_, xb);
          const bool b16 = dt == DType::kBF16;
          const void* hw = b16 ? static_cast<const void*>(wb.data()) : wf.data();
          const void* dw = b16 ? static_cast<const void*>(dwb.get()) : dwf.get();
          if (gemv) {
            GemvArgs h{out.data(), x.data(), hw, bias.data(), nullptr, m, n, k, os, xs};
            h.accumulate = acc;
            GemvArgs d = h;
            d.out = dout.get();
            d.x = dx.get();
            d.w = dw;
            d.bias = db.get();
            ref(Op::kGemv, dt).fn(&h, ExecContext{});
            cuda(Op::kGemv, dt).fn(&d, ctx_);
          } else {
            // cuBLASLt takes x in the weights' dtype: bf16 weights get bf16 x (both sides).
            GemmArgs h{out.data(), b16 ? static_cast<const void*>(xb.data()) : x.data(), hw, bias.data(), m, n, k, os, xs};
            h.x_dtype = dt;
            h.out_dtype = DType::kF32;
            h.accumulate = acc;
            GemmArgs d = h;
            d.out = dout.get();
            d.x = b16 ? static_cast<const void*>(dxb.get()) : dx.get();
            d.w = dw;
            d.bias = db.get();
            ref(Op::kGemm, dt).fn(&h, ExecContext{});
            cuda(Op::kGemm, dt).fn(&d, ctx_);
          }
          expect_close(dout.download(), out, 1e-5f, 1e-5f,
                       std::string(gemv ? "gemv " : "gemm ") + dtype_name(dt) + " m=" + std::to_string(m) +
                           " k=" + std::to_string(k) + " acc=" + std::to_string(acc));
        }
      }
    }
  }
}

// RopeKvWrite into an f32 cache (the f32 path's) with q/k RoPE from per-token tables (two tables,
// as Gemma's local / global layers or LongRoPE's short / long factors) and attention scaling.
TEST_F(CudaKernelOps, RopeKvWriteF32TablesMatchRef) {
  const int64_t T = 5, nh = 3, nkv = 1, hd = 16, stride = (nh + 2 * nkv) * hd + 8, n_slots = 12;
  for (int64_t rot : {16, 8}) {
    for (bool tables : {false, true}) {
      std::vector<float> qkv = rnd(T * stride, rng_, -2.f, 2.f);
      std::vector<int32_t> pos = {0, 1, 7, 300, 4095}, slots = {3, -1, 0, 11, 12};  // -1, 12: skipped
      std::vector<float> inv = rnd(2 * rot / 2, rng_, 0.f, 1.f);
      std::vector<int32_t> tok = {0, 1, 1, 0, 1};
      std::vector<float> q(T * nh * hd, 5.f), kc = rnd(n_slots * nkv * hd, rng_), vc = rnd(n_slots * nkv * hd, rng_);
      DeviceBuffer<float> dqkv(*dev_, qkv), dinv(*dev_, inv), dq(*dev_, q), dkc(*dev_, kc), dvc(*dev_, vc);
      DeviceBuffer<int32_t> dpos(*dev_, pos), dslots(*dev_, slots), dtok(*dev_, tok);
      RopeKvWriteArgs h{};
      h.q_out = q.data();
      h.k_cache = kc.data();
      h.v_cache = vc.data();
      h.qkv = qkv.data();
      h.positions = pos.data();
      h.slot_mapping = slots.data();
      h.inv_freq = inv.data();
      h.table_of_token = tables ? tok.data() : nullptr;
      h.n_tokens = T;
      h.n_heads = nh;
      h.n_kv_heads = nkv;
      h.head_dim = hd;
      h.rot_dim = rot;
      h.qkv_stride = stride;
      h.n_slots = n_slots;
      h.attention_scaling = 1.25f;
      h.norm_eps = 1e-6f;
      h.q_dtype = DType::kF32;
      RopeKvWriteArgs d = h;
      d.q_out = dq.get();
      d.k_cache = dkc.get();
      d.v_cache = dvc.get();
      d.qkv = dqkv.get();
      d.positions = dpos.get();
      d.slot_mapping = dslots.get();
      d.inv_freq = dinv.get();
      d.table_of_token = tables ? dtok.get() : nullptr;
      ref(Op::kRopeKvWrite, DType::kF32).fn(&h, ExecContext{});
      cuda(Op::kRopeKvWrite, DType::kF32).fn(&d, ctx_);
      const std::string what = "rope_kv_write f32 rot=" + std::to_string(rot) + " tables=" + std::to_string(tables);
      expect_close(dq.download(), q, 1e-6f, 1e-6f, what + " q");
      expect_close(dkc.download(), kc, 1e-6f, 1e-6f, what + " k cache");
      expect_close(dvc.download(), vc, 0.f, 0.f, what + " v cache");
    }
  }
}

TEST_F(CudaKernelOps, GatedActF32MatchesRef) {
  const int64_t rows = 7, inter = 37, in_stride = 2 * inter + 3, out_stride = inter + 1;
  for (GatedAct act : {GatedAct::kSilu, GatedAct::kGeluTanh}) {
    std::vector<float> gu = rnd(rows * in_stride, rng_, -6.f, 6.f), out = rnd(rows * out_stride, rng_);
    gu[0] = -30.f;  // far tails: exp overflow (SiLU), saturated tanh (GELU)
    gu[1] = 30.f;
    DeviceBuffer<float> dgu(*dev_, gu), dout(*dev_, out);
    GatedActArgs h{out.data(), gu.data(), rows, inter, out_stride, in_stride, DType::kF32, act};
    GatedActArgs d{dout.get(), dgu.get(), rows, inter, out_stride, in_stride, DType::kF32, act};
    ref(Op::kGatedAct, DType::kF32).fn(&h, ExecContext{});
    cuda(Op::kGatedAct, DType::kF32).fn(&d, ctx_);
    // GELU: 1 + tanhf(z) cancels for negative gates; its absolute error (a few f32 ulps of 1,
    // times 0.5 |gate| |up| <= 18) is what the atol covers.
    expect_close(dout.download(), out, 1e-6f, act == GatedAct::kGeluTanh ? 2e-5f : 1e-6f,
                 std::string("gated_act f32 ") + gated_act_name(act));
  }
}

// RopeKvWrite without rotary dims or norms is the f32 path's KV write: bit-exact copies into the
// cache slots, skipped slots (negative, past the cache) untouched.
TEST_F(CudaKernelOps, RopeKvWriteAsKvWriteMatchesRef) {
  const int64_t NB = 3, B = 4, nh = 1, nkv = 2, hd = 8, T = 5, stride = 40;
  std::vector<float> kc = rnd(NB * B * nkv * hd, rng_), vc = rnd(NB * B * nkv * hd, rng_);
  std::vector<float> qkv = rnd(T * stride, rng_), q(T * nh * hd, 3.f);
  std::vector<int32_t> slots = {0, 5, -1, 11, 12}, pos = {0, 1, 2, 3, 4};  // -1 and 12 (>= n_slots) are skipped
  DeviceBuffer<float> dkc(*dev_, kc), dvc(*dev_, vc), dqkv(*dev_, qkv), dq(*dev_, q);
  DeviceBuffer<int32_t> ds(*dev_, slots), dpos(*dev_, pos);
  RopeKvWriteArgs h{};
  h.q_out = q.data();
  h.k_cache = kc.data();
  h.v_cache = vc.data();
  h.qkv = qkv.data();
  h.positions = pos.data();
  h.slot_mapping = slots.data();
  h.n_tokens = T;
  h.n_heads = nh;
  h.n_kv_heads = nkv;
  h.head_dim = hd;
  h.rot_dim = 0;
  h.qkv_stride = stride;
  h.n_slots = NB * B;
  h.attention_scaling = 1.f;
  h.q_dtype = DType::kF32;
  RopeKvWriteArgs d = h;
  d.q_out = dq.get();
  d.k_cache = dkc.get();
  d.v_cache = dvc.get();
  d.qkv = dqkv.get();
  d.positions = dpos.get();
  d.slot_mapping = ds.get();
  ref(Op::kRopeKvWrite, DType::kF32).fn(&h, ExecContext{});
  cuda(Op::kRopeKvWrite, DType::kF32).fn(&d, ctx_);
  expect_close(dkc.download(), kc, 0.f, 0.f, "kv_write k");
  expect_close(dvc.download(), vc, 0.f, 0.f, "kv_write v");
  expect_close(dq.download(), q, 0.f, 0.f, "kv_write q");
}

TEST_F(CudaKernelOps, AttentionMatchesRef) {
  // Two sequences: a 6-token prefill chunk after 3 cached tokens, and one decode token at position
  // 40; GQA 4/2, head_dim 80 (not a multiple of 32), windows off / on.
  const int64_t nh = 4, nkv = 2, hd = 80, B = 4, NB = 16, mbps = 11;
  const int64_t qs = nh * hd + 16, os = nh * hd + 4;
  std::vector<int32_t> cu = {0, 6, 7}, ctx_lens = {9, 41}, pos = {3, 4, 5, 6, 7, 8, 40};
  std::vector<int32_t> tables(2 * mbps, 0);
  for (int64_t j = 0; j < 3; ++j) tables[j] = static_cast<int32_t>(15 - j);
  for (int64_t j = 0; j < mbps; ++j) tables[mbps + j] = static_cast<int32_t>(j);
  const int64_t T = 7;
  std::vector<float> q = rnd(T * qs, rng_, -2.f, 2.f);
  std::vector<float> kc = rnd(NB * B * nkv * hd, rng_, -2.f, 2.f), vc = rnd(NB * B * nkv * hd, rng_);
  DeviceBuffer<float> dq(*dev_, q), dkc(*dev_, kc), dvc(*dev_, vc);
  DeviceBuffer<int32_t> dcu(*dev_, cu), dctx(*dev_, ctx_lens), dpos(*dev_, pos), dtab(*dev_, tables);
  for (int64_t window : {0, 3, 100}) {
    std::vector<float> out = rnd(T * os, rng_);
    DeviceBuffer<float> dout(*dev_, out);
    const float scale = 1.f / std::sqrt(static_cast<float>(hd));
    AttentionArgs h{out.data(), q.data(), kc.data(), vc.data(), cu.data(), pos.data(), ctx_lens.data(),
                    tables.data(), 2, nh, nkv, hd, B, mbps, qs, os, window, scale};
    AttentionArgs d{dout.get(), dq.get(), dkc.get(), dvc.get(), dcu.get(), dpos.get(), dctx.get(), dtab.get(), 2, nh, nkv, hd,
                    B, mbps, qs, os, window, scale};
    ref(Op::kAttention, DType::kF32).fn(&h, ExecContext{});
    cuda(Op::kAttention, DType::kF32).fn(&d, ctx_);
    expect_close(dout.download(), out, 1e-5f, 1e-5f, "attention window=" + std::to_string(window));
  }
}

// The whole model: CUDA f32 logits against the CPU engine's (same weights, same math up to the
// summation order).
TEST_F(CudaKernelOps, EngineScoreMatchesCpu) {
  const std::string model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_base";
  std::vector<int32_t> ids;
  for (int i = 0; i < 37; ++i) ids.push_back((i * 7 + 3) % 100);
  EngineConfig c;
  c.model = model;
  c.dtype = "float32";
  c.num_kv_blocks = 64;
  c.device = "cpu";
  std::vector<float> want = Engine(c).score(ids);
  c.device = "cuda";
  // An absolute budget: bench/device_sanitize.sh runs several tools side by side on one GPU.
  c.gpu_memory_bytes = uint64_t{1} << 30;
  std::vector<float> got = Engine(c).score(ids);
  expect_close(got, want, 1e-4f, 1e-4f, "llama_base score");
}

// Runs everywhere: asking for CUDA where it cannot run is a typed error (kNotCompiled in a CPU-only
// build, kDevice without a GPU); on a GPU, float16 weights run with an f16 KV cache, and an f16
// model with a bf16 cache is refused as unsupported.
TEST(CudaKernelEngineSelection, TypedErrors) {
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_base";
  c.num_kv_blocks = 8;
  c.device = "cuda";
  if (!cuda_compiled() || cuda_device_count() == 0) {
    const ErrorKind want = cuda_compiled() ? ErrorKind::kDevice : ErrorKind::kNotCompiled;
    try {
      Engine e(c);
      FAIL() << "device=cuda was accepted without a usable GPU";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), want) << e.what();
    }
    return;
  }
  c.dtype = "float16";
  c.gpu_memory_bytes = uint64_t{1} << 30;  // an absolute budget, as above (sanitizers side by side)
  {
    Engine e(c);
    EXPECT_EQ(e.info().kv_cache_dtype, "f16");
  }
  c.kv_cache_dtype = "bfloat16";
  try {
    Engine e(c);
    FAIL() << "float16 weights with a bfloat16 KV cache were accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported) << e.what();
  }
}

}  // namespace
}  // namespace eli
