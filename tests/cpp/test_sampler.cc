// tests/cpp/test_sampler.cc: SamplingParams validation and the host Sampler (the reference of the
// sampling semantics, kernels/sample_ops.h).
//
// The sampler is checked against plain reference code written here (double-precision log-softmax,
// a full sort for top-k/top-p/min-p). Statistical checks draw with fixed seeds and successive draw
// indices, so they are deterministic; their bounds are generous (chi-square far above its mean) so
// they only catch real bias.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "eli/error.h"
#include "eli/sampling_params.h"
#include "runtime/runner/sampler.h"

namespace eli {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Expects validate_sampling_params to throw kInvalidArgument with `field` in the message.
void expect_invalid(const SamplingParams& p, const std::string& field, int64_t vocab = 1000) {
  try {
    validate_sampling_params(p, vocab);
    ADD_FAILURE() << "expected an error naming " << field;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
}

std::vector<float> random_logits(int64_t vocab, uint64_t seed, float scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> z(static_cast<size_t>(vocab));
  for (auto& v : z) v = dist(rng);
  return z;
}

// Reference: log-softmax in double, the obvious way.
std::vector<double> ref_log_softmax(const std::vector<float>& z) {
  double m = -kInf;
  for (float v : z) m = std::max<double>(m, v);
  double s = 0.0;
  for (float v : z) s += std::exp(static_cast<double>(v) - m);
  std::vector<double> out;
  for (float v : z) out.push_back(static_cast<double>(v) - m - std::log(s));
  return out;
}

// Reference: the probability of each token after temperature, top-k, top-p, min-p (0 if dropped).
std::vector<double> ref_filtered_probs(const std::vector<float>& z, const SamplingParams& p) {
  const int64_t V = static_cast<int64_t>(z.size());
  std::vector<int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return z[a] > z[b]; });
  const int64_t k = (p.top_k >= 1 && p.top_k < V) ? p.top_k : V;
  order.resize(k);
  const double zmax = z[order[0]];
  std::vector<double> w(V, 0.0);
  double total = 0.0;
  for (int32_t t : order) total += (w[t] = std::exp((z[t] - zmax) / p.temperature));
  std::vector<int32_t> kept;
  double cum = 0.0;
  for (int32_t t : order) {
    kept.push_back(t);
    cum += w[t];
    if (p.top_p < 1.0 && cum >= p.top_p * total) break;
  }
  std::vector<double> probs(V, 0.0);
  double sum = 0.0;
  for (int32_t t : kept) {
    if (w[t] >= p.min_p) sum += (probs[t] = w[t]);
  }
  for (auto& v : probs) v /= sum;
  return probs;
}

// Draws n tokens and compares with the reference: same support, chi-square within a wide bound.
void check_distribution(const std::vector<float>& z, const SamplingParams& p, int n_draws) {
  const auto probs = ref_filtered_probs(z, p);
  SequenceSamplingState state(p, {}, 1234);
  Sampler sampler;
  std::vector<int64_t> counts(z.size(), 0);
  for (int i = 0; i < n_draws; ++i) {
    ++counts[sampler.sample(z.data(), static_cast<int64_t>(z.size()), p, state, i).token];
  }
  double chi2 = 0.0;
  int df = -1;
  for (size_t t = 0; t < z.size(); ++t) {
    if (probs[t] == 0.0) {
      EXPECT_EQ(counts[t], 0) << "token " << t << " is outside the allowed set";
      continue;
    }
    const double expected = probs[t] * n_draws;
    ASSERT_GE(expected, 5.0) << "test setup: allowed token " << t << " too rare to check";
    EXPECT_GT(counts[t], 0) << "allowed token " << t << " never sampled";
    chi2 += (counts[t] - expected) * (counts[t] - expected) / expected;
    ++df;
  }
  if (df > 0) {
    EXPECT_LT(chi2, df + 8.0 * std::sqrt(2.0 * df) + 10.0) << "df " << df;
  }
}

// ---- validation ---------------------------------------------------------------------------------

TEST(SamplingParamsValidate, DefaultsAndEdgesPass) {
  SamplingParams p;
  EXPECT_NO_THROW(validate_sampling_params(p, 1000));
  p.temperature = 0.0;
  p.top_k = -1;
  p.top_p = 1.0;
  p.min_p = 1.0;
  p.presence_penalty = -2.0;
  p.frequency_penalty = 2.0;
  p.logprobs = kMaxLogprobs;
  p.stop_token_ids = {0, 999};
  p.max_tokens = 1;
  EXPECT_NO_THROW(validate_sampling_params(p, 1000));
  p.logprobs = 0;
  p.top_k = 5000;  // larger than the vocab: allowed, means "all"
  EXPECT_NO_THROW(validate_sampling_params(p, 1000));
}

TEST(SamplingParamsValidate, EachFieldRejected) {
  auto with = [](auto set) {
    SamplingParams p;
    set(p);
    return p;
  };
  for (int64_t v : {int64_t{0}, int64_t{-1}, (int64_t{1} << 20) + 1, INT64_MAX}) {
    expect_invalid(with([&](SamplingParams& p) { p.max_tokens = v; }), "max_tokens");
  }
  for (double v : {-0.1, -kInf, kInf, kNaN}) {
    expect_invalid(with([&](SamplingParams& p) { p.temperature = v; }), "temperature");
  }
  for (int64_t v : {int64_t{-2}, int64_t{-100}, INT64_MIN}) {
    expect_invalid(with([&](SamplingParams& p) { p.top_k = v; }), "top_k");
  }
  for (double v : {0.0, -0.5, 1.0000001, kNaN, kInf, -kInf}) {
    expect_invalid(with([&](SamplingParams& p) { p.top_p = v; }), "top_p");
  }
  for (double v : {-0.01, 1.01, kNaN, kInf}) {
    expect_invalid(with([&](SamplingParams& p) { p.min_p = v; }), "min_p");
  }
  for (double v : {0.0, -1.0, kNaN, kInf}) {
    expect_invalid(with([&](SamplingParams& p) { p.repetition_penalty = v; }),
                   "repetition_penalty");
  }
  for (double v : {2.01, -2.01, kNaN, kInf, -kInf}) {
    expect_invalid(with([&](SamplingParams& p) { p.presence_penalty = v; }), "presence_penalty");
    expect_invalid(with([&](SamplingParams& p) { p.frequency_penalty = v; }), "frequency_penalty");
  }
  for (int v : {-2, kMaxLogprobs + 1, 1 << 30}) {
    expect_invalid(with([&](SamplingParams& p) { p.logprobs = v; }), "logprobs");
  }
  for (int64_t v : {int64_t{-1}, int64_t{1000}, INT64_MAX}) {
    expect_invalid(with([&](SamplingParams& p) { p.stop_token_ids = {5, v}; }), "stop_token_ids");
  }
  expect_invalid(with([](SamplingParams& p) { p.stop_token_ids.assign(1025, 1); }),
                 "stop_token_ids");
  expect_invalid(SamplingParams{}, "vocab_size", 0);
}

TEST(SamplingParamsValidate, MessageNamesValue) {
  SamplingParams p;
  p.temperature = -3.5;
  try {
    validate_sampling_params(p, 10);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-3.5"), std::string::npos) << e.what();
  }
}

// ---- greedy, logprobs, errors -------------------------------------------------------------------

TEST(SamplerGreedy, ArgmaxAndLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0.0;
  SequenceSamplingState st(p, {}, 0);
  Sampler s;
  std::vector<float> z = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
  EXPECT_EQ(s.sample(z.data(), 5, p, st).token, 1);
  std::vector<float> all_same(7, -4.0f);
  EXPECT_EQ(s.sample(all_same.data(), 7, p, st).token, 0);
  p.temperature = 1.0;
  p.top_k = 1;  // top_k == 1 is greedy too
  EXPECT_EQ(s.sample(z.data(), 5, p, st).token, 1);
  p.temperature = 1e-6;  // below kGreedyTemperatureEps
  p.top_k = 0;
  EXPECT_EQ(s.sample(z.data(), 5, p, st).token, 1);
}

TEST(SamplerLogprobs, MatchReferenceLogSoftmax) {
  const int64_t V = 50257;
  auto z = random_logits(V, 7, 4.0f);
  z[123] = z[456] = 25.0f;  // a tie at the top: lower id first
  const auto ref = ref_log_softmax(z);
  SamplingParams p;
  p.temperature = 0.7;
  p.top_k = 40;
  p.repetition_penalty = 1.3;  // logprobs ignore penalties and temperature (vLLM default)
  p.logprobs = kMaxLogprobs;
  SequenceSamplingState st(p, {123, 5, 9}, 42);
  Sampler s;
  for (int i = 0; i < 20; ++i) {
    auto r = s.sample(z.data(), V, p, st);
    EXPECT_NEAR(r.logprob, ref[r.token], 1e-5);
    ASSERT_EQ(r.top_logprobs.size(), static_cast<size_t>(kMaxLogprobs));
    std::vector<int32_t> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return ref[a] > ref[b]; });
    for (int j = 0; j < kMaxLogprobs; ++j) {
      EXPECT_EQ(r.top_logprobs[j].first, order[j]) << j;
      EXPECT_NEAR(r.top_logprobs[j].second, ref[order[j]], 1e-5);
    }
    st.append_output(r.token);
  }
  EXPECT_EQ(s.sample(z.data(), V, p, st).top_logprobs[0].first, 123);
  p.logprobs = 0;
  auto r = s.sample(z.data(), V, p, st);
  EXPECT_TRUE(r.top_logprobs.empty());
  EXPECT_NEAR(r.logprob, ref[r.token], 1e-5);
  p.logprobs = 5;  // more than the vocab: capped at the vocab
  std::vector<float> small = {1.0f, 2.0f, 3.0f};
  SequenceSamplingState fresh(p, {}, 0);
  EXPECT_EQ(s.sample(small.data(), 3, p, fresh).top_logprobs.size(), 3u);
}

TEST(SamplerErrors, NonFiniteLogitsAndBadIds) {
  SamplingParams p;
  SequenceSamplingState st(p, {}, 0);
  Sampler s;
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    std::vector<float> z(100, 0.0f);
    z[77] = bad;
    try {
      s.sample(z.data(), 100, p, st);
      ADD_FAILURE() << "expected non-finite logits error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("non-finite logits"), std::string::npos) << e.what();
    }
  }
  std::vector<float> z(10, 0.0f);
  EXPECT_THROW(s.sample(z.data(), 0, p, st), Error);
  EXPECT_THROW(s.sample(nullptr, 10, p, st), Error);
  EXPECT_THROW(SequenceSamplingState(p, {1, -3}, 0), Error);
  EXPECT_THROW(st.append_output(-1), Error);
  // A prompt id past the vocab is caught when penalties need it; the logits stay untouched.
  p.repetition_penalty = 1.5;
  SequenceSamplingState bad(p, {3, 10}, 0);
  std::vector<float> copy = z;
  EXPECT_THROW(apply_penalties(copy.data(), 10, p, bad), Error);
  EXPECT_EQ(copy, z);
  EXPECT_THROW(s.sample(z.data(), 10, p, bad), Error);
}

// ---- penalties ------------------------------------------------------------------------------------

TEST(SamplerPenalties, ApplyAsSpecified) {
  SamplingParams p;
  p.repetition_penalty = 2.0;
  p.presence_penalty = 0.5;
  p.frequency_penalty = 0.25;
  SequenceSamplingState st(p, {0, 1, 1}, 0);  // prompt tokens 0, 1
  st.append_output(1);
  st.append_output(2);
  st.append_output(2);
  st.append_output(2);
  std::vector<float> z = {4.0f, -4.0f, 3.0f, 1.0f, -1.0f};
  apply_penalties(z.data(), 5, p, st);
  EXPECT_FLOAT_EQ(z[0], 2.0f);                 // prompt, positive: divided
  EXPECT_FLOAT_EQ(z[1], -8.0f - 0.5f - 0.25f);  // prompt+output once, negative: multiplied once
  EXPECT_FLOAT_EQ(z[2], 1.5f - 0.5f - 0.75f);   // output x3
  EXPECT_FLOAT_EQ(z[3], 1.0f);                  // unseen
  EXPECT_FLOAT_EQ(z[4], -1.0f);
  // Neutral params leave logits alone.
  SamplingParams neutral;
  std::vector<float> y = {4.0f, -4.0f, 3.0f, 1.0f, -1.0f};
  apply_penalties(y.data(), 5, neutral, st);
  EXPECT_EQ(y, (std::vector<float>{4.0f, -4.0f, 3.0f, 1.0f, -1.0f}));
  // An extreme (valid) repetition penalty saturates instead of producing Inf.
  p.repetition_penalty = 1e-300;
  std::vector<float> x = {4.0f, 0, 0, 0, 0};
  apply_penalties(x.data(), 5, p, st);
  EXPECT_TRUE(std::isfinite(x[0]));
}

TEST(SamplerPenalties, ChangeGreedyPicks) {
  std::vector<float> z = {2.0f, 1.9f, 1.0f};
  Sampler s;
  SamplingParams p;
  p.temperature = 0.0;
  p.logprobs = 0;
  {
    SequenceSamplingState st(p, {0}, 0);
    EXPECT_EQ(s.sample(z.data(), 3, p, st).token, 0);  // no penalty
    p.repetition_penalty = 1.2;                         // 2.0 / 1.2 < 1.9
    auto r = s.sample(z.data(), 3, p, st);
    EXPECT_EQ(r.token, 1);
    EXPECT_NEAR(r.logprob, ref_log_softmax(z)[1], 1e-6);  // logprob from the raw logits
    p.repetition_penalty = 1.0;
  }
  {
    SequenceSamplingState st(p, {}, 0);
    p.frequency_penalty = 0.04;
    st.append_output(0);
    EXPECT_EQ(s.sample(z.data(), 3, p, st).token, 0);  // 1.96 > 1.9
    st.append_output(0);
    st.append_output(0);
    EXPECT_EQ(s.sample(z.data(), 3, p, st).token, 1);  // 1.88 < 1.9
    p.frequency_penalty = 0.0;
    p.presence_penalty = 0.2;
    EXPECT_EQ(s.sample(z.data(), 3, p, st).token, 1);  // 1.8
    p.presence_penalty = -1.0;
    st.append_output(2);
    EXPECT_EQ(s.sample(z.data(), 3, p, st).token, 0);  // 3.0 vs 2.0: token 0 back on top
    p.presence_penalty = -2.0;
    EXPECT_EQ(s.sample(z.data(), 3, p, st).token, 0);  // 4.0 vs 3.0
  }
}

// ---- filters --------------------------------------------------------------------------------------

TEST(SamplerFilters, PlainDistributionMatches) {
  SamplingParams p;
  p.temperature = 0.8;
  check_distribution(random_logits(40, 1, 1.0f), p, 40000);
}

TEST(SamplerFilters, TopKMatchesReference) {
  SamplingParams p;
  p.temperature = 1.3;
  p.top_k = 7;
  auto z = random_logits(60, 2, 1.5f);
  z[10] = z[11] = z[12] = 3.5f;  // ties inside the top-k
  check_distribution(z, p, 30000);
  // Ties straddling the top-k boundary: lower ids win.
  std::vector<float> t = {0.0f, 1.0f, 1.0f, 1.0f, 1.0f, 2.0f};
  p.top_k = 3;
  check_distribution(t, p, 20000);
  // All equal (worst case for the heap's tie handling) and strictly increasing logits.
  check_distribution(std::vector<float>(30, 0.25f), p, 20000);
  std::vector<float> inc(200);
  for (size_t i = 0; i < inc.size(); ++i) inc[i] = 0.01f * static_cast<float>(i);
  p.top_k = 9;
  check_distribution(inc, p, 20000);
}

TEST(SamplerFilters, LargeVocabTopKSupport) {
  const int64_t V = 152064;
  const auto z = random_logits(V, 12, 3.0f);
  SamplingParams p;
  p.top_k = 50;
  p.temperature = 2.0;
  const auto probs = ref_filtered_probs(z, p);
  SequenceSamplingState st(p, {}, 5);
  Sampler s;
  std::set<int32_t> seen;
  for (int i = 0; i < 200; ++i) {
    const int32_t t = s.sample(z.data(), V, p, st, i).token;
    ASSERT_GT(probs[t], 0.0) << t;
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), 10u);
}

TEST(SamplerFilters, TopPMatchesReference) {
  SamplingParams p;
  p.temperature = 1.0;
  p.top_p = 0.6;
  check_distribution(random_logits(50, 3, 1.2f), p, 40000);
  p.top_k = 20;
  p.top_p = 0.8;
  check_distribution(random_logits(50, 4, 1.2f), p, 40000);
}

TEST(SamplerFilters, MinPMatchesReference) {
  SamplingParams p;
  p.temperature = 0.9;
  p.min_p = 0.1;
  check_distribution(random_logits(80, 5, 1.5f), p, 40000);
  p.top_k = 30;
  p.top_p = 0.9;
  p.min_p = 0.05;
  check_distribution(random_logits(80, 6, 1.5f), p, 40000);
}

// Large vocab: top-p without top-k grows its selected prefix past 64, 256, 1024 tokens.
TEST(SamplerFilters, LargeVocabTopPSupport) {
  const int64_t V = 20000;
  for (double top_p : {0.05, 0.3, 0.7, 0.95}) {
    SamplingParams p;
    p.top_p = top_p;
    p.temperature = 1.0;
    const auto z = random_logits(V, 11, 2.0f);
    const auto probs = ref_filtered_probs(z, p);
    int64_t n_allowed = 0;
    for (double v : probs) n_allowed += v > 0.0;
    SequenceSamplingState st(p, {}, 99);
    Sampler s;
    std::set<int32_t> seen;
    for (int i = 0; i < 150; ++i) {
      const int32_t t = s.sample(z.data(), V, p, st, i).token;
      ASSERT_GT(probs[t], 0.0) << "top_p " << top_p << " token " << t;
      seen.insert(t);
    }
    EXPECT_GT(static_cast<int64_t>(seen.size()), std::min<int64_t>(n_allowed, 150) / 4)
        << "top_p " << top_p << " allowed " << n_allowed;
  }
}

TEST(SamplerFilters, AlwaysAtLeastOneToken) {
  std::vector<float> z = {0.1f, 5.0f, 5.0f, -3.0f};
  Sampler s;
  SamplingParams p;
  p.top_p = 1e-12;  // only the best (ties: lower id first in the order)
  SequenceSamplingState st(p, {}, 5);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(s.sample(z.data(), 4, p, st, i).token, 1);
  p.top_p = 1.0;
  p.min_p = 1.0;  // both tied maxima survive
  std::set<int32_t> seen;
  for (int i = 0; i < 200; ++i) seen.insert(s.sample(z.data(), 4, p, st, i).token);
  EXPECT_EQ(seen, (std::set<int32_t>{1, 2}));
  p.top_k = 2;
  p.top_p = 1e-9;
  p.min_p = 1.0;
  p.temperature = 50.0;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(z.data(), 4, p, st, i).token, 1);
  // Extreme but finite logits: no NaN from the arithmetic.
  std::vector<float> ext = {-FLT_MAX, FLT_MAX, -FLT_MAX, FLT_MAX * 0.5f};
  p = SamplingParams{};
  p.temperature = 1e-4;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(ext.data(), 4, p, st, i).token, 1);
}

TEST(SamplerFilters, SmallTemperatureTendsToArgmax) {
  std::vector<float> z = {1.0f, 1.1f, 0.9f, 1.05f};
  Sampler s;
  SamplingParams p;
  SequenceSamplingState st(p, {}, 3);
  for (double t : {2e-3, 1e-3, 2e-5}) {  // the runner-up is >= 25 scaled units below: p < 1e-10
    p.temperature = t;
    for (int i = 0; i < 200; ++i) EXPECT_EQ(s.sample(z.data(), 4, p, st, i).token, 1) << t;
  }
  // At a small non-greedy temperature, exact ties at the top share the mass evenly.
  std::vector<float> tie = {0.0f, 2.0f, 2.0f, 1.99f};
  p.temperature = 1e-3;
  int ones = 0;
  for (int i = 0; i < 4000; ++i) {
    const int32_t tok = s.sample(tie.data(), 4, p, st, i).token;
    ASSERT_TRUE(tok == 1 || tok == 2);
    ones += tok == 1;
  }
  EXPECT_NEAR(ones, 2000, 200);
}

// ---- rng ------------------------------------------------------------------------------------------

std::vector<int32_t> draw_sequence(SequenceSamplingState& st, const std::vector<float>& z,
                                   const SamplingParams& p, Sampler& s, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(s.sample(z.data(), static_cast<int64_t>(z.size()), p, st).token);
    st.append_output(out.back());
  }
  return out;
}

TEST(SamplerSeed, DeterministicAndIndependentOfOtherRequests) {
  const auto z = random_logits(1000, 21, 0.5f);
  SamplingParams p;
  p.seed = 777;
  p.has_seed = true;
  p.top_p = 0.9;
  Sampler s1, s2;
  SequenceSamplingState a(p, {1, 2}, 1);
  const auto seq_a = draw_sequence(a, z, p, s1, 100);
  // Same seed, different fallback seed, interleaved with another request on the same Sampler.
  SamplingParams other = p;
  other.seed = 5;
  SequenceSamplingState b(p, {1, 2}, 999);
  SequenceSamplingState c(other, {}, 0);
  std::vector<int32_t> seq_b;
  for (int i = 0; i < 100; ++i) {
    s2.sample(z.data(), 1000, other, c);
    seq_b.push_back(s2.sample(z.data(), 1000, p, b).token);
    b.append_output(seq_b.back());
  }
  EXPECT_EQ(seq_a, seq_b);
  // A different seed gives a different sequence.
  SequenceSamplingState d(other, {1, 2}, 1);
  EXPECT_NE(draw_sequence(d, z, p, s1, 100), seq_a);
  // Without a seed, the fallback seed decides.
  SamplingParams unseeded = p;
  unseeded.has_seed = false;
  SequenceSamplingState e1(unseeded, {}, 31), e2(unseeded, {}, 31), e3(unseeded, {}, 32);
  const auto q1 = draw_sequence(e1, z, unseeded, s1, 50);
  EXPECT_EQ(q1, draw_sequence(e2, z, unseeded, s2, 50));
  EXPECT_NE(q1, draw_sequence(e3, z, unseeded, s1, 50));
}

// Draw k of a request is a function of (seed, k) and the logits: not of how many draws were made
// before, nor of the state's history (without penalties).
TEST(SamplerSeed, DrawIsKeyedBySeedAndOutputIndex) {
  const auto z = random_logits(500, 22, 1.0f);
  SamplingParams p;
  p.seed = 31337;
  p.has_seed = true;
  p.temperature = 1.5;
  Sampler s;
  SequenceSamplingState fresh(p, {}, 0);
  SequenceSamplingState advanced(p, {1, 2, 3}, 0);
  std::vector<int32_t> by_index;
  for (int k = 0; k < 40; ++k) {
    const int32_t t = s.sample(z.data(), 500, p, advanced).token;  // draw index = outputs so far = k
    EXPECT_EQ(s.sample(z.data(), 500, p, fresh, k).token, t) << k;
    advanced.append_output(t);
    by_index.push_back(t);
  }
  EXPECT_GT(std::set<int32_t>(by_index.begin(), by_index.end()).size(), 10u);
  EXPECT_EQ(fresh.seed(), 31337u);
  EXPECT_EQ(SequenceSamplingState(SamplingParams{}, {}, 77).seed(), 77u);  // unseeded: the fallback
}

}  // namespace
}  // namespace eli
