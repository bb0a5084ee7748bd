// runtime/engine/token_mask.cc: building the token masks of a step (see token_mask.h) and feeding
// sampled tokens back to a request's constraint. Exceptions of a constraint (an embedder's code,
// or Python through the bindings) are caught here and become that request's error.
#include "runtime/engine/token_mask.h"

#include <algorithm>
#include <cstring>
#include <exception>

#include "eli/error.h"

namespace eli {
namespace {

int64_t mask_words(int64_t vocab) { return (vocab + 31) / 32; }

void clear_bit(uint32_t* mask, int64_t t, int64_t vocab) {
  if (t >= 0 && t < vocab) mask[t >> 5] &= ~(1u << (t & 31));
}

}  // namespace

bool needs_mask(const SamplingParams& p, int64_t draw_index) {
  return p.constraint != nullptr || !p.allowed_token_ids.empty() || draw_index < p.min_tokens;
}

namespace {

// The rest of a row's mask once the constraint's part is in `mask` (or all ones when it has none):
// allowed_token_ids, min_tokens, and the dead-end check.
std::string finish_row_mask(const SamplingParams& p, int64_t draw_index, int64_t vocab,
                            const std::vector<int64_t>& eos_ids, uint32_t* mask) {
  const int64_t words = mask_words(vocab);
  const uint32_t tail = (vocab & 31) == 0 ? ~0u : ((1u << (vocab & 31)) - 1u);
  if (p.constraint == nullptr) {
    std::fill(mask, mask + words, ~0u);
  }
  mask[words - 1] &= tail;
  if (!p.allowed_token_ids.empty()) {
    std::vector<uint32_t> allowed(static_cast<size_t>(words), 0u);
    for (int32_t t : p.allowed_token_ids) {
      if (t >= 0 && t < vocab) allowed[static_cast<size_t>(t >> 5)] |= 1u << (t & 31);
    }
    for (int64_t w = 0; w < words; ++w) mask[w] &= allowed[static_cast<size_t>(w)];
  }
  if (draw_index < p.min_tokens) {
    for (int64_t t : p.stop_token_ids) clear_bit(mask, t, vocab);
    if (!p.ignore_eos) {
      for (int64_t t : eos_ids) clear_bit(mask, t, vocab);
    }
  }
  for (int64_t w = 0; w < words; ++w) {
    if (mask[w] != 0) return std::string();
  }
  return "structured output: dead end at output token " + std::to_string(draw_index) +
         ": no token is allowed (the constraint" +
         (p.allowed_token_ids.empty() ? std::string() : std::string(", allowed_token_ids")) +
         (draw_index < p.min_tokens ? std::string(", min_tokens") : std::string()) + " exclude every token)";
}

std::string constraint_failed(const char* what) {
  return std::string("structured output: the token constraint failed: ") + what;
}

}  // namespace

std::string fill_row_mask(const SamplingParams& p, int64_t draw_index, int64_t vocab,
                          const std::vector<int64_t>& eos_ids, uint32_t* mask) {
  if (p.constraint != nullptr) {
    std::memset(mask, 0, static_cast<size_t>(mask_words(vocab)) * 4);
    try {
      p.constraint->fill_mask(mask, vocab);
    } catch (const std::exception& e) {
      return constraint_failed(e.what());
    } catch (...) {
      return constraint_failed("an unknown exception");
    }
  }
  return finish_row_mask(p, draw_index, vocab, eos_ids, mask);
}

void build_step_masks(const std::vector<const SamplingParams*>& params, const std::vector<int64_t>& draw_offsets,
                      int64_t vocab, const std::vector<int64_t>& eos_ids, StepMasks* out,
                      std::vector<std::string>* errors, const std::vector<char>* skip) {
  ELI_CHECK(params.size() == draw_offsets.size(), "build_step_masks: ", params.size(), " params and ",
            draw_offsets.size(), " offsets");
  const size_t n = params.size();
  const int64_t words = mask_words(vocab);
  out->words = words;
  out->row.assign(n, -1);
  errors->assign(n, std::string());
  // 1. A mask slot for every row that needs one.
  int32_t n_masks = 0;
  for (size_t r = 0; r < n; ++r) {
    if (!needs_mask(*params[r], draw_offsets[r])) continue;
    if (skip != nullptr && r < skip->size() && (*skip)[r] != 0) continue;
    out->row[r] = n_masks++;
  }
  out->bits.assign(static_cast<size_t>(n_masks) * static_cast<size_t>(words), 0u);
  // 2. The constraints' parts: batched where constraints share a batch key, else one by one.
  std::vector<char> done(n, 0);
  for (size_t r = 0; r < n; ++r) {
    TokenConstraint* c = params[r]->constraint.get();
    if (out->row[r] < 0 || c == nullptr || done[r]) continue;
    const void* key = c->batch_key();
    std::vector<size_t> rows = {r};
    if (key != nullptr) {
      for (size_t q = r + 1; q < n; ++q) {
        TokenConstraint* cq = params[q]->constraint.get();
        if (out->row[q] >= 0 && cq != nullptr && !done[q] && cq->batch_key() == key) rows.push_back(q);
      }
    }
    for (size_t q : rows) done[q] = 1;
    if (rows.size() == 1) {
      try {
        c->fill_mask(out->bits.data() + static_cast<size_t>(out->row[r]) * static_cast<size_t>(words), vocab);
      } catch (const std::exception& e) {
        (*errors)[r] = constraint_failed(e.what());
      } catch (...) {
        (*errors)[r] = constraint_failed("an unknown exception");
      }
      continue;
    }
    std::vector<TokenConstraint*> group;
    std::vector<int32_t> index;
    std::vector<std::string> errs(rows.size());
    for (size_t q : rows) {
      group.push_back(params[q]->constraint.get());
      index.push_back(out->row[q]);
    }
    try {
      c->fill_masks(group.data(), index.data(), group.size(), out->bits.data(), words, vocab, errs.data());
    } catch (const std::exception& e) {
      for (auto& m : errs) m = constraint_failed(e.what());
    } catch (...) {
      for (auto& m : errs) m = constraint_failed("an unknown exception");
    }
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!errs[i].empty()) (*errors)[rows[i]] = errs[i].rfind("structured output", 0) == 0 ? errs[i] : constraint_failed(errs[i].c_str());
    }
  }
  // 3. allowed_token_ids, min_tokens and the dead-end check; an erroring row gets no mask.
  for (size_t r = 0; r < n; ++r) {
    if (out->row[r] < 0) continue;
    uint32_t* m = out->bits.data() + static_cast<size_t>(out->row[r]) * static_cast<size_t>(words);
    if ((*errors)[r].empty()) (*errors)[r] = finish_row_mask(*params[r], draw_offsets[r], vocab, eos_ids, m);
    if (!(*errors)[r].empty()) out->row[r] = -1;  // its slot stays unused
  }
}

std::string constraint_accept(TokenConstraint& c, int32_t token, bool* finished) {
  *finished = false;
  try {
    if (!c.accept(token)) {
      return "structured output: the token constraint rejected the sampled token " + std::to_string(token);
    }
    *finished = c.is_finished();
  } catch (const std::exception& e) {
    return std::string("structured output: the token constraint failed: ") + e.what();
  } catch (...) {
    return "structured output: the token constraint failed with an unknown exception";
  }
  return std::string();
}

}  // namespace eli
