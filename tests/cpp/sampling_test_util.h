// tests/cpp/sampling_test_util.h: host-side batches for Op::kSample tests (the reference, the CPU
// emulation of the CUDA kernel, the CUDA kernel): per-row parameters, penalty lists, outputs
// poisoned before each run, and a SampleArgs over them. Plain C++ (no device code).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/sample_ops.h"

namespace eli::stest {

struct RowParams {
  double temperature = 1.0;
  int32_t top_k = 0;
  double top_p = 1.0;
  double min_p = 0.0;
  double repetition = 1.0, presence = 0.0, frequency = 0.0;
  uint64_t seed = 1, offset = 0;
  int32_t n_logprobs = -1;
  std::vector<std::pair<int32_t, int32_t>> penalties;  // (token, output count), unique tokens
  std::vector<std::pair<int32_t, float>> bias;         // (token, logit bias), unique tokens
  std::vector<uint32_t> mask;                          // (vocab + 31) / 32 words; empty: unmasked
};

// A batch of rows on the host; args() points a SampleArgs at it.
struct HostBatch {
  int64_t n = 0, vocab = 0, stride = 0, top_stride = 0;
  std::vector<float> logits;  // (n, stride)
  std::vector<double> temperature, top_p, min_p, rep, pres, freq;
  std::vector<int32_t> top_k, n_logprobs;
  std::vector<uint64_t> seed, offset;
  std::vector<int32_t> pen_offsets, pen_tokens, pen_counts;
  std::vector<float> pen_raw, pen_bias;
  bool any_bias = false;
  int64_t mask_words = 0;
  std::vector<int32_t> mask_row;
  std::vector<uint32_t> masks;
  std::vector<int32_t> token, status, top_ids;
  std::vector<float> logprob, top_logprobs;

  HostBatch(int64_t vocab_, int64_t stride_, int64_t top_stride_, const std::vector<RowParams>& rows)
      : n(static_cast<int64_t>(rows.size())), vocab(vocab_), stride(stride_), top_stride(top_stride_) {
    logits.assign(static_cast<size_t>(n * stride), 0.0f);
    pen_offsets.push_back(0);
    for (const RowParams& r : rows) {
      temperature.push_back(r.temperature);
      top_k.push_back(r.top_k);
      top_p.push_back(r.top_p);
      min_p.push_back(r.min_p);
      rep.push_back(r.repetition);
      pres.push_back(r.presence);
      freq.push_back(r.frequency);
      seed.push_back(r.seed);
      offset.push_back(r.offset);
      n_logprobs.push_back(r.n_logprobs);
      // The merged list of runtime/runner/sampler.cc penalty_list: penalised tokens with their
      // counts, bias-only tokens with count -1, each with its bias (0: none).
      std::vector<std::pair<int32_t, std::pair<int32_t, float>>> pen;
      for (const auto& tc : r.penalties) pen.push_back({tc.first, {tc.second, 0.0f}});
      for (const auto& tb : r.bias) {
        auto it = std::find_if(pen.begin(), pen.end(), [&](const auto& e) { return e.first == tb.first; });
        if (it != pen.end()) {
          it->second.second = tb.second;
        } else {
          pen.push_back({tb.first, {-1, tb.second}});
        }
        any_bias = true;
      }
      std::sort(pen.begin(), pen.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      for (const auto& e : pen) {
        pen_tokens.push_back(e.first);
        pen_counts.push_back(e.second.first);
        pen_bias.push_back(e.second.second);
      }
      pen_offsets.push_back(static_cast<int32_t>(pen_tokens.size()));
      mask_words = (vocab + 31) / 32;
      if (r.mask.empty()) {
        mask_row.push_back(-1);
      } else {
        mask_row.push_back(static_cast<int32_t>(masks.size() / static_cast<size_t>(mask_words)));
        masks.insert(masks.end(), r.mask.begin(), r.mask.end());
        masks.resize(static_cast<size_t>(mask_words) * (masks.size() / static_cast<size_t>(mask_words) +
                                                         (masks.size() % static_cast<size_t>(mask_words) != 0)));
      }
    }
    poison();
  }

  // Fills every output (and the penalties' scratch) with garbage.
  void poison() {
    token.assign(static_cast<size_t>(n), -777);
    status.assign(static_cast<size_t>(n), -777);
    logprob.assign(static_cast<size_t>(n), 777.0f);
    top_ids.assign(static_cast<size_t>(std::max<int64_t>(1, n * top_stride)), -777);
    top_logprobs.assign(static_cast<size_t>(std::max<int64_t>(1, n * top_stride)), 777.0f);
    pen_raw.assign(std::max<size_t>(1, pen_tokens.size()), 777.0f);
  }

  float* row(int64_t r) { return logits.data() + r * stride; }

  SampleArgs args() {
    SampleArgs a{};
    a.token = token.data();
    a.logprob = logprob.data();
    a.top_ids = top_stride > 0 ? top_ids.data() : nullptr;
    a.top_logprobs = top_stride > 0 ? top_logprobs.data() : nullptr;
    a.status = status.data();
    a.logits = logits.data();
    a.penalty_raw = pen_raw.data();
    a.temperature = temperature.data();
    a.top_k = top_k.data();
    a.top_p = top_p.data();
    a.min_p = min_p.data();
    a.repetition_penalty = rep.data();
    a.presence_penalty = pres.data();
    a.frequency_penalty = freq.data();
    a.seed = seed.data();
    a.offset = offset.data();
    a.n_logprobs = n_logprobs.data();
    a.penalty_offsets = pen_offsets.data();
    a.penalty_tokens = pen_tokens.empty() ? pen_offsets.data() : pen_tokens.data();
    a.penalty_counts = pen_counts.empty() ? pen_offsets.data() : pen_counts.data();
    a.penalty_bias = any_bias ? pen_bias.data() : nullptr;
    a.allow_mask = masks.empty() ? nullptr : masks.data();
    a.mask_row = mask_row.data();
    a.mask_words = mask_words;
    a.n_rows = n;
    a.vocab = vocab;
    a.logits_stride = stride;
    a.top_stride = top_stride;
    return a;
  }
};

inline void fill_normal(float* x, int64_t n, std::mt19937_64& rng, float scale, float mean = 0.0f) {
  std::normal_distribution<float> d(mean, scale);
  for (int64_t i = 0; i < n; ++i) x[i] = d(rng);
}

// A random penalty list over [0, vocab): n distinct tokens, counts 0 (prompt) to 3.
inline std::vector<std::pair<int32_t, int32_t>> random_penalties(int64_t vocab, int64_t n, std::mt19937_64& rng) {
  std::vector<int32_t> ids;
  std::uniform_int_distribution<int64_t> tok(0, vocab - 1);
  for (int64_t i = 0; i < n * 2 && static_cast<int64_t>(ids.size()) < n; ++i) {
    const int32_t t = static_cast<int32_t>(tok(rng));
    if (std::find(ids.begin(), ids.end(), t) == ids.end()) ids.push_back(t);
  }
  std::uniform_int_distribution<int> cnt(0, 3);
  std::vector<std::pair<int32_t, int32_t>> out;
  for (int32_t t : ids) out.emplace_back(t, cnt(rng));
  return out;
}

// Named batches that between them take every path of the device kernel for a vocab V: greedy
// (ties, +-0), plain temperature, min-p, top-k small and large, top-p peaked and flat, boundary
// buckets too big for the shared list (radix refinement) and made of identical logits (the ranked
// tie pass), penalties, logprobs, non-finite rows, rows that are not 16-byte aligned, extremes.
struct NamedBatch {
  std::string name;
  HostBatch batch;
};

inline std::vector<NamedBatch> kernel_cases(int64_t V, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<NamedBatch> out;
  auto add = [&](const std::string& name, int64_t stride, int64_t ts, const std::vector<RowParams>& rows,
                 float scale) {
    out.push_back({name + " V=" + std::to_string(V), HostBatch(V, stride, ts, rows)});
    HostBatch& b = out.back().batch;
    for (int64_t r = 0; r < b.n; ++r) {
      fill_normal(b.row(r), V, rng, scale);
      for (int64_t j = V; j < stride; ++j) b.row(r)[j] = 12345.0f;  // padding: never read
    }
    return &b;
  };
  auto row = [&](double t, int32_t k, double p, double mp, int32_t nlp = -1) {
    RowParams r;
    r.temperature = t;
    r.top_k = k;
    r.top_p = p;
    r.min_p = mp;
    r.n_logprobs = nlp;
    r.seed = rng();
    r.offset = rng() % 1000;
    return r;
  };
  const int32_t Vi = static_cast<int32_t>(V);

  {  // greedy, logprobs, ties at the max, +-0
    std::vector<RowParams> rows = {row(0.0, 0, 1, 0), row(0.0, 0, 1, 0, 0), row(0.7, 1, 1, 0, 20),
                                   row(0.0, 0, 1, 0, 5), row(1e-6, 0, 1, 0, 1)};
    HostBatch* b = add("greedy", V, kSampleMaxTopLogprobs, rows, 2.0f);
    if (V >= 7) {
      b->row(0)[V - 1] = b->row(0)[3] = 30.0f;
      b->row(2)[1] = b->row(2)[V - 2] = 30.0f;
    }
    for (int64_t i = 0; i < V; ++i) b->row(3)[i] = (i % 2) ? 0.0f : -0.0f;
  }
  {  // temperature and min-p only
    std::vector<RowParams> rows = {row(1.0, 0, 1, 0), row(0.5, -1, 1, 0, 3), row(2.0, 0, 1, 0), row(1.0, 0, 1, 0.1),
                                   row(0.8, 0, 1, 0.9), row(3.0, Vi, 1, 0.01)};
    add("temperature", V, 3, rows, 1.5f);
  }
  {  // top-k, with top-p and min-p
    std::vector<RowParams> rows;
    for (int32_t k : {2, 5, 50, 1000, 3000, 5000, 20000, Vi - 1}) {
      if (k < 2 || k >= Vi) continue;
      rows.push_back(row(1.0, k, 1, 0));
      rows.push_back(row(0.6, k, 0.8, 0, 2));
      rows.push_back(row(1.7, k, 0.95, 0.02));
    }
    if (!rows.empty()) add("topk", V, 2, rows, 2.5f);
  }
  {  // top-p, peaked and flat
    std::vector<RowParams> rows;
    for (double p : {0.05, 0.5, 0.9, 0.99}) {
      rows.push_back(row(0.7, 0, p, 0));
      rows.push_back(row(1.5, 0, p, 0.001));
    }
    add("topp peaked", V, 0, rows, 4.0f);
    add("topp flat", V, 0, rows, 0.3f);
  }
  {  // a narrow logit range: the boundary bucket holds most of the row
    std::vector<RowParams> rows = {row(1.0, Vi / 2 > 1 ? Vi / 2 : 0, 1, 0), row(1.0, 0, 0.5, 0),
                                   row(1.0, Vi / 3 > 1 ? Vi / 3 : 0, 0.7, 0), row(1.0, 0, 1, 0, 20)};
    HostBatch* b = add("narrow", V, kSampleMaxTopLogprobs, rows, 1.0f);
    std::uniform_real_distribution<float> u(1.0f, 1.03f);
    for (int64_t r = 0; r < b->n; ++r) {
      for (int64_t i = 0; i < V; ++i) b->row(r)[i] = u(rng);
    }
  }
  {  // many identical logits: ties across every cut
    std::vector<RowParams> rows = {row(1.0, Vi / 2 > 1 ? Vi / 2 : 0, 1, 0), row(1.0, 0, 0.3, 0),
                                   row(1.0, Vi / 4 > 1 ? Vi / 4 : 0, 0.6, 0), row(0.0, 0, 1, 0, 20),
                                   row(2.0, 7 < Vi ? 7 : 0, 1, 0, 20), row(1.0, 0, 0.999, 0.5, 10)};
    HostBatch* b = add("ties", V, kSampleMaxTopLogprobs, rows, 1.0f);
    for (int64_t r = 0; r < b->n; ++r) {
      for (int64_t i = 0; i < V; ++i) {
        if (i % 5 != 0) b->row(r)[i] = (r == 3 || r == 4) ? 9.0f : 0.25f;  // r 3, 4: tied maxima
      }
    }
  }
  {  // penalties (with logprobs: the sampled token's raw logit comes from the saved value)
    std::vector<RowParams> rows;
    for (int i = 0; i < 6; ++i) {
      RowParams r = row(i % 3 == 0 ? 0.0 : 0.9, i % 2 ? 40 : 0, i == 4 ? 0.9 : 1.0, 0, i % 2 ? 0 : 4);
      r.repetition = i % 3 == 2 ? 0.8 : 1.3;
      r.presence = i % 2 ? 0.5 : 0.0;
      r.frequency = i == 3 ? -0.7 : 0.25;
      r.penalties = random_penalties(V, std::min<int64_t>(V, 300), rng);
      rows.push_back(r);
    }
    HostBatch* b = add("penalties", V, 4, rows, 2.0f);
    for (int64_t r = 0; r < b->n; ++r) {  // make a penalised token the max
      const int32_t lo = b->pen_offsets[r], hi = b->pen_offsets[r + 1];
      if (hi > lo) b->row(r)[b->pen_tokens[(lo + hi) / 2]] = 25.0f;
    }
  }
  {  // non-finite rows among good ones
    std::vector<RowParams> rows = {row(1.0, 0, 0.9, 0, 2), row(0.0, 0, 1, 0, 2), row(1.0, 10, 1, 0, 2),
                                   row(0.0, 0, 1, 0)};
    HostBatch* b = add("nonfinite", V, 2, rows, 1.0f);
    b->row(1)[V - 1] = std::numeric_limits<float>::quiet_NaN();
    b->row(2)[V / 2] = -std::numeric_limits<float>::infinity();
    if (V > 3) b->row(2)[V / 3] = std::numeric_limits<float>::infinity();
  }
  {  // rows not 16-byte aligned
    std::vector<RowParams> rows = {row(0.0, 0, 1, 0, 3), row(1.0, 20, 0.9, 0, 1), row(1.2, 0, 0.7, 0.01),
                                   row(0.9, 0, 1, 0)};
    add("misaligned", V + 1, 3, rows, 2.0f);
  }
  {  // extremes
    std::vector<RowParams> rows = {row(1e-4, 0, 1, 0), row(100.0, 0, 0.9, 0), row(1.0, 0, 0.5, 0, 2),
                                   row(50.0, 3 < Vi ? 3 : 0, 1e-9, 1.0)};
    HostBatch* b = add("extreme", V, 2, rows, 1.0f);
    for (int64_t r = 0; r < b->n; ++r) {
      for (int64_t i = 0; i < V; ++i) b->row(r)[i] = (i % 3 == 0) ? -FLT_MAX : (i % 3 == 1 ? FLT_MAX * 0.5f : 1.0f);
      if (V > 1) b->row(r)[V / 2] = FLT_MAX;
    }
  }
  {  // token masks and logit biases (structured output, allowed_token_ids, min_tokens, logit_bias):
     // sparse and dense masks, a single allowed token, biases that change the pick, with penalties
     // and logprobs, and one row whose mask allows nothing (kSampleMaskedOut)
    auto random_mask = [&](double density) {
      std::vector<uint32_t> m(static_cast<size_t>((V + 31) / 32), 0u);
      std::uniform_real_distribution<double> u(0.0, 1.0);
      for (int32_t t = 0; t < Vi; ++t) {
        if (u(rng) < density) m[static_cast<size_t>(t >> 5)] |= 1u << (t & 31);
      }
      m[static_cast<size_t>(rng() % static_cast<uint64_t>(V)) >> 5] |= 1u;  // never empty: token 32k
      return m;
    };
    std::vector<RowParams> rows;
    int i = 0;
    for (double density : {0.001, 0.05, 0.5, 0.99}) {
      for (RowParams r : {row(0.0, 0, 1, 0, 3), row(1.0, 0, 1, 0), row(0.8, 40, 0.9, 0, 2), row(1.3, 0, 0.7, 0.05)}) {
        r.mask = random_mask(density);
        if (++i % 3 == 0) {
          r.repetition = 1.2;
          r.penalties = random_penalties(V, std::min<int64_t>(V, 50), rng);
        }
        if (i % 2 == 0) {
          for (int j = 0; j < 20 && j < Vi; ++j) {
            const int32_t t = static_cast<int32_t>(rng() % static_cast<uint64_t>(V));
            if (std::none_of(r.bias.begin(), r.bias.end(), [&](const auto& e) { return e.first == t; })) {
              r.bias.emplace_back(t, static_cast<float>(static_cast<int>(rng() % 201) - 100));
            }
          }
        }
        rows.push_back(r);
      }
    }
    RowParams one = row(1.0, 0, 1, 0, 2);  // exactly one allowed token
    one.mask.assign(static_cast<size_t>((V + 31) / 32), 0u);
    one.mask[static_cast<size_t>((Vi - 1) >> 5)] = 1u << ((Vi - 1) & 31);
    rows.push_back(one);
    RowParams none = row(0.7, 0, 1, 0, 2);  // nothing allowed
    none.mask.assign(static_cast<size_t>((V + 31) / 32), 0u);
    rows.push_back(none);
    RowParams biased = row(0.0, 0, 1, 0, 1);  // bias only: moves the greedy pick
    biased.bias = {{0, 100.0f}, {Vi - 1, -100.0f}};
    rows.push_back(biased);
    add("masks", V, 3, rows, 2.0f);
  }
  for (NamedBatch& nb : out) nb.batch.poison();
  return out;
}

// Batches of random rows: parameters (greedy, temperature, top-k, top-p, min-p, penalties, logprobs),
// seeds and offsets, vocab sizes in [2, max_vocab], logit scales; every fourth batch has coarse
// logits (exact ties everywhere).
inline std::vector<HostBatch> random_batches(uint64_t seed, int n_batches, int64_t max_vocab) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  std::vector<HostBatch> out;
  for (int batch = 0; batch < n_batches; ++batch) {
    const int64_t V = 2 + static_cast<int64_t>(rng() % static_cast<uint64_t>(max_vocab - 1));
    const int n = 1 + static_cast<int>(rng() % 12);
    std::vector<RowParams> rows;
    for (int i = 0; i < n; ++i) {
      RowParams r;
      r.temperature = u01(rng) < 0.1 ? 0.0 : 0.05 + 2.5 * u01(rng);
      r.top_k = u01(rng) < 0.4 ? static_cast<int32_t>(1 + rng() % static_cast<uint64_t>(V)) : 0;
      r.top_p = u01(rng) < 0.5 ? 0.01 + 0.98 * u01(rng) : 1.0;
      r.min_p = u01(rng) < 0.3 ? 0.3 * u01(rng) : 0.0;
      if (u01(rng) < 0.3) {
        r.repetition = 0.7 + 0.8 * u01(rng);
        r.presence = u01(rng) - 0.5;
        r.frequency = 0.5 * u01(rng);
        r.penalties = random_penalties(V, std::min<int64_t>(V, 1 + static_cast<int64_t>(rng() % 200)), rng);
      }
      r.seed = rng();
      r.offset = rng() % 4096;
      r.n_logprobs = u01(rng) < 0.5 ? static_cast<int32_t>(rng() % 21) : -1;
      rows.push_back(r);
    }
    out.emplace_back(V, V, kSampleMaxTopLogprobs, rows);
    HostBatch& b = out.back();
    const float scale = static_cast<float>(0.2 + 5.0 * u01(rng));
    fill_normal(b.logits.data(), static_cast<int64_t>(b.logits.size()), rng, scale);
    if (batch % 4 == 3) {
      for (float& z : b.logits) z = static_cast<float>(static_cast<int>(z * 2.0f)) * 0.5f;
    }
    b.poison();
  }
  return out;
}

// |a - b| <= tol, or equal (infinities).
inline bool near(float a, float b, double tol) { return a == b || std::fabs(static_cast<double>(a) - b) <= tol; }

// Compares a kernel's outputs with the reference's. Greedy rows, statuses, top ids and the
// penalised logits must be identical; sampled tokens may differ in at most max_token_mismatch rows
// (the documented rounding cases); logprobs within lp_tol. Returns the sampled-token mismatches.
inline int compare_batches(const HostBatch& want, const HostBatch& got, double lp_tol, int max_token_mismatch,
                           const std::string& what) {
  int mismatches = 0;
  for (int64_t r = 0; r < want.n; ++r) {
    const std::string w = what + " row " + std::to_string(r);
    EXPECT_EQ(got.status[r], want.status[r]) << w;
    const bool greedy = want.temperature[r] < kSampleGreedyTemperatureEps || want.top_k[r] == 1;
    if (want.status[r] != kSampleOk || greedy) {
      EXPECT_EQ(got.token[r], want.token[r]) << w;
    } else if (got.token[r] != want.token[r]) {
      ++mismatches;
      std::printf("[ NOTE ] %s: sampled %d, reference %d\n", w.c_str(), got.token[r], want.token[r]);
    }
    if (want.status[r] != kSampleOk) {
      EXPECT_TRUE(std::memcmp(&got.logprob[r], &want.logprob[r], 4) == 0 || (std::isnan(got.logprob[r]) &&
                                                                              std::isnan(want.logprob[r])))
          << w;
    } else if (got.token[r] == want.token[r]) {
      EXPECT_TRUE(near(got.logprob[r], want.logprob[r], lp_tol)) << w << ": " << got.logprob[r] << " vs "
                                                                  << want.logprob[r];
    }
    for (int64_t j = 0; j < want.top_stride; ++j) {
      const size_t k = static_cast<size_t>(r * want.top_stride + j);
      EXPECT_EQ(got.top_ids[k], want.top_ids[k]) << w << " top " << j;
      EXPECT_TRUE(near(got.top_logprobs[k], want.top_logprobs[k], lp_tol))
          << w << " top " << j << ": " << got.top_logprobs[k] << " vs " << want.top_logprobs[k];
    }
    if (want.status[r] == kSampleOk) {
      EXPECT_EQ(0, std::memcmp(got.logits.data() + r * got.stride, want.logits.data() + r * want.stride,
                               static_cast<size_t>(want.stride) * sizeof(float)))
          << w << ": penalised logits differ";
    }
  }
  EXPECT_LE(mismatches, max_token_mismatch) << what << ": sampled tokens differing from the reference";
  return mismatches;
}

}  // namespace eli::stest
