// tests/cpp/device_test_util.h: helpers shared by the device (CUDA) kernel tests: a device buffer
// that frees itself, seeded random data, an element-wise closeness check that reports the first
// few mismatches, a fixture base holding the GPU, a typed-error expectation, and the pieces of the
// tests that run a tiny fixture model on CUDA against the CPU engine (config, prompts, greedy
// decoding, the logit gap). Uses only the Device and Engine APIs, so it compiles in every build.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "eli/engine.h"
#include "eli/error.h"
#include "kernels/ops.h"
#include "runtime/device/device.h"

namespace eli {

// A device buffer of n T's; filled from / read back to host vectors.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer(Device& dev, size_t n)
      : dev_(dev), n_(n), p_(static_cast<T*>(dev.allocate(std::max<size_t>(1, n) * sizeof(T)))) {}
  DeviceBuffer(Device& dev, const std::vector<T>& host) : DeviceBuffer(dev, host.size()) { upload(host); }
  ~DeviceBuffer() { dev_.free(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<T>& host) {
    if (!host.empty()) dev_.copy_host_to_device(p_, host.data(), host.size() * sizeof(T));
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    if (n_) dev_.copy_device_to_host(host.data(), p_, n_ * sizeof(T));
    return host;
  }
  T* get() const { return p_; }

 private:
  Device& dev_;
  size_t n_;
  T* p_;
};

inline std::vector<float> random_floats(size_t n, std::mt19937& rng, float lo = -2.f, float hi = 2.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// |got - want| <= atol + rtol * |want| for every element.
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want, float rtol, float atol,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= atol + rtol * std::fabs(want[i]))) {
      if (++bad <= 3) ADD_FAILURE() << what << ": [" << i << "] got " << got[i] << " want " << want[i];
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

// The base of a CUDA kernel test fixture with parameter P: skips without a GPU, else holds device 0
// and an ExecContext on its default stream.
template <typename P>
class CudaParamTest : public ::testing::TestWithParam<P> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    dev_ = create_cuda_device(0);
    ctx_.stream = dev_->default_stream().native();
  }

  std::unique_ptr<Device> dev_;
  ExecContext ctx_;
};

// f() must throw an eli::Error of `kind`; `accepted` is the failure reported when it throws nothing.
template <typename F>
void expect_error_kind(F&& f, ErrorKind kind, const std::string& accepted) {
  try {
    f();
    ADD_FAILURE() << accepted;
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), kind) << err.what();
  }
}

// ---- a tiny fixture model on CUDA against the CPU engine ----------------------------------------

// `model` in f32 on the CPU with 2 threads and 32 KV blocks of 8 tokens.
inline EngineConfig tiny_engine_config(const std::string& model) {
  EngineConfig c;
  c.model = model;
  c.dtype = "float32";
  c.n_threads = 2;
  c.num_kv_blocks = 32;
  c.block_size = 8;
  c.device = "cpu";
  return c;
}

// The prompts scored on both engines: 13 tokens (prefill: the GEMM route) and 3 (the GEMV route).
inline std::vector<std::vector<int32_t>> engine_test_prompts() {
  return {std::vector<int32_t>{3, 17, 42, 9, 60, 1, 33, 7, 21, 50, 11, 5, 28}, std::vector<int32_t>{8, 2, 40}};
}

// The tokens of `max_tokens` greedy steps after `prompt` (temperature 0, EOS ignored); every
// output must be free of errors.
inline std::vector<int32_t> greedy_tokens(Engine& e, const std::vector<int32_t>& prompt, int max_tokens) {
  SamplingParams p;
  p.max_tokens = max_tokens;
  p.temperature = 0.0;
  p.ignore_eos = true;
  e.add_request(prompt, p);
  std::vector<int32_t> out;
  while (e.has_unfinished()) {
    for (const TokenOutput& o : e.step()) {
      EXPECT_NE(o.finish, FinishReason::kError) << o.error;
      if (o.token >= 0) out.push_back(o.token);
    }
  }
  return out;
}

// Over logits `got` and `want` (the same size): worst = max |got - want| (a NaN sticks, where
// std::max would drop it), scale = max |want|.
struct LogitGap {
  double worst = 0.0, scale = 0.0;
};
inline LogitGap logit_gap(const std::vector<float>& got, const std::vector<float>& want) {
  LogitGap g;
  for (size_t i = 0; i < got.size(); ++i) {
    g.scale = std::max(g.scale, static_cast<double>(std::fabs(want[i])));
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    g.worst = d <= g.worst ? g.worst : d;
  }
  return g;
}

}  // namespace eli
