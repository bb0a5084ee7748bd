// tests/cpp/test_cuda_fault.cc: fault points on a real CUDA engine (skipped without a GPU):
//   - device_alloc during a step (a workspace growth fails as cudaMalloc would): the request ends
//     with kError, the engine stays healthy with every KV block free, and later requests give the
//     tokens of a fresh engine (no buffer is left dangling by the failed growth); skipped when the
//     engine reserved every workspace at construction (then no step allocates);
//   - device_alloc during construction: kOutOfMemory, and the device's free memory comes back;
//   - kernel_poison: an illegal-address kernel breaks the CUDA context; in a child process (gtest's
//     "threadsafe" death-test style re-executes this binary) the engine reports itself dead, every
//     request in flight or waiting ends with kError, new work gets kDevice "engine is dead: ...",
//     and destroying the engine on the broken context does not crash.
// Named CudaFault*, not CudaKernel*: bench/device_sanitize.sh must not run these under the sanitizers.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "eli/async_engine.h"
#include "eli/error.h"
#include "runtime/core/fault_injection.h"
#include "runtime/device/device.h"

namespace eli {
namespace {

EngineConfig cuda_config() {
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_base";
  c.device = "cuda";
  c.num_kv_blocks = 64;
  c.block_size = 16;
  c.max_num_seqs = 2;
  c.seed = 3;
  return c;
}

SamplingParams greedy(int64_t n) {
  SamplingParams p;
  p.max_tokens = n;
  p.temperature = 0.0;
  p.ignore_eos = true;
  return p;
}

std::vector<int32_t> prompt_of(int seed, int len) {
  std::vector<int32_t> p;
  for (int j = 0; j < len; ++j) p.push_back(static_cast<int32_t>(3 + (seed * 53 + j * 29) % 250));
  return p;
}

struct Result {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kNone;
  std::string error;
  int n_final = 0;
};

Result collect(AsyncEngine& e, int64_t id) {
  Result r;
  std::vector<TokenOutput> outs;
  while (e.wait_request_outputs({id}, &outs, 1000)) {
    for (const TokenOutput& o : outs) {
      if (o.token >= 0) r.tokens.push_back(o.token);
      if (o.finish != FinishReason::kNone) {
        r.finish = o.finish;
        r.error = o.error;
        ++r.n_final;
      }
    }
    outs.clear();
  }
  return r;
}

TEST(CudaFault, DeviceAllocFailureEndsRequestEngineGoesOn) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const std::vector<int32_t> small = prompt_of(1, 5), big = prompt_of(2, 150);
  std::vector<int32_t> want_big, want_small;
  {
    AsyncEngine ref(cuda_config());
    want_big = collect(ref, ref.add_request(big, greedy(8))).tokens;
    want_small = collect(ref, ref.add_request(small, greedy(8))).tokens;
  }
  AsyncEngine e(cuda_config());
  ASSERT_EQ(collect(e, e.add_request(small, greedy(4))).tokens.size(), 4u);  // warm, small workspaces
  Result failed;
  {
    FaultSpec s;
    s.times = 1;
    ScopedFault f(FaultPoint::kDeviceAlloc, s);
    failed = collect(e, e.add_request(big, greedy(8)));  // a larger step: the workspaces grow
    if (fault_counts(FaultPoint::kDeviceAlloc).fires == 0) {
      GTEST_SKIP() << "no device allocation happened during a step (workspaces reserved up front)";
    }
  }
  EXPECT_EQ(failed.finish, FinishReason::kError);
  EXPECT_EQ(failed.n_final, 1);
  EXPECT_NE(failed.error.find("out of memory"), std::string::npos) << failed.error;
  EXPECT_TRUE(e.healthy()) << e.error();
  EngineStats st = e.stats();
  EXPECT_EQ(st.kv_blocks_free, st.kv_blocks_total);
  // The engine goes on, and right: small first (a buffer left dangling by the failed growth would
  // be reused here), then the big one again, then small.
  EXPECT_EQ(collect(e, e.add_request(small, greedy(8))).tokens, want_small);
  EXPECT_EQ(collect(e, e.add_request(big, greedy(8))).tokens, want_big);
  EXPECT_EQ(collect(e, e.add_request(small, greedy(8))).tokens, want_small);
  st = e.stats();
  EXPECT_EQ(st.kv_blocks_free, st.kv_blocks_total);
}

// A failed construction gives back every byte: each allocation of the construction is made to
// fail in turn. Either the construction fails with kOutOfMemory, or the allocation was one the
// engine can do without (a pinned staging buffer: the upload degrades to fewer buffers) and the
// engine it built decodes the same tokens; afterwards the device's free memory is where it was.
TEST(CudaFault, DeviceAllocDuringConstructionLeaksNothing) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  std::unique_ptr<Device> probe = create_cuda_device(0);
  int64_t n = 0;
  std::vector<int32_t> want;
  {
    AsyncEngine warm(cuda_config());  // first-use costs (context, cuBLASLt) are paid before measuring
    want = collect(warm, warm.add_request(prompt_of(1, 5), greedy(2))).tokens;
    ASSERT_EQ(want.size(), 2u);
  }
  const uint64_t before = probe->available_bytes();
  {
    FaultSpec count_only;
    count_only.after = int64_t{1} << 40;
    ScopedFault f(FaultPoint::kDeviceAlloc, count_only);
    Engine e(cuda_config());
    n = fault_counts(FaultPoint::kDeviceAlloc).checks;
  }
  ASSERT_GT(n, 0);
  int64_t refused = 0;
  for (int64_t k = 0; k < n; ++k) {
    std::unique_ptr<AsyncEngine> built;
    {
      FaultSpec s;
      s.after = k;
      s.times = 1;
      ScopedFault f(FaultPoint::kDeviceAlloc, s);
      try {
        built = std::make_unique<AsyncEngine>(cuda_config());
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory) << k << ": " << e.what();
        ++refused;
      }
    }
    if (built) EXPECT_EQ(collect(*built, built->add_request(prompt_of(1, 5), greedy(2))).tokens, want) << k;
  }
  EXPECT_GT(refused, 0) << "no failed allocation of " << n << " failed the construction";
  const uint64_t after = probe->available_bytes();
  EXPECT_LE(before, after + (uint64_t{64} << 20)) << "free device memory " << before << " -> " << after;
  AsyncEngine e(cuda_config());
  EXPECT_EQ(collect(e, e.add_request(prompt_of(2, 5), greedy(4))).tokens.size(), 4u);
}

// Runs in the death-test child: exits 0 only when every check held (messages on stderr).
void poison_scenario() {
  auto fail = [](const std::string& why) {
    std::fprintf(stderr, "poison scenario FAILED: %s\n", why.c_str());
    std::fflush(stderr);
    std::_Exit(1);
  };
  auto e = std::make_unique<AsyncEngine>(cuda_config());
  e->pause_after_steps(0);
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(e->add_request(prompt_of(i, 6), greedy(100)));  // one waits
  FaultSpec s;
  s.after = 3;
  arm_fault(FaultPoint::kKernelPoison, s);
  e->pause_after_steps(-1);
  for (int64_t id : ids) {
    Result r = collect(*e, id);
    if (r.finish != FinishReason::kError || r.n_final != 1 || r.error.empty()) {
      fail("request " + std::to_string(id) + " ended with " + finish_reason_name(r.finish) + " (" + r.error + ")");
    }
    std::fprintf(stderr, "request %lld: error: %s\n", static_cast<long long>(id), r.error.c_str());
  }
  if (fault_counts(FaultPoint::kKernelPoison).fires != 1) fail("the poison kernel did not run exactly once");
  if (e->healthy()) fail("the engine says it is healthy");
  try {
    e->add_request(prompt_of(9, 4), greedy(2));
    fail("a dead engine took a request");
  } catch (const Error& err) {
    if (err.kind() != ErrorKind::kDevice || std::string(err.what()).rfind(kEngineDeadPrefix, 0) != 0) {
      fail(std::string("wrong refusal: ") + err.what());
    }
  }
  disarm_all_faults();
  std::fprintf(stderr, "engine dead as expected: %s\n", e->error().c_str());
  e.reset();  // destructors on a broken context: must not throw or crash
  std::fprintf(stderr, "poison scenario ok\n");
  std::fflush(stderr);
  std::_Exit(0);
}

TEST(CudaFault, KernelPoisonKillsTheEngine) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process: the parent's context stays good
  EXPECT_EXIT(poison_scenario(), ::testing::ExitedWithCode(0), "poison scenario ok");
}

}  // namespace
}  // namespace eli
