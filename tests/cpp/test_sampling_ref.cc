// tests/cpp/test_sampling_ref.cc: the Op::kSample reference (kernels/ref/sampling_ref.cc) through
// the registry against the host Sampler (one row at a time), the surviving sets of top-k/top-p/
// min-p against the semantics computed here independently (kernels/sample_ops.h), the drawn
// distribution against the filtered softmax (chi-square over many counter-RNG seeds), and
// DeviceSampler on the CPU device (the CPU kSample kernel through the registry) against the host
// Sampler: the same tokens and logprobs for every row, greedy or not.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "eli/error.h"
#include "kernels/ref/sampling_ref.h"
#include "kernels/registry.h"
#include "kernels/sample_math.h"
#include "runtime/device/device.h"
#include "runtime/runner/device_sampler.h"
#include "runtime/runner/sampler.h"
#include "tests/cpp/sampling_test_util.h"

namespace eli {
namespace {

using stest::HostBatch;
using stest::RowParams;

// A request's history: prompt tokens and generated tokens (in order).
struct History {
  std::vector<int32_t> prompt;
  std::vector<int32_t> outputs;
};

SequenceSamplingState make_state(const SamplingParams& p, const History& h, uint64_t seed) {
  SequenceSamplingState s(p, h.prompt, seed);
  for (int32_t t : h.outputs) s.append_output(t);
  return s;
}

// The penalty list of a state, as DeviceSampler builds it.
std::vector<std::pair<int32_t, int32_t>> list_of(const SequenceSamplingState& s, const SamplingParams& p) {
  std::vector<std::pair<int32_t, int32_t>> out;
  if (p.repetition_penalty != 1.0) {
    for (int32_t t : s.prompt_tokens()) {
      auto it = s.output_counts().find(t);
      out.emplace_back(t, it == s.output_counts().end() ? 0 : it->second);
    }
  }
  for (const auto& kv : s.output_counts()) {
    if (p.repetition_penalty == 1.0 || !s.in_prompt(kv.first)) out.emplace_back(kv.first, kv.second);
  }
  std::sort(out.begin(), out.end());
  return out;
}

RowParams row_of(const SamplingParams& p, const SequenceSamplingState& s, uint64_t seed, uint64_t offset) {
  RowParams r;
  r.temperature = p.temperature;
  r.top_k = static_cast<int32_t>(p.top_k);
  r.top_p = p.top_p;
  r.min_p = p.min_p;
  r.repetition = p.repetition_penalty;
  r.presence = p.presence_penalty;
  r.frequency = p.frequency_penalty;
  r.seed = seed;
  r.offset = offset;
  r.n_logprobs = p.logprobs;
  r.penalties = list_of(s, p);
  return r;
}

History random_history(int64_t vocab, std::mt19937_64& rng) {
  History h;
  std::uniform_int_distribution<int64_t> tok(0, vocab - 1);
  for (int i = 0; i < 40; ++i) h.prompt.push_back(static_cast<int32_t>(tok(rng)));
  for (int i = 0; i < 25; ++i) h.outputs.push_back(static_cast<int32_t>(tok(rng) % std::max<int64_t>(1, vocab / 3)));
  return h;
}

// Survivors of the filters, as kernels/sample_ops.h states them: a stable sort for the order O,
// integer masses for top-p, the weight for min-p.
std::vector<int32_t> host_survivors(const std::vector<float>& z, const SamplingParams& p) {
  const int64_t V = static_cast<int64_t>(z.size());
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return z[a] > z[b]; });
  if (p.top_k > 1 && p.top_k < V) order.resize(static_cast<size_t>(p.top_k));
  const float zmax = z[order[0]], inv_t = sample_inv_temperature(p.temperature);
  std::vector<float> s(static_cast<size_t>(V), 0.0f);
  uint64_t total = 0;
  for (int32_t t : order) total += sample_mass(s[t] = sample_scaled(z[t], zmax, inv_t));
  size_t kept = order.size();
  if (p.top_p < 1.0) {
    const uint64_t target = sample_top_p_target(total, p.top_p);
    uint64_t cum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      cum += sample_mass(s[order[i]]);
      if (cum >= target) {
        kept = i + 1;
        break;
      }
    }
  }
  std::vector<int32_t> out;
  for (size_t i = 0; i < kept; ++i) {
    if (p.min_p <= 0.0 || sample_min_p_keeps(s[order[i]], p.min_p)) out.push_back(order[i]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<double> log_softmax(const float* z, int64_t V) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < V; ++i) m = std::max<double>(m, z[i]);
  double s = 0.0;
  for (int64_t i = 0; i < V; ++i) s += std::exp(static_cast<double>(z[i]) - m);
  std::vector<double> out(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) out[static_cast<size_t>(i)] = static_cast<double>(z[i]) - m - std::log(s);
  return out;
}

void run_ref(HostBatch& b) {
  SampleArgs a = b.args();
  get_kernel(Op::kSample, DeviceKind::kCPU, DType::kF32, "ref").fn(&a, ExecContext{});
}

// ---- the reference against the host sampler ---------------------------------------------------------

TEST(SampleRef, GreedyLogprobsAndTopNMatchHostSampler) {
  std::mt19937_64 rng(11);
  for (int64_t V : {1, 7, 1000, 32000, 128256}) {
    std::vector<SamplingParams> ps;
    for (int i = 0; i < 6; ++i) {
      SamplingParams p;
      p.temperature = i % 2 == 0 ? 0.0 : 0.7;
      p.top_k = i % 2 == 0 ? 0 : 1;  // both greedy
      p.logprobs = i < 2 ? -1 : (i < 4 ? 0 : (i == 4 ? 5 : 20));
      if (i >= 2) {
        p.repetition_penalty = 1.0 + 0.25 * (i % 3);
        p.presence_penalty = i == 3 ? 0.5 : 0.0;
        p.frequency_penalty = i == 5 ? -0.25 : 0.0;
      }
      ps.push_back(p);
    }
    std::vector<SequenceSamplingState> states;
    std::vector<RowParams> rows;
    for (size_t i = 0; i < ps.size(); ++i) {
      states.push_back(make_state(ps[i], random_history(V, rng), 1));
      rows.push_back(row_of(ps[i], states.back(), 5, 0));
    }
    HostBatch b(V, V + 3, kSampleMaxTopLogprobs, rows);
    for (int64_t r = 0; r < b.n; ++r) stest::fill_normal(b.row(r), V, rng, 2.0f);
    if (V >= 7) {
      b.row(0)[3] = b.row(0)[5] = 50.0f;  // tie at the max: the lower id
      b.row(4)[V - 1] = b.row(4)[2] = 40.0f;
    }
    const std::vector<float> raw = b.logits;
    run_ref(b);
    Sampler host;
    for (int64_t r = 0; r < b.n; ++r) {
      SCOPED_TRACE("V=" + std::to_string(V) + " row " + std::to_string(r));
      const float* z = raw.data() + r * b.stride;
      SampleResult want = host.sample(z, V, ps[r], states[r]);
      ASSERT_EQ(b.status[r], kSampleOk);
      EXPECT_EQ(b.token[r], want.token);
      if (ps[r].logprobs >= 0) EXPECT_NEAR(b.logprob[r], want.logprob, 1e-5);
      const int64_t n_top = std::min<int64_t>(std::max(ps[r].logprobs, 0), V);
      ASSERT_EQ(static_cast<int64_t>(want.top_logprobs.size()), n_top);
      for (int64_t j = 0; j < kSampleMaxTopLogprobs; ++j) {
        if (j < n_top) {
          EXPECT_EQ(b.top_ids[r * b.top_stride + j], want.top_logprobs[j].first) << j;
          EXPECT_NEAR(b.top_logprobs[r * b.top_stride + j], want.top_logprobs[j].second, 1e-5) << j;
        } else {
          EXPECT_EQ(b.top_ids[r * b.top_stride + j], -1) << j;
        }
      }
      // The row now holds the penalised logits; the padding is untouched.
      std::vector<float> pen(z, z + V);
      apply_penalties(pen.data(), V, ps[r], states[r]);
      EXPECT_EQ(0, std::memcmp(pen.data(), b.row(r), static_cast<size_t>(V) * sizeof(float)));
      for (int64_t j = V; j < b.stride; ++j) EXPECT_EQ(b.row(r)[j], raw[r * b.stride + j]);
    }
  }
}

TEST(SampleRef, SurvivorsMatchHostSemantics) {
  std::mt19937_64 rng(12);
  int checked = 0;
  for (int64_t V : {2, 50, 1000, 32000}) {
    for (int c = 0; c < 24; ++c) {
      SamplingParams p;
      p.temperature = (c % 4 == 0) ? 0.3 : (c % 4 == 1 ? 1.0 : (c % 4 == 2 ? 1.7 : 5.0));
      p.top_k = (c % 3 == 0) ? 0 : (c % 3 == 1 ? 1 + (c * 37) % std::max<int64_t>(2, V / 2) : V + 5);
      p.top_p = (c % 5 == 0) ? 1.0 : 0.05 + 0.19 * (c % 5);
      p.min_p = (c % 7 < 3) ? 0.0 : 0.02 * (c % 7);
      if (c % 6 == 5) {
        p.repetition_penalty = 1.3;
        p.frequency_penalty = 0.4;
      }
      if (p.top_k == 1) p.top_k = 2;
      SequenceSamplingState st = make_state(p, random_history(V, rng), 3);
      HostBatch b(V, V, 0, {row_of(p, st, 1000 + c, c)});
      stest::fill_normal(b.row(0), V, rng, c % 2 ? 3.0f : 1.0f);
      if (c % 8 == 7) {
        for (int64_t i = 0; i < V; i += 3) b.row(0)[i] = 0.5f;  // many ties
      }
      std::vector<float> z = b.logits;
      apply_penalties(z.data(), V, p, st);
      SampleArgs a = b.args();
      SampleRefTrace trace;
      sample_ref_row(a, 0, &trace);
      ASSERT_FALSE(trace.greedy);
      const std::vector<int32_t> want = host_survivors(z, p);
      EXPECT_EQ(trace.survivors, want) << "V=" << V << " case " << c;
      EXPECT_TRUE(std::binary_search(want.begin(), want.end(), b.token[0])) << "V=" << V << " case " << c;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 4 * 24);
}

TEST(SampleRef, HostSamplerDrawsAreSurvivors) {
  std::mt19937_64 rng(13);
  const int64_t V = 5000;
  for (int c = 0; c < 6; ++c) {
    SamplingParams p;
    p.temperature = 0.5 + 0.4 * c;
    p.top_k = c % 2 ? 0 : 300;
    p.top_p = c % 3 == 0 ? 1.0 : 0.8;
    p.min_p = c == 5 ? 0.05 : 0.0;
    SequenceSamplingState st(p, {}, 7);
    std::vector<float> z(static_cast<size_t>(V));
    stest::fill_normal(z.data(), V, rng, 2.0f);
    HostBatch b(V, V, 0, {row_of(p, st, 9, 0)});
    std::copy(z.begin(), z.end(), b.logits.begin());
    SampleArgs a = b.args();
    SampleRefTrace trace;
    sample_ref_row(a, 0, &trace);
    Sampler host;
    for (int i = 0; i < 150; ++i) {
      const int32_t t = host.sample(z.data(), V, p, st, i).token;
      ASSERT_TRUE(std::binary_search(trace.survivors.begin(), trace.survivors.end(), t)) << "case " << c << " " << t;
    }
  }
}

// ---- the distribution of the counter-RNG Gumbel draws ----------------------------------------------

// Probability of each token after temperature, top-k, top-p, min-p (the host's semantics, double).
std::vector<double> filtered_probs(const std::vector<float>& z, const SamplingParams& p) {
  const std::vector<int32_t> keep = host_survivors(z, p);
  float zmax = z[0];
  for (float v : z) zmax = std::max(zmax, v);
  std::vector<double> probs(z.size(), 0.0);
  double sum = 0.0;
  for (int32_t t : keep) sum += (probs[t] = std::exp((static_cast<double>(z[t]) - zmax) / p.temperature));
  for (double& v : probs) v /= sum;
  return probs;
}

void check_distribution(const std::vector<float>& z, const SamplingParams& p, int n_draws) {
  const int64_t V = static_cast<int64_t>(z.size());
  std::vector<RowParams> rows(static_cast<size_t>(n_draws));
  for (int i = 0; i < n_draws; ++i) {
    rows[i].temperature = p.temperature;
    rows[i].top_k = static_cast<int32_t>(p.top_k);
    rows[i].top_p = p.top_p;
    rows[i].min_p = p.min_p;
    rows[i].seed = 0x1234567ull + static_cast<uint64_t>(i) * 7919u;
    rows[i].offset = static_cast<uint64_t>(i % 17);
  }
  HostBatch b(V, V, 0, rows);
  for (int i = 0; i < n_draws; ++i) std::copy(z.begin(), z.end(), b.row(i));
  run_ref(b);
  const std::vector<double> probs = filtered_probs(z, p);
  std::vector<int64_t> counts(z.size(), 0);
  for (int i = 0; i < n_draws; ++i) {
    ASSERT_EQ(b.status[i], kSampleOk);
    ASSERT_TRUE(b.token[i] >= 0 && b.token[i] < V);
    ++counts[b.token[i]];
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
    chi2 += (counts[t] - expected) * (counts[t] - expected) / expected;
    ++df;
  }
  if (df > 0) EXPECT_LT(chi2, df + 8.0 * std::sqrt(2.0 * df) + 10.0) << "df " << df;
}

std::vector<float> normal_logits(int64_t V, uint64_t seed, float scale) {
  std::mt19937_64 rng(seed);
  std::vector<float> z(static_cast<size_t>(V));
  stest::fill_normal(z.data(), V, rng, scale);
  return z;
}

TEST(SampleRefDistribution, MatchesFilteredSoftmax) {
  SamplingParams p;
  p.temperature = 0.8;
  check_distribution(normal_logits(40, 1, 1.0f), p, 40000);
  p.temperature = 1.3;
  p.top_k = 7;
  auto z = normal_logits(60, 2, 1.5f);
  z[10] = z[11] = z[12] = 3.5f;  // ties inside the top-k
  check_distribution(z, p, 30000);
  p.top_k = 3;
  check_distribution({0.0f, 1.0f, 1.0f, 1.0f, 1.0f, 2.0f}, p, 20000);  // ties across the boundary
  p = SamplingParams{};
  p.top_p = 0.6;
  check_distribution(normal_logits(50, 3, 1.2f), p, 40000);
  p.top_k = 20;
  p.top_p = 0.8;
  check_distribution(normal_logits(50, 4, 1.2f), p, 40000);
  p = SamplingParams{};
  p.temperature = 0.9;
  p.min_p = 0.1;
  check_distribution(normal_logits(80, 5, 1.5f), p, 40000);
  p.top_k = 30;
  p.top_p = 0.9;
  p.min_p = 0.05;
  check_distribution(normal_logits(80, 6, 1.5f), p, 40000);
}

// The Gumbel noise's upper tail: a token 7 units below the best is drawn at its true rate.
TEST(SampleRefDistribution, UnlikelyTokenRate) {
  SamplingParams p;
  const int n = 400000;
  std::vector<RowParams> rows(n);
  for (int i = 0; i < n; ++i) rows[i].seed = 77 + static_cast<uint64_t>(i);
  HostBatch b(2, 2, 0, rows);
  for (int i = 0; i < n; ++i) {
    b.row(i)[0] = 3.0f;
    b.row(i)[1] = -4.0f;
  }
  run_ref(b);
  int64_t low = 0;
  for (int i = 0; i < n; ++i) low += b.token[i] == 1;
  const double pr = 1.0 / (1.0 + std::exp(7.0)), mean = pr * n, sd = std::sqrt(mean * (1 - pr));
  EXPECT_NEAR(static_cast<double>(low), mean, 5 * sd);
}

TEST(SampleRefDistribution, LargeVocabSupportAndSpread) {
  const int64_t V = 128256;
  const auto z = normal_logits(V, 21, 3.0f);
  for (int c = 0; c < 2; ++c) {
    SamplingParams p;
    p.temperature = 1.5;
    p.top_k = c == 0 ? 50 : 0;
    p.top_p = c == 0 ? 1.0 : 0.9;
    const std::vector<double> probs = filtered_probs(z, p);
    const int n = 30;
    std::vector<RowParams> rows(n);
    for (int i = 0; i < n; ++i) {
      rows[i].temperature = p.temperature;
      rows[i].top_k = static_cast<int32_t>(p.top_k);
      rows[i].top_p = p.top_p;
      rows[i].seed = 5;
      rows[i].offset = static_cast<uint64_t>(i);
    }
    HostBatch b(V, V, 0, rows);
    for (int i = 0; i < n; ++i) std::copy(z.begin(), z.end(), b.row(i));
    run_ref(b);
    std::set<int32_t> seen;
    for (int i = 0; i < n; ++i) {
      ASSERT_GT(probs[b.token[i]], 0.0) << b.token[i];
      seen.insert(b.token[i]);
    }
    EXPECT_GT(seen.size(), 10u);
  }
}

// ---- contract details ---------------------------------------------------------------------------------

TEST(SampleRef, NonFiniteRowsFailAlone) {
  const int64_t V = 300;
  std::vector<RowParams> rows(4);
  for (auto& r : rows) r.n_logprobs = 3;
  HostBatch b(V, V, 5, rows);
  std::mt19937_64 rng(3);
  for (int64_t r = 0; r < 4; ++r) stest::fill_normal(b.row(r), V, rng, 1.0f);
  b.row(1)[200] = std::numeric_limits<float>::quiet_NaN();
  b.row(1)[17] = std::numeric_limits<float>::infinity();
  b.row(3)[299] = -std::numeric_limits<float>::infinity();
  run_ref(b);
  EXPECT_EQ(b.status[0], kSampleOk);
  EXPECT_EQ(b.status[2], kSampleOk);
  EXPECT_EQ(b.status[1], kSampleNonFinite);
  EXPECT_EQ(b.token[1], 17);
  EXPECT_TRUE(std::isinf(b.logprob[1]));
  EXPECT_EQ(b.status[3], kSampleNonFinite);
  EXPECT_EQ(b.token[3], 299);
  for (int j = 0; j < 5; ++j) EXPECT_EQ(b.top_ids[1 * 5 + j], -1);
}

TEST(SampleRef, CounterRngIsPerDrawNotPerRow) {
  const int64_t V = 1000;
  std::vector<RowParams> rows(6);
  for (int i = 0; i < 6; ++i) {
    rows[i].seed = i < 3 ? 42 : 43;
    rows[i].offset = static_cast<uint64_t>(i % 3);
    rows[i].temperature = 5.0;  // flat: different noise gives different tokens
  }
  HostBatch b(V, V, 0, rows);
  std::mt19937_64 rng(4);
  std::vector<float> z(static_cast<size_t>(V));
  stest::fill_normal(z.data(), V, rng, 1.0f);
  for (int i = 0; i < 6; ++i) std::copy(z.begin(), z.end(), b.row(i));
  run_ref(b);
  HostBatch c(V, V, 0, {rows[4], rows[1]});  // same draws, other positions
  std::copy(z.begin(), z.end(), c.row(0));
  std::copy(z.begin(), z.end(), c.row(1));
  run_ref(c);
  EXPECT_EQ(c.token[0], b.token[4]);
  EXPECT_EQ(c.token[1], b.token[1]);
  std::set<int32_t> distinct(b.token.begin(), b.token.end());
  EXPECT_GE(distinct.size(), 4u);
  // The mixer is a bijection and the key depends on both seed and offset.
  EXPECT_NE(sample_row_key(42, 0), sample_row_key(42, 1));
  EXPECT_NE(sample_row_key(42, 0), sample_row_key(43, 0));
  EXPECT_NE(sample_token_bits(sample_row_key(1, 0), 0), sample_token_bits(sample_row_key(1, 0), 1));
  EXPECT_GT(sample_gumbel(0), -3.0f);
  EXPECT_LT(sample_gumbel(~0ull), -2.0f);  // v = 1: the clamped lower tail
  EXPECT_GT(sample_gumbel(1ull << 11), 30.0f);
  EXPECT_LT(sample_gumbel(0), kSampleGumbelMax);  // the largest noise there is
  EXPECT_LT(sample_gumbel(2047), kSampleGumbelMax);
  EXPECT_DOUBLE_EQ(kSampleGreedyTemperatureEps, kGreedyTemperatureEps);
  EXPECT_EQ(kSampleMaxTopLogprobs, kMaxLogprobs);
}

// ---- DeviceSampler on the CPU device (the reference through the registry) --------------------------

struct SamplerCase {
  std::vector<SamplingParams> params;
  std::vector<History> hist;
  std::vector<float> logits;  // (rows, V)
};

SamplerCase make_case(int64_t V, int rows, uint64_t seed) {
  SamplerCase c;
  std::mt19937_64 rng(seed);
  for (int i = 0; i < rows; ++i) {
    SamplingParams p;
    switch (i % 7) {
      case 0: p.temperature = 0.0; break;
      case 1: p.temperature = 0.0; p.logprobs = 20; p.repetition_penalty = 1.2; break;
      case 2: p.temperature = 0.9; p.top_k = 40; p.top_p = 0.9; p.logprobs = 3; break;
      case 3: p.top_k = 1; p.presence_penalty = 0.7; p.frequency_penalty = 0.2; p.logprobs = 0; break;
      case 4: p.temperature = 1.1; p.min_p = 0.05; p.repetition_penalty = 0.9; p.has_seed = true; p.seed = 99; break;
      case 5: p.temperature = 0.8; p.top_p = 0.95; p.presence_penalty = 0.3; p.logprobs = 5; break;
      default: p.temperature = 1.0; break;
    }
    c.params.push_back(p);
    c.hist.push_back(random_history(V, rng));
  }
  c.logits.resize(static_cast<size_t>(rows * V));
  stest::fill_normal(c.logits.data(), rows * V, rng, 2.5f);
  return c;
}

struct SamplerRun {
  std::vector<SampleResult> out;
  std::vector<std::string> errors;
  std::vector<SequenceSamplingState> states;
  std::vector<float> logits_after;
};

SamplerRun run_device_sampler(Device& dev, const SamplerCase& c, int64_t V, int64_t max_rows, int64_t max_pen) {
  SamplerRun run;
  const int64_t n = static_cast<int64_t>(c.params.size());
  for (int64_t i = 0; i < n; ++i) run.states.push_back(make_state(c.params[i], c.hist[i], 1000 + i));
  std::vector<const SamplingParams*> ps;
  std::vector<SequenceSamplingState*> ss;
  for (int64_t i = 0; i < n; ++i) {
    ps.push_back(&c.params[i]);
    ss.push_back(&run.states[i]);
  }
  float* d = static_cast<float*>(dev.allocate(c.logits.size() * sizeof(float)));
  dev.copy_host_to_device(d, c.logits.data(), c.logits.size() * sizeof(float));
  DeviceSampler sampler(dev, max_rows, V, max_pen);
  sampler.sample(d, n, V, ps, ss, &run.out, &run.errors);
  run.logits_after.resize(c.logits.size());
  dev.copy_device_to_host(run.logits_after.data(), d, c.logits.size() * sizeof(float));
  dev.free(d);
  return run;
}

TEST(DeviceSamplerCpu, MatchesHostSampler) {
  auto dev = create_cpu_device();
  for (int64_t V : {7, 1000, 32000}) {
    SamplerCase c = make_case(V, 11, 5 + V);
    SamplerRun run = run_device_sampler(*dev, c, V, 64, 0);
    Sampler host;
    for (size_t i = 0; i < c.params.size(); ++i) {
      SCOPED_TRACE("V=" + std::to_string(V) + " row " + std::to_string(i));
      const SamplingParams& p = c.params[i];
      SequenceSamplingState st = make_state(p, c.hist[i], 1000 + i);
      const float* z = c.logits.data() + i * V;
      SampleResult want = host.sample(z, V, p, st);
      ASSERT_TRUE(run.errors[i].empty()) << run.errors[i];
      const SampleResult& got = run.out[i];
      EXPECT_EQ(got.token, want.token);  // greedy or sampled: one semantics
      ASSERT_TRUE(got.token >= 0 && got.token < V);
      if (p.logprobs >= 0) {
        EXPECT_EQ(got.logprob, want.logprob);
        EXPECT_NEAR(got.logprob, log_softmax(z, V)[got.token], 1e-5);
        ASSERT_EQ(got.top_logprobs.size(), want.top_logprobs.size());
        for (size_t j = 0; j < want.top_logprobs.size(); ++j) {
          EXPECT_EQ(got.top_logprobs[j].first, want.top_logprobs[j].first);
          EXPECT_EQ(got.top_logprobs[j].second, want.top_logprobs[j].second);
        }
      } else {
        EXPECT_TRUE(got.top_logprobs.empty());
      }
      // The logits were penalised in place.
      std::vector<float> pen(z, z + V);
      apply_penalties(pen.data(), V, p, st);
      EXPECT_EQ(0, std::memcmp(pen.data(), run.logits_after.data() + i * V, static_cast<size_t>(V) * 4));
    }
  }
}

TEST(DeviceSamplerCpu, ChunkingGivesTheSameTokens) {
  auto dev = create_cpu_device();
  const int64_t V = 64;
  SamplerCase c = make_case(V, 13, 77);
  SamplerRun whole = run_device_sampler(*dev, c, V, 100, 0);
  SamplerRun chunked = run_device_sampler(*dev, c, V, 3, V);  // by rows and by penalty tokens
  for (size_t i = 0; i < c.params.size(); ++i) {
    EXPECT_EQ(whole.out[i].token, chunked.out[i].token) << i;
    EXPECT_EQ(whole.out[i].logprob, chunked.out[i].logprob) << i;
  }
  EXPECT_EQ(whole.logits_after, chunked.logits_after);
}

TEST(DeviceSamplerCpu, PerRowErrorsLikeTheHostSampler) {
  auto dev = create_cpu_device();
  const int64_t V = 100;
  SamplerCase c = make_case(V, 5, 9);
  c.logits[2 * V + 41] = std::numeric_limits<float>::quiet_NaN();
  c.hist[4].prompt.push_back(150);  // out of the vocab; row 4 has a repetition penalty
  SamplerRun run = run_device_sampler(*dev, c, V, 8, 0);
  Sampler host;
  for (int i : {2, 4}) {
    SequenceSamplingState st = make_state(c.params[i], c.hist[i], 1);
    std::string want;
    try {
      host.sample(c.logits.data() + i * V, V, c.params[i], st);
    } catch (const Error& e) {
      want = e.what();
    }
    ASSERT_FALSE(want.empty());
    ASSERT_FALSE(run.errors[i].empty()) << i;
    // Same message up to the source location appended in brackets.
    EXPECT_EQ(run.errors[i].substr(0, run.errors[i].find(" [")), want.substr(0, want.find(" ["))) << i;
  }
  for (int i : {0, 1, 3}) EXPECT_TRUE(run.errors[i].empty()) << run.errors[i];
  EXPECT_NE(run.errors[2].find("logit[41] = nan"), std::string::npos) << run.errors[2];
}

TEST(DeviceSamplerCpu, SeededDrawsIgnoreTheBatch) {
  auto dev = create_cpu_device();
  const int64_t V = 3000;
  SamplerCase c = make_case(V, 10, 31);
  SamplerRun a = run_device_sampler(*dev, c, V, 64, 0);
  SamplerCase single;
  single.params = {c.params[4]};  // seeded row (case 4)
  single.hist = {c.hist[4]};
  single.logits.assign(c.logits.begin() + 4 * V, c.logits.begin() + 5 * V);
  // Its state is built with fallback seed 1000 + 0 instead of 1004, but the request's own seed wins.
  SamplerRun b = run_device_sampler(*dev, single, V, 64, 0);
  ASSERT_TRUE(c.params[4].has_seed);
  EXPECT_EQ(a.out[4].token, b.out[0].token);
  EXPECT_TRUE(DeviceSampler::supports(c.params[0]));
}

// The requests' parameters live in the sampler's slot table (2 x max_rows entries, re-sent only
// when one is written): rounds that mix requests seen before, new ones and ones whose entry was
// evicted long ago must each sample with their own parameters, like the host sampler.
TEST(DeviceSamplerCpu, ParameterSlotsFollowTheirRequests) {
  auto dev = create_cpu_device();
  const int64_t V = 500, kRows = 3;  // 6 entries for 14 requests
  SamplerCase c = make_case(V, 14, 123);
  std::vector<SequenceSamplingState> states;
  for (size_t i = 0; i < c.params.size(); ++i) states.push_back(make_state(c.params[i], c.hist[i], 50 + i));
  DeviceSampler sampler(*dev, kRows, V, 0);
  float* d = static_cast<float*>(dev->allocate(static_cast<size_t>(kRows * V) * sizeof(float)));
  std::mt19937_64 rng(7);
  Sampler host;
  for (int round = 0; round < 40; ++round) {
    // 1 to 3 distinct requests: early rounds walk them in order, later ones pick at random.
    const int64_t n = 1 + round % kRows;
    std::vector<size_t> pick;
    while (static_cast<int64_t>(pick.size()) < n) {
      const size_t k = round < 10 ? (static_cast<size_t>(round) * 2 + pick.size()) % c.params.size()
                                  : static_cast<size_t>(rng() % c.params.size());
      if (std::find(pick.begin(), pick.end(), k) == pick.end()) pick.push_back(k);
    }
    std::vector<float> logits(static_cast<size_t>(n * V));
    stest::fill_normal(logits.data(), n * V, rng, 2.5f);
    dev->copy_host_to_device(d, logits.data(), logits.size() * sizeof(float));
    std::vector<const SamplingParams*> ps;
    std::vector<SequenceSamplingState*> ss;
    for (size_t k : pick) {
      ps.push_back(&c.params[k]);
      ss.push_back(&states[k]);
    }
    std::vector<SampleResult> out;
    std::vector<std::string> errors;
    const bool async = round % 4 == 3 && sampler.can_launch_async(ps);
    if (async) {
      std::vector<int64_t> offsets;
      for (const SequenceSamplingState* st : ss) offsets.push_back(st->n_output());
      sampler.launch_async(d, n, V, ps, ss, offsets);
      sampler.collect(&out, &errors);
    } else {
      sampler.sample(d, n, V, ps, ss, &out, &errors);
    }
    for (int64_t r = 0; r < n; ++r) {
      SCOPED_TRACE("round " + std::to_string(round) + " request " + std::to_string(pick[r]));
      ASSERT_TRUE(errors[r].empty()) << errors[r];
      const SampleResult want = host.sample(logits.data() + r * V, V, c.params[pick[r]], states[pick[r]]);
      EXPECT_EQ(out[r].token, want.token);
      if (c.params[pick[r]].logprobs >= 0) {
        EXPECT_EQ(out[r].logprob, want.logprob);
        EXPECT_EQ(out[r].top_logprobs.size(), want.top_logprobs.size());
      }
    }
  }
  dev->free(d);
}

}  // namespace
}  // namespace eli
