// kernels/ref/sampling_ref.cc: reference of Op::kSample (the semantics are in kernels/sample_ops.h).
// Plain and sequential: a full sort gives the order O; masses add up in that order (integers, so
// any order gives the same sums). Every other kSample kernel must give the same outputs (tokens,
// statuses, top ids, penalised logits exactly; logprobs up to the summation order of the lse).
#include "kernels/ref/sampling_ref.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <numeric>

#include "eli/error.h"
#include "kernels/sample_math.h"

namespace eli {

void check_sample_args(const SampleArgs& a) {
  ELI_CHECK(a.n_rows >= 0, "sample: n_rows must be >= 0, got ", a.n_rows);
  ELI_CHECK(a.vocab >= 1 && a.vocab <= INT32_MAX, "sample: vocab must be in [1, 2^31), got ", a.vocab);
  ELI_CHECK(a.logits_stride >= a.vocab, "sample: logits_stride ", a.logits_stride, " < vocab ", a.vocab);
  ELI_CHECK(a.top_stride >= 0 && a.top_stride <= kSampleMaxTopLogprobs, "sample: top_stride must be in [0, ",
            kSampleMaxTopLogprobs, "], got ", a.top_stride);
  ELI_CHECK(a.top_stride == 0 || (a.top_ids != nullptr && a.top_logprobs != nullptr),
            "sample: top_ids/top_logprobs are null with top_stride ", a.top_stride);
  ELI_CHECK(a.token && a.logprob && a.status && a.logits && a.temperature && a.top_k && a.top_p && a.min_p &&
                a.repetition_penalty && a.presence_penalty && a.frequency_penalty && a.seed && a.offset &&
                a.n_logprobs,
            "sample: a required pointer is null");
  ELI_CHECK(a.penalty_offsets == nullptr || (a.penalty_tokens && a.penalty_counts && a.penalty_raw),
            "sample: penalty lists need tokens, counts and penalty_raw");
  ELI_CHECK(a.allow_mask == nullptr || (a.mask_row != nullptr && a.mask_words >= (a.vocab + 31) / 32),
            "sample: allow_mask needs mask_row and mask_words >= ", (a.vocab + 31) / 32, ", got ", a.mask_words);
}

void sample_ref_row(const SampleArgs& a, int64_t r, SampleRefTrace* trace) {
  const int64_t V = a.vocab;
  const int64_t p = a.row_slot != nullptr ? a.row_slot[r] : r;  // the entry of the request's parameters
  float* x = a.logits + r * a.logits_stride;
  const int64_t ts = a.top_stride;
  for (int64_t j = 0; j < ts; ++j) {
    a.top_ids[r * ts + j] = -1;
    a.top_logprobs[r * ts + j] = 0.0f;
  }
  a.logprob[r] = 0.0f;
  if (trace != nullptr) *trace = SampleRefTrace{};

  // 1. Non-finite logits fail the row.
  for (int64_t i = 0; i < V; ++i) {
    if (!std::isfinite(x[i])) {
      a.status[r] = kSampleNonFinite;
      a.token[r] = static_cast<int32_t>(i);
      a.logprob[r] = x[i];
      return;
    }
  }

  // 2. Raw log-softmax (as the host sampler: float exp of a float difference, double sum) and top-n.
  const int n_lp = a.n_logprobs[p];
  double lse = 0.0;
  if (n_lp >= 0) {
    float max_f = x[0];
    for (int64_t i = 1; i < V; ++i) max_f = x[i] > max_f ? x[i] : max_f;
    double sum = 0.0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(x[i] - max_f);
    lse = static_cast<double>(max_f) + std::log(sum);
    const int64_t n_top = std::min<int64_t>(std::min<int64_t>(n_lp, V), ts);
    if (n_top > 0) {
      std::vector<int32_t> ids(static_cast<size_t>(V));
      std::iota(ids.begin(), ids.end(), 0);
      std::partial_sort(ids.begin(), ids.begin() + n_top, ids.end(),
                        [x](int32_t p, int32_t q) { return sample_before(x[p], p, x[q], q); });
      for (int64_t j = 0; j < n_top; ++j) {
        a.top_ids[r * ts + j] = ids[j];
        a.top_logprobs[r * ts + j] = static_cast<float>(static_cast<double>(x[ids[j]]) - lse);
      }
    }
  }

  // 3. Penalties and logit bias in place; the raw values are kept for the token's logprob.
  const double rep = a.repetition_penalty[p], pres = a.presence_penalty[p], freq = a.frequency_penalty[p];
  const bool pen_active = sample_penalties_active(rep, pres, freq);
  int32_t pb = 0, pe = 0;
  if (a.penalty_offsets != nullptr && (pen_active || a.penalty_bias != nullptr)) {
    pb = a.penalty_offsets[r];
    pe = a.penalty_offsets[r + 1];
    for (int32_t j = pb; j < pe; ++j) {
      const int32_t t = a.penalty_tokens[j];
      if (t < 0 || t >= V) continue;  // the caller checks ids; never write out of the row
      a.penalty_raw[j] = x[t];
      x[t] = sample_bias_and_penalize(x[t], a.penalty_bias != nullptr ? a.penalty_bias[j] : 0.0f,
                                      a.penalty_counts[j], pen_active, rep, pres, freq);
    }
  }

  // 3b. The token mask.
  if (a.allow_mask != nullptr && a.mask_row[r] >= 0) {
    const uint32_t* mask = a.allow_mask + static_cast<int64_t>(a.mask_row[r]) * a.mask_words;
    bool any = false;
    for (int64_t i = 0; i < V; ++i) {
      if (sample_mask_allows(mask, static_cast<int32_t>(i))) {
        any = true;
      } else {
        x[i] = -INFINITY;
      }
    }
    if (!any) {
      a.status[r] = kSampleMaskedOut;
      a.token[r] = -1;
      return;
    }
  }

  // 4. Greedy.
  int32_t best = 0;
  for (int64_t i = 1; i < V; ++i) {
    if (x[i] > x[best]) best = static_cast<int32_t>(i);  // strict: ties keep the lowest id
  }
  const float zmax = x[best];
  const double temperature = a.temperature[p];
  const int32_t k = a.top_k[p];
  int32_t token = best;
  if (temperature < kSampleGreedyTemperatureEps || k == 1) {
    if (trace != nullptr) trace->greedy = true;
  } else {
    // 5. Filters in the order (z desc, id asc), then the Gumbel-max draw.
    const float inv_t = sample_inv_temperature(temperature);
    const double top_p = a.top_p[p], min_p = a.min_p[p];
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    int64_t kept = V;
    if (k > 1 && k < V) kept = k;
    if (k > 1 && k < V) {
      std::partial_sort(order.begin(), order.begin() + kept, order.end(),
                        [x](int32_t p, int32_t q) { return sample_before(x[p], p, x[q], q); });
    } else if (top_p < 1.0) {
      std::sort(order.begin(), order.end(), [x](int32_t p, int32_t q) { return sample_before(x[p], p, x[q], q); });
    }
    auto s_of = [&](int32_t t) { return sample_scaled(x[t], zmax, inv_t); };
    if (top_p < 1.0) {
      uint64_t total = 0;
      for (int64_t i = 0; i < kept; ++i) total += sample_mass(s_of(order[i]));
      const uint64_t target = sample_top_p_target(total, top_p);
      uint64_t cum = 0;
      for (int64_t i = 0; i < kept; ++i) {
        cum += sample_mass(s_of(order[i]));
        if (cum >= target) {
          kept = i + 1;
          break;
        }
      }
    }
    const uint64_t key = sample_row_key(a.seed[p], a.offset[r]);
    float best_key = -INFINITY;
    int32_t best_id = INT32_MAX;
    for (int64_t i = 0; i < kept; ++i) {
      const int32_t t = order[i];
      const float s = s_of(t);
      if (min_p > 0.0 && !sample_min_p_keeps(s, min_p)) continue;
      if (trace != nullptr) trace->survivors.push_back(t);
      const float g = sample_gumbel_key(s, key, t);
      if (sample_before(g, t, best_key, best_id)) {
        best_key = g;
        best_id = t;
      }
    }
    if (trace != nullptr) std::sort(trace->survivors.begin(), trace->survivors.end());
    token = best_id == INT32_MAX ? best : best_id;  // the max always survives; defensive only
  }

  // 6. Outputs.
  a.token[r] = token;
  a.status[r] = kSampleOk;
  if (n_lp >= 0) {
    float raw = x[token];
    for (int32_t j = pb; j < pe; ++j) {
      if (a.penalty_tokens[j] == token) raw = a.penalty_raw[j];
    }
    a.logprob[r] = static_cast<float>(static_cast<double>(raw) - lse);
  }
}

void sample_ref(const void* args, const ExecContext&) {
  const SampleArgs& a = *static_cast<const SampleArgs*>(args);
  check_sample_args(a);
  for (int64_t r = 0; r < a.n_rows; ++r) sample_ref_row(a, r);
}

}  // namespace eli
