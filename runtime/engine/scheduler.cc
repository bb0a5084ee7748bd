// runtime/engine/scheduler.cc: see scheduler.h.
#include "runtime/engine/scheduler.h"

#include <algorithm>

#include "eli/error.h"

namespace eli {

Scheduler::Scheduler(const SchedulerConfig& config, BlockPool& pool) : config_(config), pool_(pool) {
  ELI_CHECK(config.block_size > 0 && config.max_num_seqs > 0 && config.max_num_batched_tokens > 0,
            "scheduler limits must be positive");
}

void Scheduler::add(Sequence* seq) {
  seq->state = SeqState::kWaiting;
  waiting_.push_back(seq);
}

void Scheduler::remove(Sequence* seq) {
  auto w = std::find(waiting_.begin(), waiting_.end(), seq);
  if (w != waiting_.end()) waiting_.erase(w);
  auto r = std::find(running_.begin(), running_.end(), seq);
  if (r != running_.end()) running_.erase(r);
  pool_.release(seq->blocks);
  seq->blocks.clear();
  seq->state = SeqState::kFinished;
}

bool Scheduler::grow_blocks(Sequence* seq, int64_t n_tokens) {
  const int64_t need = blocks_for(n_tokens) - static_cast<int64_t>(seq->blocks.size());
  return need <= 0 || pool_.allocate(need, &seq->blocks);
}

void Scheduler::preempt(Sequence* seq) {
  auto r = std::find(running_.begin(), running_.end(), seq);
  if (r != running_.end()) running_.erase(r);
  pool_.release(seq->blocks);
  seq->blocks.clear();
  seq->num_computed = 0;  // recompute prompt + generated tokens when it runs again
  seq->state = SeqState::kWaiting;
  waiting_.push_front(seq);
  ++preemptions_;
}

std::vector<ScheduledSeq> Scheduler::schedule() {
  std::vector<ScheduledSeq> out;
  int64_t budget = config_.max_num_batched_tokens;

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
  while (!waiting_.empty() && budget > 0 && static_cast<int64_t>(running_.size()) < config_.max_num_seqs) {
    Sequence* seq = waiting_.front();
    int64_t remaining = seq->n_tokens() - seq->num_computed;
    if (!config_.enable_chunked_prefill && remaining > budget) {
      // Unchunked: a prompt runs whole. One larger than the whole budget still runs alone.
      if (!out.empty() || remaining <= config_.max_num_batched_tokens) break;
    }
    int64_t n_new = config_.enable_chunked_prefill ? std::min(remaining, budget) : remaining;
    if (!grow_blocks(seq, seq->num_computed + n_new)) break;  // no preemption for new work
    waiting_.pop_front();
    seq->state = SeqState::kRunning;
    running_.push_back(seq);
    out.push_back({seq, n_new, seq->num_computed + n_new == seq->n_tokens()});
    budget -= n_new;
  }
  return out;
}

}  // namespace eli
