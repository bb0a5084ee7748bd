// runtime/engine/sequence.h: one request as the scheduler and the engine see it.
//
// Invariants: tokens = prompt then outputs; 0 <= num_computed <= tokens.size() (KV of the first
// num_computed tokens is in `blocks`); blocks.size() * block_size >= num_computed; a waiting
// sequence holds no blocks unless it was never scheduled; a finished one holds none.
// Prefix caching: blocks[0, n_cached_blocks) are prefix-cache entries (hits taken at admission or
// blocks this sequence filled and registered); they are full and never written again.
// KV groups (runtime/kv/kv_groups.h): `blocks` is group 0's table, `blocks1` group 1's (empty with
// one group; else the same length). Entries [0, n_dropped[g]) of a windowed group's table are out
// of every future window: released (or never taken), kept only as placeholders that no kernel
// reads; the sequence holds exactly the entries from n_dropped[g] on.
// A swapped-out sequence (swapped_len > 0) is waiting, holds no device blocks and has
// num_computed > 0: its KV is in the host tier (host_slots) until it is swapped back in.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "eli/sampling_params.h"
#include "runtime/runner/sampler.h"

namespace eli {

enum class SeqState { kWaiting, kRunning, kFinished };

struct Sequence {
  int64_t id = -1;
  std::vector<int32_t> tokens;    // prompt + generated
  int64_t prompt_len = 0;
  int64_t num_computed = 0;       // tokens whose K/V are in the cache
  std::vector<int32_t> blocks;    // KV block table (group 0)
  std::vector<int32_t> blocks1;   // KV group 1's block table
  int64_t n_dropped[2] = {0, 0};  // per group: leading table entries no longer held
  int64_t n_cached_blocks = 0;    // leading blocks that are prefix-cache entries
  int64_t n_cached_blocks1 = 0;   // leading group-1 entries already offered to the prefix cache
  bool prefix_cache_stopped = false;  // a block could not be registered: register no more
  // Swap preemption (runtime/engine/scheduler.h): swapped_len > 0 while the sequence is swapped
  // out: it holds no device blocks, its table was swapped_len entries long, and host_slots[g] holds
  // (in order) the KV of its entries [n_dropped[g], swapped_len) in the host tier. num_computed and
  // n_dropped are kept.
  int64_t swapped_len = 0;
  std::vector<int32_t> host_slots[2];
  SeqState state = SeqState::kWaiting;
  // Asynchronous scheduling: when feed_row >= 0, tokens.back() is a placeholder for row feed_row of
  // the samples of launched step feed_serial (not yet completed).
  int32_t feed_row = -1;
  uint64_t feed_serial = 0;
  SamplingParams params;
  std::unique_ptr<SequenceSamplingState> sampling;
  // Prompt logprobs / embedding requests: prompt positions below aux_next have had their row
  // (reported or pooled); recomputed positions (after a preemption) are not counted twice.
  int64_t aux_next = 0;
  std::vector<std::vector<std::pair<int32_t, float>>> prompt_lps;  // until the first output takes them
  std::vector<double> pooled;                                       // sum (mean) or last row

  std::vector<int32_t>& table(int g) { return g == 0 ? blocks : blocks1; }
  const std::vector<int32_t>& table(int g) const { return g == 0 ? blocks : blocks1; }
  int64_t n_generated() const { return static_cast<int64_t>(tokens.size()) - prompt_len; }
  int64_t n_tokens() const { return static_cast<int64_t>(tokens.size()); }
};

}  // namespace eli
