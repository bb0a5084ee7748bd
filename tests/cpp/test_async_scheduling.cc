// tests/cpp/test_async_scheduling.cc: the engine's asynchronous scheduling (EngineConfig::
// async_scheduling, runtime/engine/engine.cc) against one step at a time, on the CPU where the
// mode is forced on: identical tokens, finish reasons and logprobs for greedy, seeded and
// penalised requests, under preemption, prefix caching on/off, stop tokens and aborts in flight;
// every block free afterwards. The GPU variant of the same comparison is in
// tests/python/test_cuda_engine_equivalence.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "eli/engine.h"
#include "eli/error.h"

namespace eli {
namespace {

struct Result {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  FinishReason finish = FinishReason::kNone;
  int ends = 0;  // outputs with a finish reason (must be exactly one)
};

EngineConfig config(int async, int64_t n_blocks, bool prefix_caching) {
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_base";
  c.dtype = "float32";
  c.n_threads = 2;
  c.block_size = 4;
  c.num_kv_blocks = n_blocks;
  c.max_num_seqs = 8;
  c.max_num_batched_tokens = 24;  // long prompts are chunked
  c.enable_prefix_caching = prefix_caching;
  c.async_scheduling = async;
  c.seed = 11;
  return c;
}

struct Request {
  std::vector<int32_t> prompt;
  SamplingParams params;
};

// A seeded mix: shared prefixes, greedy / seeded sampling / penalties, stop tokens, short and
// long outputs.
std::vector<Request> make_requests(int64_t vocab, int n) {
  std::mt19937 rng(123);
  std::vector<int32_t> shared(9);
  for (int32_t& t : shared) t = static_cast<int32_t>(rng() % vocab);
  std::vector<Request> out;
  for (int i = 0; i < n; ++i) {
    Request r;
    if (i % 3 == 0) r.prompt = shared;
    const int extra = 1 + static_cast<int>(rng() % 20);
    for (int j = 0; j < extra; ++j) r.prompt.push_back(static_cast<int32_t>(rng() % vocab));
    SamplingParams& p = r.params;
    p.max_tokens = 3 + static_cast<int64_t>(rng() % 18);
    p.ignore_eos = true;
    p.logprobs = i % 4 == 0 ? 2 : 0;
    switch (i % 5) {
      case 0: p.temperature = 0.0; break;
      case 1: p.temperature = 0.9; p.top_p = 0.9; p.seed = 1000 + i; break;
      case 2: p.temperature = 0.0; p.stop_token_ids = {static_cast<int64_t>(rng() % vocab)}; break;
      case 3: p.temperature = 0.7; p.top_k = 5; p.seed = 2000 + i; p.repetition_penalty = 1.3; break;
      default: p.temperature = 0.0; p.presence_penalty = 0.5; break;
    }
    out.push_back(std::move(r));
  }
  return out;
}

// Runs every request to its end; requests in `abort_at` (index -> step) are aborted once that
// many steps have run (if still open).
std::vector<Result> run(const EngineConfig& c, const std::vector<Request>& reqs,
                        const std::map<size_t, int>& abort_at = {}, EngineStats* stats = nullptr) {
  Engine e(c);
  std::map<int64_t, size_t> index;
  for (size_t i = 0; i < reqs.size(); ++i) index[e.add_request(reqs[i].prompt, reqs[i].params)] = i;
  std::vector<Result> res(reqs.size());
  int steps = 0;
  while (e.has_unfinished()) {
    for (const auto& [i, at] : abort_at) {
      if (at == steps) {
        for (const auto& [id, j] : index) {
          if (j == i) e.abort_request(id);
        }
      }
    }
    for (const TokenOutput& o : e.step()) {
      Result& r = res[index.at(o.request_id)];
      if (o.token >= 0 && o.finish != FinishReason::kAbort) {
        r.tokens.push_back(o.token);
        r.logprobs.push_back(o.logprob);
      }
      if (o.finish != FinishReason::kNone) {
        r.finish = o.finish;
        ++r.ends;
      }
    }
    ++steps;
    if (steps > 5000) {
      ADD_FAILURE() << "no end after 5000 steps";
      break;
    }
  }
  EngineStats s = e.stats();
  EXPECT_EQ(s.kv_blocks_free, s.kv_blocks_total) << "blocks leaked";
  EXPECT_EQ(s.num_running + s.num_waiting, 0);
  if (stats != nullptr) *stats = s;
  return res;
}

void expect_same(const std::vector<Result>& a, const std::vector<Result>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens) << what << ": request " << i;
    EXPECT_EQ(a[i].finish, b[i].finish) << what << ": request " << i;
    EXPECT_EQ(a[i].ends, 1) << what << ": request " << i;
    EXPECT_EQ(b[i].ends, 1) << what << ": request " << i;
    ASSERT_EQ(a[i].logprobs.size(), b[i].logprobs.size()) << what << ": request " << i;
    for (size_t j = 0; j < a[i].logprobs.size(); ++j) {
      EXPECT_NEAR(a[i].logprobs[j], b[i].logprobs[j], 1e-4) << what << ": request " << i << " token " << j;
    }
  }
}

TEST(AsyncScheduling, SameOutputsAsOneStepAtATime) {
  const std::vector<Request> reqs = make_requests(/*vocab of llama_base*/ 256, 24);
  for (bool prefix : {true, false}) {
    for (int64_t blocks : {int64_t{256}, int64_t{24}}) {  // 24 blocks x 4 tokens: preemption
      EngineStats s_sync, s_async;
      const auto sync = run(config(0, blocks, prefix), reqs, {}, &s_sync);
      const auto async = run(config(1, blocks, prefix), reqs, {}, &s_async);
      const std::string what = "prefix " + std::to_string(prefix) + " blocks " + std::to_string(blocks);
      expect_same(sync, async, what);
      if (blocks == 24) {
        EXPECT_GT(s_sync.preemptions, 0) << what;
        EXPECT_GT(s_async.preemptions, 0) << what;
      }
      if (prefix) EXPECT_GT(s_async.prefix_cache_hits, 0) << what;
    }
  }
}

TEST(AsyncScheduling, StopTokensEndAtTheSameToken) {
  // Greedy requests whose stop token is their own 4th greedy token: the step launched after it
  // (already queued when the stop is seen) must not leak a token.
  std::vector<Request> reqs = make_requests(256, 8);
  for (Request& r : reqs) {
    r.params = SamplingParams();
    r.params.temperature = 0.0;
    r.params.max_tokens = 12;
    r.params.ignore_eos = true;
  }
  const auto free_run = run(config(0, 256, true), reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_GE(free_run[i].tokens.size(), 4u);
    reqs[i].params.stop_token_ids = {free_run[i].tokens[3]};
  }
  const auto sync = run(config(0, 256, true), reqs);
  const auto async = run(config(1, 256, true), reqs);
  expect_same(sync, async, "stop tokens");
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(async[i].finish, FinishReason::kStop);
    EXPECT_LE(async[i].tokens.size(), 4u);
  }
}

TEST(AsyncScheduling, AbortsInFlightEndOnceAndLeaveOthersUnchanged) {
  std::vector<Request> reqs = make_requests(256, 12);
  for (Request& r : reqs) {  // greedy and penalty-free: every step is asynchronous
    r.params.temperature = 0.0;
    r.params.repetition_penalty = 1.0;
    r.params.presence_penalty = 0.0;
    r.params.max_tokens = 16;
    r.params.stop_token_ids.clear();
  }
  const std::map<size_t, int> aborts = {{1, 0}, {4, 2}, {7, 5}, {10, 9}};
  const auto clean = run(config(1, 40, true), reqs);
  const auto sync = run(config(0, 40, true), reqs, aborts);
  const auto async = run(config(1, 40, true), reqs, aborts);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(async[i].ends, 1) << "request " << i;
    if (aborts.count(i) != 0) {
      EXPECT_EQ(async[i].finish, FinishReason::kAbort) << "request " << i;
      // What was reported before the abort is a prefix of the unaborted output.
      const auto& full = clean[i].tokens;
      ASSERT_LE(async[i].tokens.size(), full.size()) << "request " << i;
      EXPECT_TRUE(std::equal(async[i].tokens.begin(), async[i].tokens.end(), full.begin())) << "request " << i;
      continue;
    }
    // Unaborted requests match both the one-step-at-a-time run and a run without any abort.
    EXPECT_EQ(async[i].tokens, sync[i].tokens) << "request " << i;
    EXPECT_EQ(async[i].tokens, clean[i].tokens) << "request " << i;
    EXPECT_EQ(async[i].finish, FinishReason::kLength) << "request " << i;
  }
}

TEST(AsyncScheduling, StepsAreQueuedAheadOfTheirResults) {
  // The proof that the asynchronous path ran: a step's samples are reported by the next step()
  // (which launched its successor first), and a lone greedy request still gets every token.
  SamplingParams p;
  p.temperature = 0.0;
  p.max_tokens = 5;
  p.ignore_eos = true;
  for (int async : {0, 1}) {
    Engine e(config(async, 64, true));
    e.add_request({1, 2, 3, 4, 5}, p);
    std::vector<size_t> per_step;
    size_t total = 0;
    while (e.has_unfinished()) {
      const size_t n = e.step().size();
      per_step.push_back(n);
      total += n;
    }
    EXPECT_EQ(total, 5u) << "async " << async;
    if (async == 1) {
      ASSERT_EQ(per_step.size(), 6u);  // 5 launches + the last completion
      EXPECT_EQ(per_step[0], 0u);
    } else {
      ASSERT_EQ(per_step.size(), 5u);
      EXPECT_EQ(per_step[0], 1u);
    }
  }
}

TEST(AsyncScheduling, RejectsABadMode) {
  EngineConfig c = config(2, 64, true);
  EXPECT_THROW(Engine e(c), Error);
}

}  // namespace
}  // namespace eli
