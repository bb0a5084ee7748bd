// tests/cpp/test_cuda_model_kernels.cc: the CUDA kernels of the model's forward pass (Matmul f32 /
// bf16, Rope, Swiglu, KvWrite, Attention) against the CPU "ref" entry of the same (op, dtype), on
// odd shapes, strides and masks; and the whole model on CUDA against the CPU engine.
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

TEST_F(CudaKernelOps, MatmulMatchesRef) {
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (int64_t m : {1, 3, 8, 9, 70}) {
      for (int64_t k : {64, 67}) {
        for (bool acc : {false, true}) {
          const int64_t n = 131, xs = k + 5, os = n + 3;
          std::vector<float> x = rnd(m * xs, rng_), wf = rnd(n * k, rng_), bias = rnd(n, rng_);
          std::vector<float> out = rnd(m * os, rng_);
          std::vector<uint16_t> wb(wf.size());
          for (size_t i = 0; i < wf.size(); ++i) wb[i] = f32_to_bf16(wf[i]);
          DeviceBuffer<float> dx(*dev_, x), dwf(*dev_, wf), db(*dev_, bias), dout(*dev_, out);
          DeviceBuffer<uint16_t> dwb(*dev_, wb);
          const void* hw = dt == DType::kF32 ? static_cast<const void*>(wf.data()) : wb.data();
          const void* dw = dt == DType::kF32 ? static_cast<const void*>(dwf.get()) : dwb.get();
          MatmulArgs h{out.data(), x.data(), hw, bias.data(), m, n, k, os, xs, acc};
          MatmulArgs d{dout.get(), dx.get(), dw, db.get(), m, n, k, os, xs, acc};
          ref(Op::kMatmul, dt).fn(&h, ExecContext{});
          cuda(Op::kMatmul, dt).fn(&d, ctx_);
          expect_close(dout.download(), out, 1e-5f, 1e-5f,
                          std::string("matmul ") + dtype_name(dt) + " m=" + std::to_string(m) + " k=" +
                              std::to_string(k) + " acc=" + std::to_string(acc));
        }
      }
    }
  }
}

TEST_F(CudaKernelOps, RopeMatchesRef) {
  const int64_t T = 5, nh = 3, hd = 16, stride = nh * hd + 8;
  for (int64_t rot : {16, 8}) {
    for (bool tables : {false, true}) {
      std::vector<float> x = rnd(T * stride, rng_, -2.f, 2.f);
      std::vector<int32_t> pos = {0, 1, 7, 300, 4095};
      std::vector<float> inv = rnd(2 * rot / 2, rng_, 0.f, 1.f);
      std::vector<int32_t> tok = {0, 1, 1, 0, 1};
      DeviceBuffer<float> dx(*dev_, x), dinv(*dev_, inv);
      DeviceBuffer<int32_t> dpos(*dev_, pos), dtok(*dev_, tok);
      RopeArgs h{x.data(), pos.data(), inv.data(), tables ? tok.data() : nullptr, T, nh, hd, rot, stride, 1.25f};
      RopeArgs d{dx.get(), dpos.get(), dinv.get(), tables ? dtok.get() : nullptr, T, nh, hd, rot, stride, 1.25f};
      ref(Op::kRope, DType::kF32).fn(&h, ExecContext{});
      cuda(Op::kRope, DType::kF32).fn(&d, ctx_);
      expect_close(dx.download(), x, 1e-6f, 1e-6f, "rope rot=" + std::to_string(rot));
    }
  }
}

TEST_F(CudaKernelOps, SwigluMatchesRef) {
  const int64_t rows = 7, inter = 37, in_stride = 2 * inter + 3, out_stride = inter + 1;
  std::vector<float> gu = rnd(rows * in_stride, rng_, -6.f, 6.f), out = rnd(rows * out_stride, rng_);
  DeviceBuffer<float> dgu(*dev_, gu), dout(*dev_, out);
  SwigluArgs h{out.data(), gu.data(), rows, inter, out_stride, in_stride};
  SwigluArgs d{dout.get(), dgu.get(), rows, inter, out_stride, in_stride};
  ref(Op::kSwiglu, DType::kF32).fn(&h, ExecContext{});
  cuda(Op::kSwiglu, DType::kF32).fn(&d, ctx_);
  expect_close(dout.download(), out, 1e-6f, 1e-6f, "swiglu");
}

TEST_F(CudaKernelOps, KvWriteMatchesRef) {
  const int64_t NB = 3, B = 4, nkv = 2, hd = 8, T = 5, stride = 40;
  std::vector<float> kc = rnd(NB * B * nkv * hd, rng_), vc = rnd(NB * B * nkv * hd, rng_);
  std::vector<float> k = rnd(T * stride, rng_), v = rnd(T * stride, rng_);
  std::vector<int32_t> slots = {0, 5, -1, 11, 12};  // -1 and 12 (>= n_slots) are skipped
  DeviceBuffer<float> dkc(*dev_, kc), dvc(*dev_, vc), dk(*dev_, k), dv(*dev_, v);
  DeviceBuffer<int32_t> ds(*dev_, slots);
  KvWriteArgs h{kc.data(), vc.data(), k.data(), v.data(), slots.data(), T, nkv, hd, stride, stride, NB * B};
  KvWriteArgs d{dkc.get(), dvc.get(), dk.get(), dv.get(), ds.get(), T, nkv, hd, stride, stride, NB * B};
  ref(Op::kKvWrite, DType::kF32).fn(&h, ExecContext{});
  cuda(Op::kKvWrite, DType::kF32).fn(&d, ctx_);
  expect_close(dkc.download(), kc, 0.f, 0.f, "kv_write k");
  expect_close(dvc.download(), vc, 0.f, 0.f, "kv_write v");
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
