// runtime/engine/scheduler.cc: see scheduler.h.
// Fault point "preempt_storm" (runtime/core/fault_injection.h): when it fires, schedule() first
// preempts the oldest running sequence that has one token left to compute and has grown since its
// last storm preemption, exactly as running out of blocks would. Oldest, so repeated firings rotate
// over every sequence (the victim re-enters running_ at the back); grown since, so every storm
// cycle yields at least one token (a recompute chunked by the token budget can stop one token short
// of the end, which looks like decoding: without the rule that would livelock).
#include "runtime/engine/scheduler.h"

#include <algorithm>

#include "eli/error.h"
#include "runtime/core/fault_injection.h"

namespace eli {

Scheduler::Scheduler(const SchedulerConfig& config, BlockPool& pool) : config_(config), pool_(pool) {
  ELI_CHECK(config.block_size > 0 && config.max_num_seqs > 0 && config.max_num_batched_tokens > 0,
            "scheduler limits must be positive");
  ELI_CHECK(config.block_hash != nullptr, "scheduler needs a block hash function");
  load_faults_from_env();
}

void Scheduler::add(Sequence* seq) {
  seq->state = SeqState::kWaiting;
  waiting_.push_back(seq);
}

void Scheduler::release_blocks(Sequence* seq) {
  if (config_.enable_prefix_caching) {
    // Tail first: the end of a chain is evicted before its head, which later prompts share more.
    std::vector<int32_t> rev(seq->blocks.rbegin(), seq->blocks.rend());
    pool_.release(rev);
  } else {
    pool_.release(seq->blocks);
  }
  seq->blocks.clear();
  seq->n_cached_blocks = 0;
  seq->prefix_cache_stopped = false;
}

void Scheduler::remove(Sequence* seq) {
  auto w = std::find(waiting_.begin(), waiting_.end(), seq);
  if (w != waiting_.end()) waiting_.erase(w);
  auto r = std::find(running_.begin(), running_.end(), seq);
  if (r != running_.end()) running_.erase(r);
  release_blocks(seq);
  seq->state = SeqState::kFinished;
  if (!storm_len_.empty()) storm_len_.erase(seq);
}

bool Scheduler::grow_blocks(Sequence* seq, int64_t n_tokens) {
  const int64_t need = blocks_for(n_tokens) - static_cast<int64_t>(seq->blocks.size());
  return need <= 0 || pool_.allocate(need, &seq->blocks);
}

void Scheduler::preempt(Sequence* seq) {
  auto r = std::find(running_.begin(), running_.end(), seq);
  if (r != running_.end()) running_.erase(r);
  release_blocks(seq);
  seq->num_computed = 0;  // recompute (or find in the prefix cache) prompt + generated tokens later
  seq->state = SeqState::kWaiting;
  waiting_.push_front(seq);
  ++preemptions_;
}

std::vector<int32_t> Scheduler::lookup_prefix(const Sequence& seq) const {
  std::vector<int32_t> hits;
  const int64_t B = config_.block_size;
  const int64_t max_blocks = (seq.n_tokens() - 1) / B;  // at least one token left to compute
  uint64_t parent_hash = prefix_root_hash(seq.params.cache_salt), parent_serial = 0;
  for (int64_t i = 0; i < max_blocks; ++i) {
    const int32_t* toks = seq.tokens.data() + i * B;
    const uint64_t h = config_.block_hash(parent_hash, toks, B);
    const int32_t b = pool_.find_cached(h, parent_serial, toks, B);
    if (b < 0) break;
    hits.push_back(b);
    parent_hash = h;
    parent_serial = pool_.cache_serial(b);
  }
  return hits;
}

void Scheduler::cache_full_blocks(Sequence* seq, int64_t limit) {
  if (!config_.enable_prefix_caching || seq->prefix_cache_stopped) return;
  const int64_t B = config_.block_size;
  const int64_t n_full =
      std::min<int64_t>(std::min(seq->num_computed, limit) / B, static_cast<int64_t>(seq->blocks.size()));
  while (seq->n_cached_blocks < n_full) {
    const int64_t i = seq->n_cached_blocks;
    uint64_t parent_hash = prefix_root_hash(seq->params.cache_salt), parent_serial = 0;
    if (i > 0) {
      const int32_t parent = seq->blocks[static_cast<size_t>(i - 1)];
      parent_hash = pool_.cache_hash(parent);
      parent_serial = pool_.cache_serial(parent);
    }
    const int32_t* toks = seq->tokens.data() + i * B;
    const uint64_t h = config_.block_hash(parent_hash, toks, B);
    if (!pool_.cache_block(seq->blocks[static_cast<size_t>(i)], h, parent_serial, toks, B)) {
      // Another block holds this hash (the same tokens computed concurrently, or a collision):
      // this chain stays private from here on.
      seq->prefix_cache_stopped = true;
      return;
    }
    ++seq->n_cached_blocks;
  }
}

std::vector<ScheduledSeq> Scheduler::schedule() {
  std::vector<ScheduledSeq> out;
  int64_t budget = config_.max_num_batched_tokens;

  if (!running_.empty() && fault_fires(FaultPoint::kPreemptStorm)) {
    auto victim = std::find_if(running_.begin(), running_.end(), [this](const Sequence* s) {
      auto it = storm_len_.find(s);
      return s->num_computed + 1 == s->n_tokens() && (it == storm_len_.end() || s->n_tokens() > it->second);
    });
    if (victim != running_.end()) {
      storm_len_[*victim] = (*victim)->n_tokens();
      preempt(*victim);
    }
  }

  // 1. Running sequences, oldest first: decodes and continuing prefill chunks.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence* seq = running_[i];
    int64_t n_new = std::min(seq->n_tokens() - seq->num_computed, budget);
    if (n_new <= 0) {
      ++i;
      continue;
    }
    bool placed = false;
    while (!(placed = grow_blocks(seq, seq->num_computed + n_new))) {
      Sequence* victim = running_.back();
      // Undo anything already scheduled for the victim this step.
      auto it = std::find_if(out.begin(), out.end(), [&](const ScheduledSeq& s) { return s.seq == victim; });
      if (it != out.end()) {
        budget += it->n_new;
        out.erase(it);
      }
      preempt(victim);
      if (victim == seq) break;
    }
    if (!placed) continue;  // seq preempted itself; running_[i] is now the next one
    out.push_back({seq, n_new, seq->num_computed + n_new == seq->n_tokens()});
    budget -= n_new;
    ++i;
  }

  // 2. Waiting sequences, first come first served, while budget, sequence slots and blocks last.
  const int64_t B = config_.block_size;
  while (!waiting_.empty() && budget > 0 && static_cast<int64_t>(running_.size()) < config_.max_num_seqs) {
    Sequence* seq = waiting_.front();
    std::vector<int32_t> hits;
    const bool lookup = config_.enable_prefix_caching && seq->num_computed == 0 && seq->blocks.empty();
    if (lookup) hits = lookup_prefix(*seq);
    const int64_t n_hit = static_cast<int64_t>(hits.size());
    const int64_t computed = seq->num_computed + n_hit * B;
    int64_t remaining = seq->n_tokens() - computed;
    if (!config_.enable_chunked_prefill && remaining > budget) {
      // Unchunked: a prompt runs whole. One larger than the whole budget still runs alone.
      if (!out.empty() || remaining <= config_.max_num_batched_tokens) break;
    }
    int64_t n_new = config_.enable_chunked_prefill ? std::min(remaining, budget) : remaining;
    // Blocks to allocate beyond the hits; hit blocks that are free leave the free queue first.
    const int64_t need = blocks_for(computed + n_new) - static_cast<int64_t>(seq->blocks.size()) - n_hit;
    const int64_t free_hits = std::count_if(hits.begin(), hits.end(), [&](int32_t b) { return pool_.refcount(b) == 0; });
    if (need > pool_.n_free() - free_hits) break;  // no preemption for new work
    for (int32_t b : hits) {
      pool_.acquire_cached(b);
      seq->blocks.push_back(b);
    }
    seq->num_computed = computed;
    seq->n_cached_blocks = n_hit;
    ELI_CHECK_KIND(kInternal, grow_blocks(seq, computed + n_new), "KV blocks vanished during admission");
    if (lookup) {
      prefix_cache_queries_ += seq->n_tokens();
      prefix_cache_hits_ += n_hit * B;
    }
    waiting_.pop_front();
    seq->state = SeqState::kRunning;
    running_.push_back(seq);
    out.push_back({seq, n_new, seq->num_computed + n_new == seq->n_tokens()});
    budget -= n_new;
  }
  return out;
}

}  // namespace eli
