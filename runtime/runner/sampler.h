// runtime/runner/sampler.h: a request's sampling state, and the host Sampler: one row of logits ->
// one token by the reference of eli's sampling semantics (kernels/ref/sampling_ref.cc).
//
// The semantics are defined once, in kernels/sample_ops.h (order of operations, vLLM's) and
// kernels/sample_math.h (numerics, random numbers): logprobs of the raw logits; repetition, then
// presence/frequency penalties; greedy argmax (lowest id on ties) when temperature <
// kGreedyTemperatureEps or top_k == 1; otherwise temperature, top-k, top-p (integer masses), min-p,
// and a Gumbel-max draw whose random numbers are a counter hash of (the request's seed, the index
// of the output token, the token id). Every kSample kernel (reference, CPU, CUDA) gives the same
// token for the same logits: a seeded request draws the same tokens on every device, whatever else
// is in the batch. The engine samples through DeviceSampler (runtime/runner/device_sampler.h) on
// every device; Sampler is the reference that tests hold the kernels to.
//
// Invariants: params were checked by validate_sampling_params; a SequenceSamplingState belongs to
// one request and holds no random state beyond its seed (draw k of the request uses (seed, k)).
// Sampler is not thread-safe (scratch buffers); use one per thread.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "eli/sampling_params.h"

namespace eli {

// Temperatures below this are treated as greedy (vLLM's _SAMPLING_EPS).
constexpr double kGreedyTemperatureEps = 1e-5;

// Per-request sampling state: the seed and the token statistics the penalties need.
class SequenceSamplingState {
 public:
  // The seed is p.seed if p.has_seed, else fallback_seed (the engine draws one per request from
  // its own seed). Prompt ids must be >= 0 (their upper bound is checked against the vocab when
  // penalties are applied).
  SequenceSamplingState(const SamplingParams& p, const std::vector<int32_t>& prompt_ids,
                        uint64_t fallback_seed);

  // A copy is another request's state as far as key() goes (a fresh key), so that a sampler never
  // mistakes it for the original.
  SequenceSamplingState(const SequenceSamplingState& other);
  SequenceSamplingState& operator=(const SequenceSamplingState& other);
  SequenceSamplingState(SequenceSamplingState&&) noexcept = default;
  SequenceSamplingState& operator=(SequenceSamplingState&&) noexcept = default;

  // Records a generated token (updates the counts used by the penalties).
  void append_output(int32_t token);

  uint64_t seed() const { return seed_; }
  // Unique among every state this process made (never 0): the key of the request's entry in a
  // DeviceSampler's parameter slot table (its SamplingParams do not change after it is made).
  uint64_t key() const { return key_; }
  const std::vector<int32_t>& prompt_tokens() const { return prompt_tokens_; }  // sorted, unique
  const std::unordered_map<int32_t, int32_t>& output_counts() const { return output_counts_; }
  int64_t n_output() const { return n_output_; }
  bool in_prompt(int32_t token) const;

 private:
  uint64_t seed_ = 0;
  uint64_t key_ = 0;
  std::vector<int32_t> prompt_tokens_;                   // (n_unique_prompt,) sorted ascending
  std::unordered_map<int32_t, int32_t> output_counts_;  // token -> times generated
  int64_t n_output_ = 0;
};

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;  // raw log-softmax of `token`; meaningful only when p.logprobs >= 0
  std::vector<std::pair<int32_t, float>> top_logprobs;  // (min(p.logprobs, vocab),) best first
};

// The penalty list of a request (what Op::kSample's penalty_tokens/penalty_counts hold for its
// row): each token once, ascending, with its output count (0 for prompt-only tokens, listed only
// when the repetition penalty is on); empty when no penalty is active. With `bias` (not null), the
// tokens of p.logit_bias are merged in (count -1 for a token listed for its bias only) and *bias
// gets each entry's bias (0 for none). Throws eli::Error (kInvalidArgument) if a recorded token id
// is >= vocab.
void penalty_list(const SamplingParams& p, const SequenceSamplingState& state, int64_t vocab,
                  std::vector<std::pair<int32_t, int32_t>>* out, std::vector<float>* bias = nullptr);

// Applies the repetition, presence and frequency penalties to logits in place (vocab,), as step 3
// of the semantics. Throws (logits untouched) if a recorded token id is >= vocab.
void apply_penalties(float* logits, int64_t vocab, const SamplingParams& p,
                     const SequenceSamplingState& state);

// Throws the eli::Error(kInvalidArgument) that names a non-finite logit (index, value).
[[noreturn]] void throw_non_finite_logits(int32_t index, float value);

class Sampler {
 public:
  // logits: (vocab,) fp32, row of the model output for this request. draw_index: the index of the
  // output token being drawn (-1: state.n_output(), i.e. the next one). Does not modify logits and
  // does not call state.append_output (the engine does, once the token is accepted). Throws
  // eli::Error(kInvalidArgument) on non-finite logits and bad recorded ids. mask (optional,
  // (vocab + 31) / 32 words, runtime/runner/step_masks.h): the tokens allowed; p.logit_bias always
  // applies. A mask that allows no token throws eli::Error(kInvalidArgument).
  SampleResult sample(const float* logits, int64_t vocab, const SamplingParams& p,
                      const SequenceSamplingState& state, int64_t draw_index = -1,
                      const uint32_t* mask = nullptr);

 private:
  std::vector<float> work_;  // (vocab,) the row, penalised in place by the reference
  std::vector<std::pair<int32_t, int32_t>> pen_;
  std::vector<int32_t> pen_tokens_, pen_counts_, top_ids_;
  std::vector<float> pen_raw_, pen_bias_, top_logprobs_;
};

}  // namespace eli
