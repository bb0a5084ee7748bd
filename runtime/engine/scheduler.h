// runtime/engine/scheduler.h: iteration-level continuous batching. Each step takes, under a token
// budget and a sequence cap, one token of every running decode, the next chunk of every running
// prefill, then new prefills from the waiting queue (first come, first served), allocating KV blocks
// as it goes. When blocks run out for a running sequence, the newest running sequence is preempted
// (its blocks freed, its tokens recomputed later from the front of the queue).
//
// Pure host logic, deterministic given its inputs. Invariants: a sequence is in exactly one of
// waiting_ / running_ or neither (finished); running_ is in admission order; the pool's blocks are
// exactly those held by the sequences in running_ (plus nothing else) after every call.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "runtime/engine/sequence.h"
#include "runtime/kv/block_pool.h"

namespace eli {

struct SchedulerConfig {
  int64_t block_size = 16;
  int64_t max_num_seqs = 64;
  int64_t max_num_batched_tokens = 2048;
  bool enable_chunked_prefill = true;
};

struct ScheduledSeq {
  Sequence* seq;
  int64_t n_new;   // tokens computed this step, starting at seq->num_computed
  bool sample;     // this step reaches the end of the sequence's tokens: sample the next one
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, BlockPool& pool);

  void add(Sequence* seq);
  // Removes a sequence at any phase and frees its blocks (abort, finish, error).
  void remove(Sequence* seq);
  std::vector<ScheduledSeq> schedule();

  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t preemptions() const { return preemptions_; }
  int64_t blocks_for(int64_t n_tokens) const { return (n_tokens + config_.block_size - 1) / config_.block_size; }

 private:
  bool grow_blocks(Sequence* seq, int64_t n_tokens);
  void preempt(Sequence* seq);

  SchedulerConfig config_;
  BlockPool& pool_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;
  int64_t preemptions_ = 0;
};

}  // namespace eli
