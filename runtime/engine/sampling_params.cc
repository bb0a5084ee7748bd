// runtime/engine/sampling_params.cc: validation of per-request sampling parameters.
//
// Every field of SamplingParams comes from an untrusted request. validate_sampling_params rejects
// anything the sampler cannot honour (NaN/Inf, negative or absurd counts, out-of-vocab ids) with an
// eli::Error(kInvalidArgument) whose message names the field and the offending value, so the
// server can answer 400 with it. After it passes, the sampler may rely on the invariants listed in
// include/eli/sampling_params.h.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "eli/error.h"
#include "eli/sampling_params.h"

namespace eli {
namespace {

constexpr int64_t kMaxTokensCap = int64_t{1} << 20;
constexpr size_t kMaxStopTokenIds = 1024;
constexpr double kMaxAbsPenalty = 2.0;  // OpenAI's range for presence/frequency penalties

}  // namespace

void validate_sampling_params(const SamplingParams& p, int64_t vocab_size) {
  ELI_CHECK_ARG(vocab_size >= 1, "vocab_size must be >= 1, got ", vocab_size);
  ELI_CHECK_ARG(p.max_tokens >= 1 && p.max_tokens <= kMaxTokensCap, "max_tokens must be in [1, ",
                kMaxTokensCap, "], got ", p.max_tokens);
  ELI_CHECK_ARG(std::isfinite(p.temperature) && p.temperature >= 0.0,
                "temperature must be finite and >= 0 (0 = greedy), got ", p.temperature);
  ELI_CHECK_ARG(p.top_k == 0 || p.top_k == -1 || p.top_k >= 1,
                "top_k must be 0 or -1 (off) or >= 1, got ", p.top_k);
  ELI_CHECK_ARG(std::isfinite(p.top_p) && p.top_p > 0.0 && p.top_p <= 1.0,
                "top_p must be finite and in (0, 1], got ", p.top_p);
  ELI_CHECK_ARG(std::isfinite(p.min_p) && p.min_p >= 0.0 && p.min_p <= 1.0,
                "min_p must be finite and in [0, 1], got ", p.min_p);
  ELI_CHECK_ARG(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0.0,
                "repetition_penalty must be finite and > 0, got ", p.repetition_penalty);
  ELI_CHECK_ARG(std::isfinite(p.presence_penalty) && std::fabs(p.presence_penalty) <= kMaxAbsPenalty,
                "presence_penalty must be finite and in [-2, 2], got ", p.presence_penalty);
  ELI_CHECK_ARG(std::isfinite(p.frequency_penalty) && std::fabs(p.frequency_penalty) <= kMaxAbsPenalty,
                "frequency_penalty must be finite and in [-2, 2], got ", p.frequency_penalty);
  ELI_CHECK_ARG(p.logprobs >= -1 && p.logprobs <= kMaxLogprobs, "logprobs must be in [-1, ",
                kMaxLogprobs, "] (-1 = none), got ", p.logprobs);
  ELI_CHECK_ARG(p.prompt_logprobs >= -1 && p.prompt_logprobs <= kMaxLogprobs, "prompt_logprobs must be in [-1, ",
                kMaxLogprobs, "] (-1 = none), got ", p.prompt_logprobs);
  ELI_CHECK_ARG(p.pooling == kPoolingNone || p.pooling == kPoolingLast || p.pooling == kPoolingMean,
                "pooling must be 0 (none), 1 (last) or 2 (mean), got ", p.pooling);
  ELI_CHECK_ARG(p.pooling == kPoolingNone || (p.logprobs < 0 && p.prompt_logprobs < 0),
                "an embedding request (pooling) samples nothing: logprobs and prompt_logprobs must be -1");
  ELI_CHECK_ARG(p.stop_token_ids.size() <= kMaxStopTokenIds, "stop_token_ids: at most ",
                kMaxStopTokenIds, " ids allowed, got ", p.stop_token_ids.size());
  for (size_t i = 0; i < p.stop_token_ids.size(); ++i) {
    const int64_t id = p.stop_token_ids[i];
    ELI_CHECK_ARG(id >= 0 && id < vocab_size, "stop_token_ids[", i, "] = ", id,
                  " is out of range [0, ", vocab_size, ")");
  }
  ELI_CHECK_ARG(p.logit_bias.size() <= kMaxLogitBiasEntries, "logit_bias: at most ", kMaxLogitBiasEntries,
                " entries allowed, got ", p.logit_bias.size());
  std::vector<int32_t> seen;
  seen.reserve(p.logit_bias.size());
  for (const auto& tb : p.logit_bias) {
    ELI_CHECK_ARG(tb.first >= 0 && tb.first < vocab_size, "logit_bias: token id ", tb.first,
                  " is out of range [0, ", vocab_size, ")");
    ELI_CHECK_ARG(std::isfinite(tb.second) && std::fabs(tb.second) <= kMaxLogitBias, "logit_bias[", tb.first,
                  "] must be finite and in [-", kMaxLogitBias, ", ", kMaxLogitBias, "], got ", tb.second);
    seen.push_back(tb.first);
  }
  std::sort(seen.begin(), seen.end());
  ELI_CHECK_ARG(std::adjacent_find(seen.begin(), seen.end()) == seen.end(),
                "logit_bias: a token id is listed twice");
  ELI_CHECK_ARG(static_cast<int64_t>(p.allowed_token_ids.size()) <= vocab_size,
                "allowed_token_ids: more ids (", p.allowed_token_ids.size(), ") than the vocabulary (", vocab_size, ")");
  for (size_t i = 0; i < p.allowed_token_ids.size(); ++i) {
    const int64_t id = p.allowed_token_ids[i];
    ELI_CHECK_ARG(id >= 0 && id < vocab_size, "allowed_token_ids[", i, "] = ", id, " is out of range [0, ",
                  vocab_size, ")");
  }
  ELI_CHECK_ARG(p.min_tokens >= 0 && p.min_tokens <= p.max_tokens, "min_tokens must be in [0, max_tokens = ",
                p.max_tokens, "], got ", p.min_tokens);
}

}  // namespace eli
