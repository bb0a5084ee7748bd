// eli/sampling_params.h: how one request picks its next token and when it stops.
//
// Invariants (validate_sampling_params): temperature >= 0 and finite (0 = greedy); top_k == 0 or
// -1 means off, else >= 1; 0 < top_p <= 1; 0 <= min_p <= 1; repetition_penalty > 0; penalties
// finite; max_tokens >= 1; logprobs and prompt_logprobs in [0, kMaxLogprobs] (or -1); stop ids in
// [0, vocab); pooling one of kPooling*, and a pooling request asks for no logprobs; logit_bias ids
// in [0, vocab), unique, biases finite in [-kMaxLogitBias, kMaxLogitBias]; allowed_token_ids in
// [0, vocab); 0 <= min_tokens <= max_tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "eli/token_constraint.h"

namespace eli {

constexpr int kMaxLogprobs = 20;
constexpr double kMaxLogitBias = 100.0;    // OpenAI's range for logit_bias values
constexpr size_t kMaxLogitBiasEntries = 1024;

struct SamplingParams {
  int64_t max_tokens = 16;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  uint64_t seed = 0;
  bool has_seed = false;
  std::vector<int64_t> stop_token_ids;
  bool ignore_eos = false;
  int logprobs = -1;  // -1: none; 0: the sampled token's logprob; n: plus the top n
  // Prefix-cache salt (0: none): mixed into the hash of the sequence's first KV block, so
  // sequences with different salts never share cached blocks (per-tenant isolation).
  uint64_t cache_salt = 0;
  // Prompt logprobs (vLLM's prompt_logprobs): -1 none; k >= 0: for every prompt position after the
  // first, the logprob of the prompt token there plus the top k, on the request's first output.
  int prompt_logprobs = -1;
  // An embedding request when not kPoolingNone: nothing is sampled; the request ends after its
  // prompt with one output holding the pooled final hidden state (after the final norm).
  int pooling = 0;
  // ---- constraints on which tokens may be sampled (runtime/engine/token_mask.h applies them)
  // Added to the logit of each listed token before the penalties (OpenAI's logit_bias).
  std::vector<std::pair<int32_t, float>> logit_bias;
  // Non-empty: only these tokens may be sampled (vLLM's allowed_token_ids).
  std::vector<int32_t> allowed_token_ids;
  // The stop tokens (stop_token_ids and, unless ignore_eos, the model's EOS ids) cannot be sampled
  // before this many output tokens.
  int64_t min_tokens = 0;
  // Structured output: the request's token constraint (include/eli/token_constraint.h); null: none.
  std::shared_ptr<TokenConstraint> constraint;
};

constexpr int kPoolingNone = 0;
constexpr int kPoolingLast = 1;  // the last prompt token's hidden state
constexpr int kPoolingMean = 2;  // the mean over every prompt token

// Throws eli::Error(kInvalidArgument) naming the bad field.
void validate_sampling_params(const SamplingParams& p, int64_t vocab_size);

}  // namespace eli
