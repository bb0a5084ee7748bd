// runtime/engine/sampler.cc: host-side token sampler; see sampler.h for the semantics.
//
// Cost per call is O(vocab) plus: top-k keeps a k-heap in one scan (O(vocab + k log k) on real
// logits); top-p
// without top-k buckets the tokens by probability (log scale) and sorts only the one bucket where
// the cumulative mass crosses top_p. All probability arithmetic is in double with max
// subtraction, so the best candidate always has weight exactly 1 and is never filtered away.
#include "runtime/engine/sampler.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "eli/error.h"

namespace eli {
namespace {

// top-p without top-k buckets tokens by (z_max - z) / T: 32 buckets per unit, up to 64 units
// (weight e^-64), the last bucket takes the rest.
constexpr int kTopPBuckets = 2048;
constexpr double kTopPBucketsPerUnit = 32.0;

// Uniform double in [0, 1) from the top 53 bits: portable across standard libraries.
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

float clamp_to_float(double v) {
  return static_cast<float>(std::min<double>(FLT_MAX, std::max<double>(-FLT_MAX, v)));
}

bool penalties_active(const SamplingParams& p) {
  return p.repetition_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0;
}

}  // namespace

// ---- SequenceSamplingState -----------------------------------------------------------------------

SequenceSamplingState::SequenceSamplingState(const SamplingParams& p,
                                             const std::vector<int32_t>& prompt_ids,
                                             uint64_t fallback_seed)
    : rng_(p.has_seed ? p.seed : fallback_seed) {
  for (size_t i = 0; i < prompt_ids.size(); ++i) {
    ELI_CHECK(prompt_ids[i] >= 0, "prompt token id at position ", i, " is negative: ",
              prompt_ids[i]);
  }
  prompt_tokens_ = prompt_ids;
  std::sort(prompt_tokens_.begin(), prompt_tokens_.end());
  prompt_tokens_.erase(std::unique(prompt_tokens_.begin(), prompt_tokens_.end()),
                       prompt_tokens_.end());
}

void SequenceSamplingState::append_output(int32_t token) {
  ELI_CHECK(token >= 0, "generated token id is negative: ", token);
  ++output_counts_[token];
  ++n_output_;
}

bool SequenceSamplingState::in_prompt(int32_t token) const {
  return std::binary_search(prompt_tokens_.begin(), prompt_tokens_.end(), token);
}

// ---- penalties -----------------------------------------------------------------------------------

void apply_penalties(float* logits, int64_t vocab, const SamplingParams& p,
                     const SequenceSamplingState& state) {
  if (!penalties_active(p)) return;
  const auto& prompt = state.prompt_tokens();
  const auto& counts = state.output_counts();
  // Ids are checked before any write, so a bad id leaves the logits untouched.
  ELI_CHECK(prompt.empty() || prompt.back() < vocab, "prompt token id ", prompt.back(),
            " is out of range [0, ", vocab, ")");
  for (const auto& kv : counts) {
    ELI_CHECK(kv.first < vocab, "generated token id ", kv.first, " is out of range [0, ", vocab,
              ")");
  }

  const double rep = p.repetition_penalty;
  if (rep != 1.0) {
    auto penalise = [&](int32_t t) {
      const double v = logits[t];
      logits[t] = clamp_to_float(v > 0.0 ? v / rep : v * rep);
    };
    for (int32_t t : prompt) penalise(t);
    for (const auto& kv : counts) {
      if (!state.in_prompt(kv.first)) penalise(kv.first);  // each seen token once
    }
  }
  if (p.presence_penalty != 0.0 || p.frequency_penalty != 0.0) {
    for (const auto& kv : counts) {
      if (kv.second <= 0) continue;
      const double v = static_cast<double>(logits[kv.first]) - p.frequency_penalty * kv.second -
                       p.presence_penalty;
      logits[kv.first] = clamp_to_float(v);
    }
  }
}

// ---- Sampler -------------------------------------------------------------------------------------

SampleResult Sampler::sample(const float* logits, int64_t vocab, const SamplingParams& p,
                             SequenceSamplingState& state) {
  ELI_CHECK(logits != nullptr, "sample: logits is null");
  ELI_CHECK(vocab >= 1 && vocab <= INT32_MAX, "sample: vocab must be in [1, 2^31), got ", vocab);
  for (int64_t i = 0; i < vocab; ++i) {
    if (!std::isfinite(logits[i])) {
      ELI_THROW(kInvalidArgument, "non-finite logits: logit[", i, "] = ", logits[i],
                " (fp16 overflow or a broken model)");
    }
  }

  work_.assign(logits, logits + vocab);
  apply_penalties(work_.data(), vocab, p, state);

  SampleResult out;
  const bool greedy = p.temperature < kGreedyTemperatureEps || p.top_k == 1;
  if (greedy) {
    int64_t best = 0;
    float best_v = work_[0];
    for (int64_t i = 1; i < vocab; ++i) {
      if (work_[i] > best_v) {  // strict: ties keep the lowest id
        best = i;
        best_v = work_[i];
      }
    }
    out.token = static_cast<int32_t>(best);
  } else {
    out.token = sample_filtered(vocab, p, state.rng());
  }

  if (p.logprobs >= 0) {
    compute_logprobs(logits, vocab, out.token, std::min<int64_t>(p.logprobs, vocab), &out);
  }
  return out;
}

void Sampler::compute_logprobs(const float* logits, int64_t vocab, int sampled, int n_top,
                               SampleResult* out) {
  float max_f = logits[0];
  for (int64_t i = 1; i < vocab; ++i) max_f = logits[i] > max_f ? logits[i] : max_f;
  const double max_logit = max_f;
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(logits[i] - max_f);  // float exp, double sum
  const double lse = max_logit + std::log(sum);
  out->logprob = static_cast<float>(static_cast<double>(logits[sampled]) - lse);

  if (n_top <= 0) return;
  // Top n by one scan with a small sorted list (n <= kMaxLogprobs): best first, ties lower id.
  // Scanning ids in ascending order and inserting only on strictly greater keeps ties ordered.
  std::vector<int32_t> top;
  top.reserve(static_cast<size_t>(n_top) + 1);
  for (int64_t i = 0; i < vocab; ++i) {
    const float v = logits[i];
    if (static_cast<int>(top.size()) == n_top && !(v > logits[top.back()])) continue;
    auto pos = std::upper_bound(top.begin(), top.end(), v,
                                [&](float val, int32_t id) { return val > logits[id]; });
    top.insert(pos, static_cast<int32_t>(i));
    if (static_cast<int>(top.size()) > n_top) top.pop_back();
  }
  out->top_logprobs.reserve(top.size());
  for (int32_t id : top) {
    out->top_logprobs.emplace_back(id, static_cast<float>(static_cast<double>(logits[id]) - lse));
  }
}

int32_t Sampler::sample_filtered(int64_t vocab, const SamplingParams& p, std::mt19937_64& rng) {
  const float* z = work_.data();
  // Order: higher logit first, ties by lower id. Used by top-k and top-p alike.
  auto better = [z](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };

  // Candidates: ids 0..vocab-1 while all_ids, else idx_[0, n).
  bool all_ids = true;
  int64_t n = vocab;
  auto cand = [&](int64_t i) { return all_ids ? static_cast<int32_t>(i) : idx_[i]; };

  // top-k: keep the k best (O(vocab)), sort them (O(k log k)) so top-p can walk them.
  if (p.top_k > 1 && p.top_k < vocab) {
    // One scan with a k-heap whose front is the worst kept id: on real logits almost every id
    // fails the first comparison, so this beats nth_element over an index array by ~10x.
    n = p.top_k;
    idx_.clear();
    idx_.reserve(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) {
      const int32_t t = static_cast<int32_t>(i);
      if (static_cast<int64_t>(idx_.size()) < n) {
        idx_.push_back(t);
        std::push_heap(idx_.begin(), idx_.end(), better);
      } else if (better(t, idx_.front())) {
        std::pop_heap(idx_.begin(), idx_.end(), better);
        idx_.back() = t;
        std::push_heap(idx_.begin(), idx_.end(), better);
      }
    }
    std::sort_heap(idx_.begin(), idx_.end(), better);  // best first
    all_ids = false;
  }

  // Temperature-scaled weights exp((z - z_max) / T) of the candidates, indexed by token id.
  float z_max_f = z[cand(0)];
  if (all_ids) {
    for (int64_t i = 1; i < n; ++i) z_max_f = z[i] > z_max_f ? z[i] : z_max_f;
  }
  const double z_max = z_max_f;
  const double inv_t = 1.0 / p.temperature;
  weight_.resize(static_cast<size_t>(vocab));
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t t = cand(i);
    // float exp (about 2x faster than double) of a double-computed argument; sums stay double.
    weight_[t] = std::exp(static_cast<float>((static_cast<double>(z[t]) - z_max) * inv_t));
    total += weight_[t];
  }

  // top-p: the smallest best-first prefix whose mass reaches top_p (at least one token).
  if (p.top_p < 1.0) {
    const double target = p.top_p * total;
    if (all_ids) {
      n = top_p_unsorted(vocab, z_max, inv_t, target);
      all_ids = false;
    } else {
      double cum = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        cum += weight_[idx_[i]];
        if (cum >= target) {
          n = i + 1;
          break;
        }
      }
    }
  }

  // min-p: drop tokens with prob < min_p * max_prob, i.e. weight < min_p (the best has weight 1,
  // so it always survives).
  if (p.min_p > 0.0) {
    idx_.resize(static_cast<size_t>(vocab));
    int64_t w = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int32_t t = cand(i);
      if (weight_[t] >= p.min_p) idx_[w++] = t;
    }
    n = w;
    all_ids = false;
  }

  total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += weight_[cand(i)];
  const double u = uniform01(rng) * total;
  double cum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    cum += weight_[cand(i)];
    if (u < cum) return cand(i);
  }
  // Rounding left u >= cum: return the last candidate with non-zero weight.
  for (int64_t i = n - 1; i > 0; --i) {
    if (weight_[cand(i)] > 0.0) return cand(i);
  }
  return cand(0);
}

int64_t Sampler::top_p_unsorted(int64_t vocab, double z_max, double inv_t, double target) {
  // Bucket tokens by scaled distance from the best, s = (z_max - z) / T >= 0 (monotone in z, so
  // every token of a lower bucket beats every token of a higher one). Whole buckets are kept while
  // their mass stays below target; only the bucket where the target is crossed gets sorted.
  const float* z = work_.data();
  const double max_s = (kTopPBuckets - 1) / kTopPBucketsPerUnit;
  auto bucket_of = [&](int32_t t) {
    const double s = (z_max - static_cast<double>(z[t])) * inv_t;
    return s >= max_s ? kTopPBuckets - 1 : static_cast<int>(s * kTopPBucketsPerUnit);
  };
  bucket_mass_.assign(kTopPBuckets, 0.0);
  for (int64_t t = 0; t < vocab; ++t) bucket_mass_[bucket_of(static_cast<int32_t>(t))] += weight_[t];
  int boundary = kTopPBuckets - 1;
  double cum = 0.0;
  for (int b = 0; b < kTopPBuckets; ++b) {
    if (cum + bucket_mass_[b] >= target) {
      boundary = b;
      break;
    }
    cum += bucket_mass_[b];
  }
  idx_.resize(static_cast<size_t>(vocab));
  boundary_ids_.clear();
  int64_t n = 0;
  for (int64_t t = 0; t < vocab; ++t) {
    const int b = bucket_of(static_cast<int32_t>(t));
    if (b < boundary) {
      idx_[n++] = static_cast<int32_t>(t);
    } else if (b == boundary) {
      boundary_ids_.push_back(static_cast<int32_t>(t));
    }
  }
  std::sort(boundary_ids_.begin(), boundary_ids_.end(), [z](int32_t a, int32_t b) {
    return z[a] > z[b] || (z[a] == z[b] && a < b);
  });
  for (int32_t t : boundary_ids_) {  // cum < target here, so at least one boundary id is kept
    idx_[n++] = t;
    cum += weight_[t];
    if (cum >= target) break;
  }
  return n;
}

}  // namespace eli
