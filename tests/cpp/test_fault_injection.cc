// tests/cpp/test_fault_injection.cc: the fault-point registry (runtime/core/fault_injection.h) and
// what the engine guarantees when each point fires, on the CPU with the tiny llama_base checkpoint:
//   - registry: spec parsing, after/times/prob semantics, counters, lists, ELI_FAULTS (test builds);
//   - device_alloc: the pool throws kOutOfMemory and stays consistent; an Engine whose KV cache
//     allocation fails throws kOutOfMemory and the next one works;
//   - preempt_storm: greedy outputs identical to the unarmed run (with and without the prefix
//     cache, chunked prompts longer than the token budget), many preemptions, every block free;
//   - step_oom: every in-flight request ends with one kError, blocks come back, the engine stays
//     healthy and later requests give the reference tokens;
//   - kernel_poison (CPU: a simulated device fault): the engine is dead, in-flight and waiting
//     requests end with kError, new work gets kDevice "engine is dead: ...";
//   - slow_step_ms, and a slow consumer: the loop never waits for a reader.
// Every test disarms what it armed (ScopedFault), so the binary can run them all in one process.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "eli/async_engine.h"
#include "eli/engine.h"
#include "eli/error.h"
#include "runtime/core/fault_injection.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"

namespace eli {
namespace {

EngineConfig tiny_config() {
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_base";
  c.dtype = "float32";
  c.n_threads = 1;
  c.num_kv_blocks = 128;
  c.block_size = 4;
  c.seed = 7;
  return c;
}

SamplingParams greedy(int64_t n) {
  SamplingParams p;
  p.max_tokens = n;
  p.temperature = 0.0;
  p.ignore_eos = true;
  return p;
}

std::vector<int32_t> prompt_of(int i, int len = 0) {
  std::vector<int32_t> p;
  const int n = len > 0 ? len : 3 + i % 5;
  for (int j = 0; j < n; ++j) p.push_back(static_cast<int32_t>(1 + (i * 37 + j * 11) % 250));
  return p;
}

// Runs every request to its end on a synchronous Engine; tokens by request index.
std::vector<std::vector<int32_t>> run_sync(const EngineConfig& c, const std::vector<std::vector<int32_t>>& prompts,
                                           int64_t max_tokens, EngineStats* stats = nullptr) {
  Engine e(c);
  std::map<int64_t, size_t> index;
  for (size_t i = 0; i < prompts.size(); ++i) index[e.add_request(prompts[i], greedy(max_tokens))] = i;
  std::vector<std::vector<int32_t>> out(prompts.size());
  int guard = 0;
  while (e.has_unfinished()) {
    for (const TokenOutput& o : e.step()) {
      EXPECT_NE(o.finish, FinishReason::kError) << o.error;
      if (o.token >= 0) out[index[o.request_id]].push_back(o.token);
    }
    if (++guard > 100000) {
      ADD_FAILURE() << "the engine did not finish (livelock?)";
      break;
    }
  }
  if (stats != nullptr) *stats = e.stats();
  return out;
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
      EXPECT_EQ(o.request_id, id);
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

void expect_all_blocks_free(const EngineStats& s) {
  EXPECT_EQ(s.kv_blocks_free, s.kv_blocks_total);
  EXPECT_EQ(s.num_running, 0);
  EXPECT_EQ(s.num_waiting, 0);
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// ---- the registry ------------------------------------------------------------------------------

TEST(FaultRegistry, ParsesSpecs) {
  FaultSpec s = parse_fault_spec("after=3:times=2,prob=0.25:seed=9:value=40");
  EXPECT_EQ(s.after, 3);
  EXPECT_EQ(s.times, 2);
  EXPECT_DOUBLE_EQ(s.prob, 0.25);
  EXPECT_EQ(s.seed, 9u);
  EXPECT_EQ(s.value, 40);
  FaultSpec d = parse_fault_spec("");
  EXPECT_EQ(d.after, 0);
  EXPECT_EQ(d.times, -1);
  EXPECT_DOUBLE_EQ(d.prob, 1.0);
  EXPECT_EQ(parse_fault_spec("ms=15").value, 15);
  for (const char* bad : {"after=-1", "times=0", "prob=1.5", "prob=x", "after", "bogus=1", "after=1x", "value=-3"}) {
    EXPECT_THROW(parse_fault_spec(bad), Error) << bad;
  }
  EXPECT_EQ(fault_point_from_name("preempt_storm"), FaultPoint::kPreemptStorm);
  try {
    fault_point_from_name("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_TRUE(contains(e.what(), "device_alloc")) << e.what();
  }
  ASSERT_EQ(fault_point_names().size(), static_cast<size_t>(kNumFaultPoints));
  for (int i = 0; i < kNumFaultPoints; ++i) {
    EXPECT_EQ(fault_point_from_name(fault_point_names()[i]), static_cast<FaultPoint>(i));
  }
}

TEST(FaultRegistry, AfterTimesAndCounters) {
  EXPECT_FALSE(fault_fires(FaultPoint::kSlowStep));  // unarmed: never fires, counts nothing
  FaultSpec s;
  s.after = 2;
  s.times = 2;
  s.value = 11;
  ScopedFault f(FaultPoint::kSlowStep, s);
  int64_t v = 0;
  EXPECT_FALSE(fault_fires(FaultPoint::kSlowStep, &v));
  EXPECT_FALSE(fault_fires(FaultPoint::kSlowStep, &v));
  EXPECT_EQ(v, 0);
  EXPECT_TRUE(fault_fires(FaultPoint::kSlowStep, &v));
  EXPECT_EQ(v, 11);
  EXPECT_TRUE(fault_fires(FaultPoint::kSlowStep));
  EXPECT_FALSE(fault_armed(FaultPoint::kSlowStep));  // spent: disarmed itself
  EXPECT_FALSE(fault_fires(FaultPoint::kSlowStep));
  FaultCounts c = fault_counts(FaultPoint::kSlowStep);
  EXPECT_EQ(c.checks, 4);
  EXPECT_EQ(c.fires, 2);
  EXPECT_FALSE(fault_fires(FaultPoint::kStepOom));  // other points untouched
}

TEST(FaultRegistry, ProbabilityIsSeededAndDeterministic) {
  auto pattern = [](uint64_t seed) {
    FaultSpec s;
    s.prob = 0.3;
    s.seed = seed;
    ScopedFault f(FaultPoint::kPreemptStorm, s);
    std::string bits;
    for (int i = 0; i < 2000; ++i) bits += fault_fires(FaultPoint::kPreemptStorm) ? '1' : '0';
    return bits;
  };
  const std::string a = pattern(5), b = pattern(5), c = pattern(6);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  const auto ones = std::count(a.begin(), a.end(), '1');
  EXPECT_GT(ones, 480);
  EXPECT_LT(ones, 720);
  EXPECT_FALSE(fault_armed(FaultPoint::kPreemptStorm));
}

TEST(FaultRegistry, ListsArmAllOrNothing) {
  arm_faults("device_alloc:after=100,times=1; preempt_storm:prob=0.5 , slow_step_ms:ms=3");
  EXPECT_TRUE(fault_armed(FaultPoint::kDeviceAlloc));
  EXPECT_TRUE(fault_armed(FaultPoint::kPreemptStorm));
  EXPECT_TRUE(fault_armed(FaultPoint::kSlowStep));
  EXPECT_FALSE(fault_armed(FaultPoint::kKernelPoison));
  disarm_all_faults();
  for (int i = 0; i < kNumFaultPoints; ++i) EXPECT_FALSE(fault_armed(static_cast<FaultPoint>(i)));
  EXPECT_THROW(arm_faults("step_oom:after=1,nope:after=2"), Error);
  EXPECT_THROW(arm_faults("step_oom:after=1,kernel_poison:after=x"), Error);
  EXPECT_THROW(arm_faults("times=1"), Error);
  EXPECT_FALSE(fault_armed(FaultPoint::kStepOom));  // nothing of a bad list is armed
  arm_fault("step_oom", "after=4");
  EXPECT_TRUE(fault_armed(FaultPoint::kStepOom));
  disarm_fault(FaultPoint::kStepOom);
  EXPECT_FALSE(fault_armed(FaultPoint::kStepOom));
}

// ELI_FAULTS is read once per process, and only by -DELI_FAULT_INJECTION=ON builds: checked in a
// child process (this binary again, running the disabled test below with the variable set).
TEST(FaultRegistry, EnvironmentVariableInTestBuilds) {
  if (!fault_env_enabled()) GTEST_SKIP() << "this build ignores ELI_FAULTS (configure with -DELI_FAULT_INJECTION=ON)";
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  ASSERT_GT(n, 0);
  exe[n] = '\0';
  const std::string base = std::string("'") + exe +
                           "' --gtest_also_run_disabled_tests --gtest_filter=FaultRegistry.DISABLED_EnvChild"
                           " > /dev/null 2>&1";
  EXPECT_EQ(std::system(("ELI_FAULTS='slow_step_ms:value=7:after=2,step_oom:times=1' " + base).c_str()), 0);
  EXPECT_NE(std::system(("ELI_FAULTS='no_such_point' " + base).c_str()), 0);
}

TEST(FaultRegistry, DISABLED_EnvChild) {
  load_faults_from_env();
  load_faults_from_env();  // once: a second call does not re-arm (counters survive)
  ASSERT_TRUE(fault_armed(FaultPoint::kSlowStep));
  ASSERT_TRUE(fault_armed(FaultPoint::kStepOom));
  int64_t v = 0;
  EXPECT_FALSE(fault_fires(FaultPoint::kSlowStep, &v));
  load_faults_from_env();
  EXPECT_FALSE(fault_fires(FaultPoint::kSlowStep, &v));
  EXPECT_TRUE(fault_fires(FaultPoint::kSlowStep, &v));
  EXPECT_EQ(v, 7);
  disarm_all_faults();
}

// ---- device_alloc --------------------------------------------------------------------------------

TEST(FaultDeviceAlloc, PoolThrowsOutOfMemoryAndStaysConsistent) {
  std::unique_ptr<Device> dev = create_cpu_device();
  SizeClassPool& pool = as_pooled(*dev)->pool();
  void* a = dev->allocate(1000);
  dev->free(a);  // cached: the fault fires on cache hits too
  const PoolStats before = pool.stats();
  FaultSpec s;
  s.after = 1;
  s.times = 1;
  ScopedFault f(FaultPoint::kDeviceAlloc, s);
  void* b = dev->allocate(1000);  // check 1: passes
  try {
    dev->allocate(1000);
    FAIL() << "the armed allocation succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory);
    EXPECT_TRUE(contains(e.what(), "out of memory")) << e.what();
    EXPECT_TRUE(contains(e.what(), "injected fault device_alloc")) << e.what();
  }
  void* c = dev->allocate(1000);  // spent: works again
  const PoolStats mid = pool.stats();
  EXPECT_EQ(mid.n_live_blocks, before.n_live_blocks + 2);
  EXPECT_EQ(mid.n_allocs, before.n_allocs + 2);  // the failed call served nothing
  dev->free(b);
  dev->free(c);
  EXPECT_EQ(pool.stats().in_use_bytes, before.in_use_bytes);
  EXPECT_EQ(fault_counts(FaultPoint::kDeviceAlloc).fires, 1);
}

TEST(FaultDeviceAlloc, EngineConstructionFailsCleanlyThenWorks) {
  {
    FaultSpec s;
    s.times = 1;
    ScopedFault f(FaultPoint::kDeviceAlloc, s);
    try {
      Engine e(tiny_config());
      FAIL() << "the engine was built although its first device allocation failed";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory) << e.what();
    }
    EXPECT_EQ(fault_counts(FaultPoint::kDeviceAlloc).fires, 1);
  }
  EngineStats st;
  auto got = run_sync(tiny_config(), {prompt_of(1)}, 6, &st);
  EXPECT_EQ(got[0].size(), 6u);
  expect_all_blocks_free(st);
}

TEST(FaultDeviceAlloc, EveryConstructionAllocationCanFail) {
  int64_t n = 0;  // device allocations a normal construction makes
  {
    FaultSpec count_only;
    count_only.after = int64_t{1} << 40;
    ScopedFault f(FaultPoint::kDeviceAlloc, count_only);
    Engine e(tiny_config());
    n = fault_counts(FaultPoint::kDeviceAlloc).checks;
  }
  ASSERT_GT(n, 0);
  for (int64_t k = 0; k < n; ++k) {
    FaultSpec s;
    s.after = k;
    s.times = 1;
    ScopedFault f(FaultPoint::kDeviceAlloc, s);
    try {
      Engine e(tiny_config());
      ADD_FAILURE() << "allocation " << k << " of " << n << " failed but the engine was built";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory) << k << ": " << e.what();
    }
    EXPECT_EQ(fault_counts(FaultPoint::kDeviceAlloc).fires, 1) << k;
  }
}

// ---- preempt_storm -------------------------------------------------------------------------------

struct StormCase {
  bool prefix_caching;
  int64_t budget;      // max_num_batched_tokens
  double prob;
  const char* name;
};

class FaultPreemptStorm : public ::testing::TestWithParam<StormCase> {};

TEST_P(FaultPreemptStorm, GreedyOutputsUnchangedNoLeaks) {
  const StormCase& k = GetParam();
  EngineConfig c = tiny_config();
  c.enable_prefix_caching = k.prefix_caching;
  c.max_num_batched_tokens = k.budget;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 6; ++i) prompts.push_back(prompt_of(i, i == 2 ? 23 : 0));  // one longer than small budgets
  prompts.push_back(prompts[0]);  // a duplicate: shares prefix-cache blocks with its twin
  EngineStats base_stats, storm_stats;
  const auto want = run_sync(c, prompts, 24, &base_stats);
  std::vector<std::vector<int32_t>> got;
  {
    FaultSpec s;
    s.prob = k.prob;
    s.seed = 3;
    ScopedFault f(FaultPoint::kPreemptStorm, s);
    got = run_sync(c, prompts, 24, &storm_stats);
    EXPECT_GT(fault_counts(FaultPoint::kPreemptStorm).fires, 10);
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << k.name << ": request " << i;
    EXPECT_EQ(got[i].size(), 24u);
  }
  EXPECT_EQ(base_stats.preemptions, 0);
  EXPECT_GT(storm_stats.preemptions, 10) << k.name;
  expect_all_blocks_free(storm_stats);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, FaultPreemptStorm,
    ::testing::Values(StormCase{true, 2048, 1.0, "prefix_cache_every_step"},
                      StormCase{false, 2048, 1.0, "no_prefix_cache_every_step"},
                      StormCase{false, 8, 1.0, "chunked_prompts_over_budget"},
                      StormCase{true, 8, 0.5, "chunked_prefix_cache_half"}),
    [](const ::testing::TestParamInfo<StormCase>& i) { return std::string(i.param.name); });

// ---- step_oom ------------------------------------------------------------------------------------

TEST(FaultStepOom, InFlightRequestsFailEngineGoesOn) {
  const std::vector<std::vector<int32_t>> prompts = {prompt_of(1), prompt_of(2), prompt_of(3)};
  const auto want = run_sync(tiny_config(), prompts, 20);
  AsyncEngine e(tiny_config());
  {
    FaultSpec s;
    s.after = 3;
    s.times = 1;
    ScopedFault f(FaultPoint::kStepOom, s);
    e.pause_after_steps(0);  // all three admitted before any step
    std::vector<int64_t> ids;
    for (const auto& p : prompts) ids.push_back(e.add_request(p, greedy(200)));
    e.pause_after_steps(-1);
    for (int64_t id : ids) {
      Result r = collect(e, id);
      EXPECT_EQ(r.finish, FinishReason::kError);
      EXPECT_EQ(r.n_final, 1);
      EXPECT_EQ(r.tokens.size(), 3u);  // steps 1-3 ran, the 4th failed
      EXPECT_TRUE(contains(r.error, "out of memory")) << r.error;
    }
    EXPECT_EQ(fault_counts(FaultPoint::kStepOom).fires, 1);
  }
  EXPECT_TRUE(e.healthy()) << e.error();
  expect_all_blocks_free(e.stats());
  // The engine goes on and is still right.
  std::vector<int64_t> ids = e.add_requests(prompts, {greedy(20), greedy(20), greedy(20)});
  for (size_t i = 0; i < ids.size(); ++i) {
    Result r = collect(e, ids[i]);
    EXPECT_EQ(r.finish, FinishReason::kLength);
    EXPECT_EQ(r.tokens, want[i]);
  }
  expect_all_blocks_free(e.stats());
  EXPECT_EQ(e.queued_outputs(), 0);
}

TEST(FaultStepOom, AbortEchoIsNeverASecondFinalOutput) {
  // The loop aborts every failed request in the Engine; the Engine's kAbort echo (next step) must
  // not reach the reader, who already got kError. Read only after the echo step has run.
  AsyncEngine e(tiny_config());
  FaultSpec s;
  s.after = 1;
  s.times = 1;
  ScopedFault f(FaultPoint::kStepOom, s);
  const int64_t a = e.add_request(prompt_of(4), greedy(50));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while ((fault_counts(FaultPoint::kStepOom).fires < 1 || e.stats().kv_blocks_free != e.stats().kv_blocks_total) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_EQ(fault_counts(FaultPoint::kStepOom).fires, 1);
  const int64_t b = e.add_request(prompt_of(5), greedy(4));  // forces a step after the failure
  Result rb = collect(e, b);
  EXPECT_EQ(rb.finish, FinishReason::kLength);
  Result ra = collect(e, a);
  EXPECT_EQ(ra.finish, FinishReason::kError);
  EXPECT_EQ(ra.n_final, 1);
  EXPECT_EQ(e.queued_outputs(), 0);
}

// ---- kernel_poison (CPU: simulated) -----------------------------------------------------------

TEST(FaultKernelPoison, CpuEngineDiesAndSaysSo) {
  EngineConfig c = tiny_config();
  c.max_num_seqs = 2;  // the third request is still waiting when the fault hits
  AsyncEngine e(c);
  FaultSpec s;
  s.after = 4;
  auto f = std::make_unique<ScopedFault>(FaultPoint::kKernelPoison, s);
  e.pause_after_steps(0);
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(e.add_request(prompt_of(i), greedy(200)));
  e.pause_after_steps(-1);
  for (int64_t id : ids) {
    Result r = collect(e, id);
    EXPECT_EQ(r.finish, FinishReason::kError) << id;
    EXPECT_EQ(r.n_final, 1);
    EXPECT_TRUE(contains(r.error, "kernel_poison")) << r.error;
  }
  EXPECT_FALSE(e.healthy());
  EXPECT_TRUE(contains(e.error(), "kernel_poison"));
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      if (attempt == 0) e.add_request(prompt_of(9), greedy(3));
      if (attempt == 1) e.score(prompt_of(9));
      FAIL() << "a dead engine took work";
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), ErrorKind::kDevice);
      EXPECT_EQ(std::string(err.what()).rfind(kEngineDeadPrefix, 0), 0u) << err.what();
      EXPECT_TRUE(contains(err.what(), "kernel_poison")) << err.what();
    }
  }
  std::vector<TokenOutput> outs;
  EXPECT_FALSE(e.wait_outputs(&outs, 100));
  // A new engine in the same process works (on the CPU nothing is really broken).
  f.reset();
  AsyncEngine fresh(tiny_config());
  EXPECT_EQ(collect(fresh, fresh.add_request(prompt_of(1), greedy(5))).tokens.size(), 5u);
}

// ---- slow steps and slow consumers ---------------------------------------------------------------

TEST(FaultSlowStep, SleepsBeforeSteps) {
  AsyncEngine e(tiny_config());
  FaultSpec s;
  s.value = 40;
  s.times = 3;
  ScopedFault f(FaultPoint::kSlowStep, s);
  const auto t0 = std::chrono::steady_clock::now();
  Result r = collect(e, e.add_request(prompt_of(2), greedy(5)));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.tokens.size(), 5u);
  EXPECT_GE(ms, 120.0);
  EXPECT_EQ(fault_counts(FaultPoint::kSlowStep).fires, 3);
}

TEST(SlowConsumer, LoopNeverWaitsForAReader) {
  const std::vector<std::vector<int32_t>> prompts = {prompt_of(1), prompt_of(2), prompt_of(3)};
  const auto want = run_sync(tiny_config(), prompts, 60);
  AsyncEngine e(tiny_config());
  std::vector<int64_t> ids = e.add_requests(prompts, {greedy(60), greedy(60), greedy(60)});
  // Requests 1 and 2 are read eagerly; request 0 is not read at all until the others are done.
  std::vector<Result> fast(2);
  std::thread reader([&] {
    for (int k = 0; k < 2; ++k) fast[k] = collect(e, ids[k + 1]);
  });
  reader.join();
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(fast[k].tokens, want[k + 1]);
    EXPECT_EQ(fast[k].finish, FinishReason::kLength);
  }
  // The engine finished the unread request too: its outputs wait in its queue, bounded by max_tokens.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (e.queued_outputs() < 60 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(e.queued_outputs(), 60);
  expect_all_blocks_free(e.stats());  // refreshed before the outputs were published
  Result slow = collect(e, ids[0]);
  EXPECT_EQ(slow.tokens, want[0]);
  EXPECT_EQ(slow.finish, FinishReason::kLength);
  EXPECT_EQ(slow.n_final, 1);
  EXPECT_EQ(e.queued_outputs(), 0);
}

}  // namespace
}  // namespace eli
