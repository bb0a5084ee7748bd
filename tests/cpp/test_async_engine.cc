// tests/cpp/test_async_engine.cc: AsyncEngine (include/eli/async_engine.h) on the tiny llama_base
// checkpoint: concurrent submitters give the synchronous Engine's greedy tokens, aborts at every
// phase (queued, mid-prefill, mid-decode) end with kAbort and free every block, admission errors
// reach the caller, an injected step fault fails every request, shutdown ends requests in flight.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>

#include "eli/async_engine.h"
#include "eli/engine.h"
#include "eli/error.h"

namespace eli {
namespace {

EngineConfig async_config() {
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

std::vector<int32_t> prompt_of(int i) {
  std::vector<int32_t> p;
  for (int j = 0; j < 3 + i % 5; ++j) p.push_back(static_cast<int32_t>(1 + (i * 37 + j * 11) % 250));
  return p;
}

struct Result {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kNone;
  std::string error;
  int n_final = 0;
};

// Reads one request's outputs until its final one.
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

void expect_all_blocks_free(const AsyncEngine& e) {
  EngineStats s = e.stats();
  EXPECT_EQ(s.kv_blocks_free, s.kv_blocks_total);
  EXPECT_EQ(s.num_running, 0);
  EXPECT_EQ(s.num_waiting, 0);
}

TEST(AsyncEngineTest, ConcurrentSubmittersMatchSyncEngine) {
  constexpr int kThreads = 4, kPerThread = 3;
  std::map<int, std::vector<int32_t>> want;
  {
    Engine sync(async_config());
    std::map<int64_t, int> by_id;
    for (int i = 0; i < kThreads * kPerThread; ++i) by_id[sync.add_request(prompt_of(i), greedy(10 + i % 4))] = i;
    while (sync.has_unfinished()) {
      for (const TokenOutput& o : sync.step()) want[by_id[o.request_id]].push_back(o.token);
    }
  }
  AsyncEngine e(async_config());
  std::vector<Result> got(kThreads * kPerThread);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::pair<int, int64_t>> mine;
      for (int k = 0; k < kPerThread; ++k) {
        const int i = t * kPerThread + k;
        mine.emplace_back(i, e.add_request(prompt_of(i), greedy(10 + i % 4)));
      }
      for (auto& [i, id] : mine) got[i] = collect(e, id);
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    EXPECT_EQ(got[i].tokens, want[i]) << "request " << i;
    EXPECT_EQ(got[i].finish, FinishReason::kLength);
    EXPECT_EQ(got[i].n_final, 1);
  }
  EXPECT_TRUE(e.healthy());
  EXPECT_GT(e.steps(), 0);
  expect_all_blocks_free(e);
}

TEST(AsyncEngineTest, GlobalWaitDeliversEveryOutputOnce) {
  AsyncEngine e(async_config());
  std::vector<int64_t> ids = e.add_requests({prompt_of(1), prompt_of(2), prompt_of(3)},
                                            {greedy(5), greedy(6), greedy(7)});
  std::map<int64_t, int> tokens, finals;
  std::vector<TokenOutput> outs;
  int n_final = 0;
  while (n_final < 3 && e.wait_outputs(&outs, 1000)) {
    for (const TokenOutput& o : outs) {
      ++tokens[o.request_id];
      if (o.finish != FinishReason::kNone) ++finals[o.request_id], ++n_final;
    }
    outs.clear();
  }
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(tokens[ids[k]], 5 + k);
    EXPECT_EQ(finals[ids[k]], 1);
  }
  expect_all_blocks_free(e);
}

// Polls `done` for at most 20 s (a hang fails the test instead of blocking it).
template <typename F>
bool eventually(F done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// Waits until the loop has run `target` steps in total (it pauses right there).
void wait_steps(const AsyncEngine& e, int64_t target) {
  ASSERT_TRUE(eventually([&] { return e.steps() >= target; })) << e.steps() << " < " << target;
}

TEST(AsyncEngineTest, AbortAtEveryPhase) {
  EngineConfig c = async_config();
  c.max_num_seqs = 2;
  c.max_num_batched_tokens = 2;  // prompts are prefilled in chunks of at most 2 tokens
  AsyncEngine e(c);
  const int64_t total = e.stats().kv_blocks_total;
  std::vector<int32_t> long_prompt(40);
  for (int i = 0; i < 40; ++i) long_prompt[i] = 3 + i;
  // Two long decoders fill both slots, so the third request stays queued. The loop pauses after
  // 20 steps: a and b are then mid-decode (their prompts need at most 5 steps).
  int64_t s0 = e.steps();
  e.pause_after_steps(20);
  std::vector<int64_t> ids = e.add_requests({prompt_of(1), prompt_of(2), prompt_of(3)},
                                            {greedy(200), greedy(200), greedy(5)});
  const int64_t a = ids[0], b = ids[1], queued = ids[2];
  wait_steps(e, s0 + 20);
  EXPECT_EQ(e.stats().num_waiting, 1);
  // Queued: ends without a token.
  e.abort_request(queued);
  // Mid-decode: its blocks are free before any further step runs.
  const int64_t free_before = e.stats().kv_blocks_free;
  e.abort_request(a);
  ASSERT_TRUE(eventually([&] { return e.stats().kv_blocks_free > free_before; }));
  EXPECT_EQ(e.steps(), s0 + 20);
  // Mid-prefill: the long prompt takes a's slot; after 3 more steps it has at most 3 of 40 tokens.
  int64_t p = e.add_request(long_prompt, greedy(200));
  s0 = e.steps();
  e.pause_after_steps(3);
  wait_steps(e, s0 + 3);
  e.abort_request(p);
  e.pause_after_steps(-1);  // resume: the abort echoes are delivered
  Result rq = collect(e, queued);
  EXPECT_EQ(rq.finish, FinishReason::kAbort);
  EXPECT_TRUE(rq.tokens.empty());
  Result ra = collect(e, a);
  EXPECT_EQ(ra.finish, FinishReason::kAbort);
  EXPECT_GE(ra.tokens.size(), 5u);
  EXPECT_LE(ra.tokens.size(), 20u);
  Result rp = collect(e, p);
  EXPECT_EQ(rp.finish, FinishReason::kAbort);
  EXPECT_TRUE(rp.tokens.empty());
  EXPECT_EQ(rp.n_final, 1);
  e.abort_request(b);
  EXPECT_EQ(collect(e, b).finish, FinishReason::kAbort);
  e.abort_request(b);  // already ended: a no-op
  EXPECT_EQ(e.stats().kv_blocks_free, total);
  expect_all_blocks_free(e);
  // The engine still serves.
  Result after = collect(e, e.add_request(prompt_of(4), greedy(6)));
  EXPECT_EQ(after.finish, FinishReason::kLength);
  EXPECT_EQ(after.tokens.size(), 6u);
  expect_all_blocks_free(e);
}

TEST(AsyncEngineTest, AdmissionErrorsReachTheCaller) {
  AsyncEngine e(async_config());
  try {
    e.add_request({}, greedy(4));
    FAIL() << "an empty prompt was admitted";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(err.what()).find("empty"), std::string::npos);
  }
  EXPECT_THROW(e.add_request({1, 2, 100000}, greedy(4)), Error);
  EXPECT_THROW(e.add_request({1, 2}, greedy(100000)), Error);
  // All or nothing: the valid first request is rolled back.
  try {
    e.add_requests({prompt_of(1), {1, -3}}, {greedy(4), greedy(4)});
    FAIL() << "a bad batch was admitted";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("prompt 1"), std::string::npos);
  }
  std::vector<TokenOutput> outs;
  e.wait_outputs(&outs, 50);
  EXPECT_TRUE(outs.empty());
  expect_all_blocks_free(e);
  EXPECT_TRUE(e.healthy());
}

TEST(AsyncEngineTest, ScoreBetweenStepsMatchesSyncEngine) {
  std::vector<int32_t> ids = prompt_of(6);
  std::vector<float> want;
  {
    Engine sync(async_config());
    want = sync.score(ids);
  }
  AsyncEngine e(async_config());
  int64_t id = e.add_request(prompt_of(2), greedy(30));
  EXPECT_EQ(e.score(ids), want);
  EXPECT_EQ(collect(e, id).tokens.size(), 30u);
  expect_all_blocks_free(e);
}

TEST(AsyncEngineTest, StepFaultFailsEveryRequestAndKillsTheEngine) {
  AsyncEngine e(async_config());
  e.inject_step_fault(3, "injected device fault");
  std::vector<int64_t> ids = e.add_requests({prompt_of(1), prompt_of(2)}, {greedy(50), greedy(50)});
  const int64_t a = ids[0], b = ids[1];
  Result ra = collect(e, a), rb = collect(e, b);
  EXPECT_EQ(ra.finish, FinishReason::kError);
  EXPECT_EQ(rb.finish, FinishReason::kError);
  EXPECT_NE(ra.error.find("injected device fault"), std::string::npos);
  EXPECT_EQ(ra.n_final, 1);
  EXPECT_FALSE(e.healthy());
  EXPECT_NE(e.error().find("injected"), std::string::npos);
  try {
    e.add_request(prompt_of(3), greedy(4));
    FAIL() << "a dead engine admitted a request";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::kDevice);
  }
  EXPECT_THROW(e.score(prompt_of(3)), Error);
  std::vector<TokenOutput> outs;
  EXPECT_FALSE(e.wait_outputs(&outs, 100));
}

TEST(AsyncEngineTest, ShutdownWithRequestsInFlight) {
  EngineConfig c = async_config();
  c.max_num_seqs = 3;  // the fourth request is still queued at shutdown
  auto e = std::make_unique<AsyncEngine>(c);
  e->pause_after_steps(5);  // mid-decode, deterministically
  std::vector<int64_t> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(e->add_request(prompt_of(i), greedy(200)));
  wait_steps(*e, 5);
  std::thread reader([&] {
    for (int64_t id : ids) {
      Result r = collect(*e, id);
      EXPECT_EQ(r.finish, FinishReason::kAbort) << id;
      EXPECT_EQ(r.n_final, 1);
    }
  });
  e->shutdown(false);
  reader.join();
  expect_all_blocks_free(*e);
  EXPECT_THROW(e->add_request(prompt_of(1), greedy(2)), Error);
  e->abort_request(ids[1]);  // harmless after shutdown
  e.reset();                 // destructor after shutdown is fine
}

TEST(AsyncEngineTest, DrainingShutdownFinishesRequests) {
  AsyncEngine e(async_config());
  int64_t id = e.add_request(prompt_of(5), greedy(12));
  e.shutdown(true);
  Result r = collect(e, id);
  EXPECT_EQ(r.finish, FinishReason::kLength);
  EXPECT_EQ(r.tokens.size(), 12u);
  expect_all_blocks_free(e);
}

TEST(AsyncEngineTest, DestructorWithRequestsInFlight) {
  auto e = std::make_unique<AsyncEngine>(async_config());
  for (int i = 0; i < 3; ++i) e->add_request(prompt_of(i), greedy(200));
  e.reset();  // must not hang or leak
  SUCCEED();
}

}  // namespace
}  // namespace eli
