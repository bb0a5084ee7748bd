// tests/cpp/test_token_constraint.cc: token masks, logit bias, allowed_token_ids, min_tokens and the
// TokenConstraint seam (include/eli/token_constraint.h). The host Sampler applies masks and biases
// exactly as specified (kernels/sample_ops.h steps 3 and 3b, checked against a direct computation
// on the logits); DeviceSampler on the CPU gives the host Sampler's tokens with masks and biases
// (chunked and asynchronous launches too); and a C++ TokenConstraint runs through the whole CPU
// engine: every token obeys it, completion ends the request with "stop", dead ends, rejected
// tokens and exceptions end that request only with an error, in synchronous and asynchronous
// scheduling and under preemption, and the other requests' tokens do not change.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "eli/engine.h"
#include "eli/error.h"
#include "eli/token_constraint.h"
#include "runtime/core/fault_injection.h"
#include "runtime/device/device.h"
#include "runtime/runner/device_sampler.h"
#include "runtime/runner/sampler.h"
#include "runtime/engine/token_mask.h"
#include "tests/cpp/sampling_test_util.h"

namespace eli {
namespace {

std::vector<uint32_t> mask_of(int64_t V, const std::vector<int32_t>& allowed) {
  std::vector<uint32_t> m(static_cast<size_t>((V + 31) / 32), 0u);
  for (int32_t t : allowed) m[static_cast<size_t>(t >> 5)] |= 1u << (t & 31);
  return m;
}

// ---- host Sampler ------------------------------------------------------------------------------

TEST(SamplerMask, GreedyPicksTheBestAllowedBiasedToken) {
  std::mt19937_64 rng(3);
  for (int64_t V : {1, 7, 33, 1000}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> z(static_cast<size_t>(V));
      stest::fill_normal(z.data(), V, rng, 3.0f);
      SamplingParams p;
      p.temperature = 0.0;
      p.logprobs = 0;
      std::vector<int32_t> allowed;
      for (int32_t t = 0; t < V; ++t) {
        if (rng() % 3 == 0) allowed.push_back(t);
      }
      if (allowed.empty()) allowed.push_back(static_cast<int32_t>(rng() % V));
      for (int j = 0; j < 5; ++j) {
        const int32_t t = static_cast<int32_t>(rng() % V);
        if (std::none_of(p.logit_bias.begin(), p.logit_bias.end(), [&](const auto& e) { return e.first == t; })) {
          p.logit_bias.emplace_back(t, static_cast<float>(static_cast<int>(rng() % 21) - 10));
        }
      }
      // The expected pick: argmax over allowed tokens of z + bias (lowest id on ties).
      std::vector<float> w = z;
      for (const auto& tb : p.logit_bias) w[static_cast<size_t>(tb.first)] += tb.second;
      int32_t best = -1;
      for (int32_t t : allowed) {
        if (best < 0 || w[static_cast<size_t>(t)] > w[static_cast<size_t>(best)]) best = t;
      }
      SequenceSamplingState st(p, {0}, 1);
      Sampler s;
      const auto m = mask_of(V, allowed);
      SampleResult r = s.sample(z.data(), V, p, st, -1, m.data());
      EXPECT_EQ(r.token, best) << "V=" << V << " trial " << trial;
      // The logprob stays the raw one (before bias and mask).
      double mx = *std::max_element(z.begin(), z.end()), sum = 0.0;
      for (float v : z) sum += std::exp(static_cast<double>(v) - mx);
      EXPECT_NEAR(r.logprob, z[static_cast<size_t>(best)] - (mx + std::log(sum)), 1e-5);
    }
  }
}

TEST(SamplerMask, SampledTokensAreAlwaysAllowed) {
  std::mt19937_64 rng(5);
  const int64_t V = 500;
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> z(static_cast<size_t>(V));
    stest::fill_normal(z.data(), V, rng, 2.0f);
    SamplingParams p;
    p.temperature = 0.5 + (trial % 5) * 0.4;
    p.top_k = trial % 3 == 0 ? 5 : 0;
    p.top_p = trial % 4 == 0 ? 0.5 : 1.0;
    p.min_p = trial % 7 == 0 ? 0.1 : 0.0;
    p.repetition_penalty = trial % 2 ? 1.3 : 1.0;
    std::vector<int32_t> allowed = {static_cast<int32_t>(rng() % V), static_cast<int32_t>(rng() % V)};
    SequenceSamplingState st(p, {1, 2, allowed[0]}, static_cast<uint64_t>(trial));
    Sampler s;
    const auto m = mask_of(V, allowed);
    SampleResult r = s.sample(z.data(), V, p, st, -1, m.data());
    EXPECT_TRUE(r.token == allowed[0] || r.token == allowed[1]) << r.token;
  }
}

TEST(SamplerMask, LogitBiasAloneMovesTheDraw) {
  const int64_t V = 10;
  std::vector<float> z(V, 0.0f);
  z[3] = 5.0f;
  SamplingParams p;
  p.temperature = 0.0;
  p.logit_bias = {{7, 6.0f}};
  SequenceSamplingState st(p, {0}, 1);
  Sampler s;
  EXPECT_EQ(s.sample(z.data(), V, p, st).token, 7);
  p.logit_bias = {{3, -100.0f}};
  EXPECT_EQ(s.sample(z.data(), V, p, st).token, 0);  // ties at 0: the lowest id
  // With a repetition penalty on the same token: bias first, then the penalty (5 + 1 = 6 > 0 -> 6 / 2).
  p.logit_bias = {{3, 1.0f}};
  p.repetition_penalty = 2.0;
  z[5] = 2.9f;
  SequenceSamplingState st2(p, {3}, 1);
  EXPECT_EQ(s.sample(z.data(), V, p, st2).token, 3);
  z[5] = 3.1f;
  EXPECT_EQ(s.sample(z.data(), V, p, st2).token, 5);
}

TEST(SamplerMask, EmptyMaskThrows) {
  const int64_t V = 40;
  std::vector<float> z(V, 1.0f);
  SamplingParams p;
  SequenceSamplingState st(p, {0}, 1);
  Sampler s;
  const auto m = mask_of(V, {});
  EXPECT_THROW(s.sample(z.data(), V, p, st, -1, m.data()), Error);
}

TEST(TokenMask, AllowedIdsAndMinTokens) {
  const int64_t V = 70;
  SamplingParams p;
  p.allowed_token_ids = {1, 2, 65};
  p.stop_token_ids = {2};
  p.min_tokens = 2;
  std::vector<uint32_t> m(3);
  EXPECT_TRUE(needs_mask(p, 5));
  EXPECT_EQ(fill_row_mask(p, 0, V, {65}, m.data()), "");
  EXPECT_EQ(m, mask_of(V, {1}));  // the stop id and the EOS id are masked before min_tokens
  EXPECT_EQ(fill_row_mask(p, 2, V, {65}, m.data()), "");
  EXPECT_EQ(m, mask_of(V, {1, 2, 65}));
  p.ignore_eos = true;
  EXPECT_EQ(fill_row_mask(p, 1, V, {65}, m.data()), "");
  EXPECT_EQ(m, mask_of(V, {1, 65}));
  p.allowed_token_ids = {2};
  EXPECT_NE(fill_row_mask(p, 0, V, {65}, m.data()).find("dead end"), std::string::npos);
  SamplingParams plain;
  plain.min_tokens = 3;
  EXPECT_FALSE(needs_mask(plain, 3));
  EXPECT_TRUE(needs_mask(plain, 2));
}

TEST(SamplingParamsValidate, ConstraintFields) {
  SamplingParams p;
  p.logit_bias = {{3, 1.0f}, {3, 2.0f}};
  EXPECT_THROW(validate_sampling_params(p, 10), Error);
  p.logit_bias = {{10, 1.0f}};
  EXPECT_THROW(validate_sampling_params(p, 10), Error);
  p.logit_bias = {{1, 101.0f}};
  EXPECT_THROW(validate_sampling_params(p, 10), Error);
  p.logit_bias = {{1, NAN}};
  EXPECT_THROW(validate_sampling_params(p, 10), Error);
  p.logit_bias = {{1, -100.0f}};
  EXPECT_NO_THROW(validate_sampling_params(p, 10));
  p.allowed_token_ids = {-1};
  EXPECT_THROW(validate_sampling_params(p, 10), Error);
  p.allowed_token_ids = {9};
  p.min_tokens = p.max_tokens + 1;
  EXPECT_THROW(validate_sampling_params(p, 10), Error);
  p.min_tokens = -1;
  EXPECT_THROW(validate_sampling_params(p, 10), Error);
}

// ---- DeviceSampler (CPU kernel) == host Sampler with masks and biases ----------------------------

TEST(DeviceSamplerCpu, MasksAndBiasesMatchHostSampler) {
  auto dev = create_device(DeviceId{DeviceKind::kCPU, 0});
  std::mt19937_64 rng(11);
  for (int64_t V : {5, 1000, 32000}) {
    const int n = 9;
    std::vector<SamplingParams> params(n);
    std::vector<int64_t> offsets(n);
    for (int i = 0; i < n; ++i) {
      SamplingParams& p = params[static_cast<size_t>(i)];
      p.temperature = i % 3 == 0 ? 0.0 : 0.9;
      p.top_p = i % 4 == 1 ? 0.8 : 1.0;
      p.logprobs = i % 2 ? 2 : -1;
      if (i % 2 == 0) p.logit_bias = {{static_cast<int32_t>(rng() % V), 50.0f}, {0, -3.0f}};
      if (i % 3 == 1) p.allowed_token_ids = {0, static_cast<int32_t>(V - 1), static_cast<int32_t>(V / 2)};
      if (i == 5) {
        p.min_tokens = 3;
        p.stop_token_ids = {static_cast<int64_t>(V / 2)};
      }
      offsets[static_cast<size_t>(i)] = i % 4;
    }
    std::vector<float> logits(static_cast<size_t>(n * V));
    stest::fill_normal(logits.data(), n * V, rng, 2.0f);
    std::vector<const SamplingParams*> ps;
    std::vector<SequenceSamplingState> states;
    for (int i = 0; i < n; ++i) states.emplace_back(params[static_cast<size_t>(i)], std::vector<int32_t>{1, 2}, 100 + i);
    std::vector<SequenceSamplingState*> ss;
    for (int i = 0; i < n; ++i) {
      ps.push_back(&params[static_cast<size_t>(i)]);
      ss.push_back(&states[static_cast<size_t>(i)]);
    }
    StepMasks masks;
    std::vector<std::string> mask_errors;
    build_step_masks(ps, offsets, V, {static_cast<int64_t>(V - 1)}, &masks, &mask_errors);
    for (const auto& e : mask_errors) ASSERT_EQ(e, "");
    for (int64_t max_rows : {64, 2}) {
      DeviceSampler sampler(*dev, max_rows, V, 0);
      std::vector<float> work = logits;
      std::vector<SampleResult> out;
      std::vector<std::string> errors;
      sampler.sample(work.data(), n, V, ps, ss, &out, &errors, &offsets, &masks);
      Sampler host;
      for (int i = 0; i < n; ++i) {
        SCOPED_TRACE("V=" + std::to_string(V) + " rows/launch " + std::to_string(max_rows) + " row " + std::to_string(i));
        ASSERT_EQ(errors[static_cast<size_t>(i)], "");
        const SampleResult want = host.sample(logits.data() + i * V, V, params[static_cast<size_t>(i)],
                                              states[static_cast<size_t>(i)], offsets[static_cast<size_t>(i)],
                                              masks.of(static_cast<size_t>(i)));
        EXPECT_EQ(out[static_cast<size_t>(i)].token, want.token);
        EXPECT_EQ(out[static_cast<size_t>(i)].logprob, want.logprob);
        if (masks.of(static_cast<size_t>(i)) != nullptr) {
          const int32_t t = want.token;
          EXPECT_TRUE((masks.of(static_cast<size_t>(i))[t >> 5] >> (t & 31)) & 1u);
        }
      }
      // The asynchronous launch (biases and masks, no penalties) gives the same tokens.
      if (max_rows == 64) {
        ASSERT_TRUE(sampler.can_launch_async(ps));
        std::vector<float> work2 = logits;
        sampler.launch_async(work2.data(), n, V, ps, ss, offsets, &masks);
        std::vector<SampleResult> out2;
        std::vector<std::string> errors2;
        sampler.collect(&out2, &errors2);
        for (int i = 0; i < n; ++i) EXPECT_EQ(out2[static_cast<size_t>(i)].token, out[static_cast<size_t>(i)].token);
      }
    }
  }
}

// ---- a C++ TokenConstraint through the CPU engine --------------------------------------------------

// Allows only tokens in [lo, hi) with step `stride`; finished after `len` tokens. Faults on demand.
class StrideConstraint : public TokenConstraint {
 public:
  StrideConstraint(int32_t lo, int32_t hi, int32_t stride, int len) : lo_(lo), hi_(hi), stride_(stride), len_(len) {}
  void fill_mask(uint32_t* bitmask, int64_t vocab) override {
    ++fills;
    // The mask of output token k is filled after tokens 0..k-1 were accepted (asynchronous
    // scheduling included: the engine feeds a placeholder's token before the next mask).
    if (static_cast<size_t>(fills - 1) != seen.size()) order_ok = false;
    if (throw_on_fill == fills) throw std::runtime_error("boom in fill_mask");
    if (empty_on_fill == fills) return;
    for (int32_t t = lo_; t < hi_ && t < vocab; t += stride_) bitmask[t >> 5] |= 1u << (t & 31);
  }
  bool accept(int32_t token) override {
    seen.push_back(token);
    if (reject_on_accept == static_cast<int>(seen.size())) return false;
    return token >= lo_ && token < hi_ && (token - lo_) % stride_ == 0;
  }
  bool is_finished() override { return static_cast<int>(seen.size()) >= len_; }
  int fills = 0, throw_on_fill = -1, empty_on_fill = -1, reject_on_accept = -1;
  bool order_ok = true;
  std::vector<int32_t> seen;

 private:
  int32_t lo_, hi_, stride_;
  int len_;
};

// The same, filling the masks of a step together (TokenConstraint::fill_masks).
class BatchedStride : public StrideConstraint {
 public:
  using StrideConstraint::StrideConstraint;
  const void* batch_key() const override { return &kKey; }
  void fill_masks(TokenConstraint* const* group, const int32_t* index, size_t n, uint32_t* masks, int64_t words,
                  int64_t vocab, std::string* errors) override {
    ++batches;
    max_group = std::max(max_group, n);
    for (size_t i = 0; i < n; ++i) {
      auto* c = static_cast<BatchedStride*>(group[i]);
      if (c->fail_in_batch) {
        errors[i] = "batched failure";
        continue;
      }
      c->fill_mask(masks + index[i] * words, vocab);
    }
  }
  static inline int batches = 0;
  static inline size_t max_group = 0;
  bool fail_in_batch = false;

 private:
  static constexpr int kKey = 0;
};

EngineConfig tiny_config(int async_scheduling) {
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_base";
  c.dtype = "float32";
  c.n_threads = 2;
  c.num_kv_blocks = 128;
  c.block_size = 4;
  c.async_scheduling = async_scheduling;
  return c;
}

struct Result {
  std::vector<int32_t> tokens;
  std::string finish, error;
};

std::map<int64_t, Result> run_all(Engine& e) {
  std::map<int64_t, Result> out;
  int guard = 0;
  while (e.has_unfinished() && ++guard < 10000) {
    for (const TokenOutput& o : e.step()) {
      Result& r = out[o.request_id];
      if (o.token >= 0) r.tokens.push_back(o.token);
      if (o.finish != FinishReason::kNone) {
        r.finish = finish_reason_name(o.finish);
        r.error = o.error;
      }
    }
  }
  EXPECT_LT(guard, 10000) << "the engine did not finish";
  return out;
}

SamplingParams plain(int max_tokens, double temperature = 0.0) {
  SamplingParams p;
  p.max_tokens = max_tokens;
  p.temperature = temperature;
  p.ignore_eos = true;
  p.seed = 7;
  p.has_seed = true;
  return p;
}

TEST(EngineConstraint, TokensObeyAndCompletionStops) {
  for (int async : {0, 1}) {
    SCOPED_TRACE("async_scheduling=" + std::to_string(async));
    Engine e(tiny_config(async));
    auto c = std::make_shared<StrideConstraint>(10, 200, 7, 6);
    SamplingParams p = plain(40, 0.9);
    p.constraint = c;
    const int64_t id = e.add_request({5, 6, 7, 8, 9}, p);
    SamplingParams q = plain(12);
    const int64_t other = e.add_request({1, 2, 3}, q);
    auto res = run_all(e);
    EXPECT_EQ(res[id].finish, "stop");
    EXPECT_EQ(res[id].error, "");
    ASSERT_EQ(res[id].tokens.size(), 6u);
    EXPECT_EQ(res[id].tokens, c->seen);
    for (int32_t t : res[id].tokens) EXPECT_TRUE(t >= 10 && t < 200 && (t - 10) % 7 == 0) << t;
    EXPECT_EQ(c->fills, 6);
    EXPECT_TRUE(c->order_ok);
    // The unconstrained neighbour is what it is alone.
    Engine alone(tiny_config(async));
    const int64_t a = alone.add_request({1, 2, 3}, q);
    auto solo = run_all(alone);
    EXPECT_EQ(res[other].tokens, solo[a].tokens);
    EXPECT_EQ(res[other].finish, "length");
  }
}

TEST(EngineConstraint, FailuresEndThatRequestOnly) {
  for (int async : {0, 1}) {
    SCOPED_TRACE("async_scheduling=" + std::to_string(async));
    Engine e(tiny_config(async));
    auto throws = std::make_shared<StrideConstraint>(0, 250, 1, 100);
    throws->throw_on_fill = 3;
    auto dead = std::make_shared<StrideConstraint>(0, 250, 1, 100);
    dead->empty_on_fill = 2;
    auto rejects = std::make_shared<StrideConstraint>(0, 250, 1, 100);
    rejects->reject_on_accept = 4;
    SamplingParams p1 = plain(30), p2 = plain(30), p3 = plain(30), ok = plain(15);
    p1.constraint = throws;
    p2.constraint = dead;
    p3.constraint = rejects;
    const int64_t i1 = e.add_request({5, 6}, p1), i2 = e.add_request({7, 8}, p2), i3 = e.add_request({9}, p3);
    const int64_t i4 = e.add_request({1, 2, 3}, ok);
    auto res = run_all(e);
    EXPECT_EQ(res[i1].finish, "error");
    EXPECT_NE(res[i1].error.find("boom in fill_mask"), std::string::npos) << res[i1].error;
    EXPECT_EQ(res[i1].tokens.size(), 2u);
    EXPECT_EQ(res[i2].finish, "error");
    EXPECT_NE(res[i2].error.find("dead end"), std::string::npos) << res[i2].error;
    EXPECT_EQ(res[i2].tokens.size(), 1u);
    EXPECT_EQ(res[i3].finish, "error");
    EXPECT_NE(res[i3].error.find("rejected"), std::string::npos) << res[i3].error;
    EXPECT_EQ(res[i3].tokens.size(), 3u);  // the rejected fourth token is not output
    EXPECT_EQ(res[i4].finish, "length");
    EXPECT_EQ(res[i4].error, "");
    EXPECT_EQ(res[i4].tokens.size(), 15u);
    const EngineStats s = e.stats();
    EXPECT_EQ(s.kv_blocks_free, s.kv_blocks_total);
  }
}

TEST(EngineConstraint, MinTokensAllowedIdsAndBiasThroughTheEngine) {
  Engine e(tiny_config(1));
  const int64_t V = e.info().spec.vocab_size;
  SamplingParams p = plain(12);
  p.ignore_eos = false;
  p.stop_token_ids = {42};
  p.logit_bias = {{42, 100.0f}};  // the stop token wins every greedy draw once allowed
  p.min_tokens = 4;
  const int64_t id = e.add_request({3, 4, 5}, p);
  SamplingParams q = plain(8, 1.0);
  q.allowed_token_ids = {11, static_cast<int32_t>(V - 1)};
  const int64_t id2 = e.add_request({3, 4, 5}, q);
  auto res = run_all(e);
  ASSERT_EQ(res[id].tokens.size(), 5u);
  EXPECT_EQ(res[id].tokens.back(), 42);
  EXPECT_EQ(res[id].finish, "stop");
  for (size_t i = 0; i + 1 < res[id].tokens.size(); ++i) EXPECT_NE(res[id].tokens[i], 42);
  ASSERT_EQ(res[id2].tokens.size(), 8u);
  for (int32_t t : res[id2].tokens) EXPECT_TRUE(t == 11 || t == V - 1) << t;
}

TEST(EngineConstraint, PreemptionKeepsTheConstraintInStep) {
  EngineConfig cfg = tiny_config(0);
  std::vector<int32_t> want;
  {
    Engine e(cfg);
    auto c = std::make_shared<StrideConstraint>(0, 250, 3, 1000);
    SamplingParams p = plain(20, 0.8);
    p.constraint = c;
    const int64_t id = e.add_request({5, 6, 7}, p);
    want = run_all(e)[id].tokens;
  }
  arm_fault("preempt_storm", "prob=1");
  Engine e(cfg);
  auto c = std::make_shared<StrideConstraint>(0, 250, 3, 1000);
  SamplingParams p = plain(20, 0.8);
  p.constraint = c;
  const int64_t id = e.add_request({5, 6, 7}, p);
  for (int i = 0; i < 3; ++i) e.add_request({1, 2, static_cast<int32_t>(i)}, plain(10));
  auto res = run_all(e);
  disarm_all_faults();
  EXPECT_GT(e.stats().preemptions, 0);
  EXPECT_EQ(res[id].tokens, want);
  EXPECT_EQ(c->seen, want);
  EXPECT_TRUE(c->order_ok);
}

}  // namespace
}  // namespace eli

namespace eli {
namespace {

TEST(EngineConstraint, BatchedMasksServeEveryRowOfAStep) {
  for (int async : {0, 1}) {
    SCOPED_TRACE("async_scheduling=" + std::to_string(async));
    BatchedStride::batches = 0;
    BatchedStride::max_group = 0;
    Engine e(tiny_config(async));
    std::vector<std::shared_ptr<BatchedStride>> cs;
    std::vector<int64_t> ids;
    for (int i = 0; i < 4; ++i) {
      cs.push_back(std::make_shared<BatchedStride>(3 + i, 250, 5, 8));
      if (i == 3) cs.back()->fail_in_batch = true;
      SamplingParams p = plain(30, 0.9);
      p.constraint = cs.back();
      ids.push_back(e.add_request({5, 6, static_cast<int32_t>(i)}, p));
    }
    auto res = run_all(e);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(res[ids[i]].finish, "stop");
      ASSERT_EQ(res[ids[i]].tokens.size(), 8u);
      for (int32_t t : res[ids[i]].tokens) EXPECT_EQ((t - 3 - i) % 5, 0) << t;
      EXPECT_TRUE(cs[i]->order_ok);
    }
    EXPECT_EQ(res[ids[3]].finish, "error");
    EXPECT_NE(res[ids[3]].error.find("batched failure"), std::string::npos) << res[ids[3]].error;
    EXPECT_GT(BatchedStride::batches, 0);
    EXPECT_EQ(BatchedStride::max_group, 4u);
  }
}

}  // namespace
}  // namespace eli
