// runtime/runner/sampler.cc: SequenceSamplingState, the penalty list of a request, and the host
// Sampler (one row through the kSample reference); see sampler.h.
#include "runtime/runner/sampler.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>

#include "eli/error.h"
#include "kernels/ref/sampling_ref.h"
#include "kernels/sample_math.h"

namespace eli {

// ---- SequenceSamplingState -----------------------------------------------------------------------

namespace {

uint64_t new_state_key() {
  static std::atomic<uint64_t> next_key{1};
  return next_key.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

SequenceSamplingState::SequenceSamplingState(const SequenceSamplingState& other)
    : seed_(other.seed_), key_(new_state_key()), prompt_tokens_(other.prompt_tokens_),
      output_counts_(other.output_counts_), n_output_(other.n_output_) {}

SequenceSamplingState& SequenceSamplingState::operator=(const SequenceSamplingState& other) {
  if (this != &other) {
    seed_ = other.seed_;
    key_ = new_state_key();
    prompt_tokens_ = other.prompt_tokens_;
    output_counts_ = other.output_counts_;
    n_output_ = other.n_output_;
  }
  return *this;
}

SequenceSamplingState::SequenceSamplingState(const SamplingParams& p,
                                             const std::vector<int32_t>& prompt_ids,
                                             uint64_t fallback_seed)
    : seed_(p.has_seed ? p.seed : fallback_seed), key_(new_state_key()) {
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

namespace {

// Merges p.logit_bias into a sorted penalty list (see penalty_list).
void merge_bias(const SamplingParams& p, int64_t vocab, std::vector<std::pair<int32_t, int32_t>>* out,
                std::vector<float>* bias) {
  bias->assign(out->size(), 0.0f);
  if (p.logit_bias.empty()) return;
  const size_t n_pen = out->size();
  for (const auto& tb : p.logit_bias) {
    ELI_CHECK(tb.first >= 0 && tb.first < vocab, "logit_bias token id ", tb.first, " is out of range [0, ", vocab, ")");
    auto it = std::lower_bound(out->begin(), out->begin() + static_cast<std::ptrdiff_t>(n_pen),
                               std::make_pair(tb.first, INT32_MIN));
    if (it != out->begin() + static_cast<std::ptrdiff_t>(n_pen) && it->first == tb.first) {
      (*bias)[static_cast<size_t>(it - out->begin())] = tb.second;
    } else {
      out->emplace_back(tb.first, -1);
      bias->push_back(tb.second);
    }
  }
  std::vector<size_t> order(out->size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return (*out)[a].first < (*out)[b].first; });
  std::vector<std::pair<int32_t, int32_t>> o2(out->size());
  std::vector<float> b2(out->size());
  for (size_t i = 0; i < order.size(); ++i) {
    o2[i] = (*out)[order[i]];
    b2[i] = (*bias)[order[i]];
  }
  out->swap(o2);
  bias->swap(b2);
}

}  // namespace

void penalty_list(const SamplingParams& p, const SequenceSamplingState& state, int64_t vocab,
                  std::vector<std::pair<int32_t, int32_t>>* out, std::vector<float>* bias) {
  out->clear();
  if (bias != nullptr) bias->clear();
  if (!sample_penalties_active(p.repetition_penalty, p.presence_penalty, p.frequency_penalty)) {
    if (bias != nullptr) merge_bias(p, vocab, out, bias);
    return;
  }
  const auto& prompt = state.prompt_tokens();
  ELI_CHECK(prompt.empty() || prompt.back() < vocab, "prompt token id ", prompt.back(),
            " is out of range [0, ", vocab, ")");
  for (const auto& kv : state.output_counts()) {
    ELI_CHECK(kv.first < vocab, "generated token id ", kv.first, " is out of range [0, ", vocab,
              ")");
  }
  if (p.repetition_penalty != 1.0) {
    for (int32_t t : prompt) out->emplace_back(t, 0);
  }
  for (const auto& kv : state.output_counts()) {
    if (kv.second > 0) out->emplace_back(kv.first, kv.second);
  }
  std::sort(out->begin(), out->end());
  size_t w = 0;
  for (size_t i = 0; i < out->size(); ++i) {
    if (w > 0 && (*out)[w - 1].first == (*out)[i].first) {
      (*out)[w - 1].second += (*out)[i].second;  // prompt entry (0) + output count
    } else {
      (*out)[w++] = (*out)[i];
    }
  }
  out->resize(w);
  if (bias != nullptr) merge_bias(p, vocab, out, bias);
}

void apply_penalties(float* logits, int64_t vocab, const SamplingParams& p,
                     const SequenceSamplingState& state) {
  std::vector<std::pair<int32_t, int32_t>> list;
  penalty_list(p, state, vocab, &list);  // checks every id before any write
  for (const auto& tc : list) {
    logits[tc.first] = sample_penalize(logits[tc.first], tc.second, p.repetition_penalty,
                                       p.presence_penalty, p.frequency_penalty);
  }
}

// ---- Sampler -------------------------------------------------------------------------------------

SampleResult Sampler::sample(const float* logits, int64_t vocab, const SamplingParams& p,
                             const SequenceSamplingState& state, int64_t draw_index, const uint32_t* mask) {
  ELI_CHECK(logits != nullptr, "sample: logits is null");
  ELI_CHECK(vocab >= 1 && vocab <= INT32_MAX, "sample: vocab must be in [1, 2^31), got ", vocab);
  ELI_CHECK(p.logprobs <= kSampleMaxTopLogprobs, "sample: at most ", kSampleMaxTopLogprobs,
            " logprobs, got ", p.logprobs);
  penalty_list(p, state, vocab, &pen_, &pen_bias_);
  pen_tokens_.clear();
  pen_counts_.clear();
  for (const auto& tc : pen_) {
    pen_tokens_.push_back(tc.first);
    pen_counts_.push_back(tc.second);
  }
  pen_raw_.assign(std::max<size_t>(1, pen_.size()), 0.0f);
  const int64_t ts = std::max(0, p.logprobs);
  top_ids_.assign(static_cast<size_t>(std::max<int64_t>(1, ts)), -1);
  top_logprobs_.assign(static_cast<size_t>(std::max<int64_t>(1, ts)), 0.0f);
  work_.assign(logits, logits + vocab);

  const double temperature = p.temperature, top_p = p.top_p, min_p = p.min_p;
  const double rep = p.repetition_penalty, pres = p.presence_penalty, freq = p.frequency_penalty;
  const int32_t top_k = p.top_k == 1 ? 1 : (p.top_k <= 0 || p.top_k >= vocab ? 0 : static_cast<int32_t>(p.top_k));
  const uint64_t seed = state.seed();
  const uint64_t offset = static_cast<uint64_t>(draw_index >= 0 ? draw_index : state.n_output());
  const int32_t n_logprobs = p.logprobs;
  const int32_t offsets[2] = {0, static_cast<int32_t>(pen_.size())};
  int32_t token = -1, status = -1;
  float logprob = 0.0f;

  SampleArgs a{};
  a.token = &token;
  a.logprob = &logprob;
  a.top_ids = ts > 0 ? top_ids_.data() : nullptr;
  a.top_logprobs = ts > 0 ? top_logprobs_.data() : nullptr;
  a.status = &status;
  a.logits = work_.data();
  a.penalty_raw = pen_raw_.data();
  a.temperature = &temperature;
  a.top_k = &top_k;
  a.top_p = &top_p;
  a.min_p = &min_p;
  a.repetition_penalty = &rep;
  a.presence_penalty = &pres;
  a.frequency_penalty = &freq;
  a.seed = &seed;
  a.offset = &offset;
  a.n_logprobs = &n_logprobs;
  a.penalty_offsets = offsets;
  a.penalty_tokens = pen_tokens_.empty() ? offsets : pen_tokens_.data();
  a.penalty_counts = pen_counts_.empty() ? offsets : pen_counts_.data();
  a.penalty_bias = pen_bias_.empty() ? nullptr : pen_bias_.data();
  const int32_t mask_row = 0;
  a.allow_mask = mask;
  a.mask_row = &mask_row;
  a.mask_words = (vocab + 31) / 32;
  a.n_rows = 1;
  a.vocab = vocab;
  a.logits_stride = vocab;
  a.top_stride = ts;
  check_sample_args(a);
  sample_ref_row(a, 0);
  if (status == kSampleMaskedOut) ELI_THROW(kInvalidArgument, "sample: the token mask allows no token");
  if (status != kSampleOk) throw_non_finite_logits(token, logprob);

  SampleResult out;
  out.token = token;
  if (p.logprobs >= 0) {
    out.logprob = logprob;
    const int64_t n_top = std::min<int64_t>(ts, vocab);
    for (int64_t j = 0; j < n_top; ++j) out.top_logprobs.emplace_back(top_ids_[j], top_logprobs_[j]);
  }
  return out;
}

void throw_non_finite_logits(int32_t index, float value) {
  ELI_THROW(kInvalidArgument, "non-finite logits: logit[", index, "] = ", value,
            " (fp16 overflow or a broken model)");
}

}  // namespace eli
