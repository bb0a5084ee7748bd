// runtime/engine/sampler.h: host-side token sampler (one row of logits -> one token).
//
// Semantics follow vLLM:
//  - logprobs (of the sampled token and the top-n) are the log-softmax of the RAW logits, before
//    penalties and temperature; computed in double with max subtraction; top-n sorted by logprob
//    descending, ties by lower id.
//  - Processing order: repetition penalty (tokens seen in the prompt or the output:
//    logit > 0 ? logit / r : logit * r), then presence/frequency penalties on output tokens
//    (logit -= presence * (count > 0) + frequency * count); then greedy argmax (ties -> lowest id)
//    when temperature < kGreedyTemperatureEps or top_k == 1; otherwise divide by temperature,
//    top-k, top-p (smallest highest-probability prefix with mass >= top_p), min-p (drop tokens with
//    prob < min_p * max_prob), renormalise and draw with the request's own rng.
//  - The highest-scoring token always survives every filter, so at least one token is sampleable.
//  - Non-finite input logits (NaN/+-Inf) throw eli::Error(kInvalidArgument, "non-finite logits...").
//
// Invariants: params were checked by validate_sampling_params; a SequenceSamplingState belongs to
// one request, and its rng is only advanced by that request's non-greedy draws, so a seeded request
// gives the same tokens whatever else is in the batch. Sampler is not thread-safe (scratch buffers);
// use one per thread.
#pragma once

#include <cstdint>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include "eli/sampling_params.h"

namespace eli {

// Temperatures below this are treated as greedy (vLLM's _SAMPLING_EPS).
constexpr double kGreedyTemperatureEps = 1e-5;

// Per-request sampling state: the rng and the token statistics the penalties need.
class SequenceSamplingState {
 public:
  // The rng is seeded with p.seed if p.has_seed, else with fallback_seed. Prompt ids must be >= 0
  // (their upper bound is checked against the vocab when penalties are applied).
  SequenceSamplingState(const SamplingParams& p, const std::vector<int32_t>& prompt_ids,
                        uint64_t fallback_seed);

  // Records a generated token (updates the counts used by the penalties).
  void append_output(int32_t token);

  std::mt19937_64& rng() { return rng_; }
  const std::vector<int32_t>& prompt_tokens() const { return prompt_tokens_; }  // sorted, unique
  const std::unordered_map<int32_t, int32_t>& output_counts() const { return output_counts_; }
  int64_t n_output() const { return n_output_; }
  bool in_prompt(int32_t token) const;

 private:
  std::mt19937_64 rng_;
  std::vector<int32_t> prompt_tokens_;                   // (n_unique_prompt,) sorted ascending
  std::unordered_map<int32_t, int32_t> output_counts_;  // token -> times generated
  int64_t n_output_ = 0;
};

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;  // raw log-softmax of `token`; meaningful only when p.logprobs >= 0
  std::vector<std::pair<int32_t, float>> top_logprobs;  // (min(p.logprobs, vocab),) best first
};

// Applies the repetition, presence and frequency penalties to logits in place (vocab,). Exposed for
// tests and for a device sampler's reference. Throws if a recorded token id is >= vocab.
void apply_penalties(float* logits, int64_t vocab, const SamplingParams& p,
                     const SequenceSamplingState& state);

class Sampler {
 public:
  // logits: (vocab,) fp32, row of the model output for this request. Does not modify logits and
  // does not call state.append_output (the engine does, once the token is accepted).
  SampleResult sample(const float* logits, int64_t vocab, const SamplingParams& p,
                      SequenceSamplingState& state);

 private:
  void compute_logprobs(const float* logits, int64_t vocab, int sampled, int n_top,
                        SampleResult* out);
  int32_t sample_filtered(int64_t vocab, const SamplingParams& p, std::mt19937_64& rng);
  // Fills idx_ with the top-p set when no top-k was applied; returns its size.
  int64_t top_p_unsorted(int64_t vocab, double z_max, double inv_t, double target);

  std::vector<float> work_;     // (vocab,) penalised logits
  std::vector<int32_t> idx_;    // (vocab,) candidate ids
  std::vector<double> weight_;  // (vocab,) unnormalised probabilities, valid for candidates only
  std::vector<double> bucket_mass_;      // (kTopPBuckets,) top-p: mass per probability bucket
  std::vector<int32_t> boundary_ids_;    // top-p: ids of the bucket that crosses the target
};

}  // namespace eli
