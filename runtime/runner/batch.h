// runtime/runner/batch.h: the ragged batch that describes one forward step, for every backend
//
// A step holds several sequences; each contributes a run of new tokens (a prefill chunk or one
// decode token). Flattened layout, all host-side int32 arrays:
//   token_ids[n_tokens], positions[n_tokens]      new tokens and their absolute positions
//   cu_seqlens[n_seqs + 1]                        new tokens of seq s are [cu_seqlens[s], cu_seqlens[s+1])
//   context_lens[n_seqs]                          tokens in the KV cache of seq s after this step
//   block_tables[n_seqs * max_blocks_per_seq]     KV block ids of seq s, in order (row-major, padded)
//   slot_mapping[n_tokens]                        KV slot of each new token: block * block_size + offset
//   logits_indices[n_logits]                      rows of the flat token list whose logits are wanted
//   block_tables1, slot_mapping1                  the same for KV group 1 (runtime/kv/kv_groups.h),
//                                                 empty when the cache has one group
// Invariants (check_batch): positions of seq s are context_lens[s] - n_new .. context_lens[s] - 1
// in order; every block id < n_blocks of the pool; slot of position p is
// block_tables[s][p / block_size] * block_size + p % block_size.
#pragma once

#include <cstdint>
#include <vector>

namespace eli {

struct Batch {
  std::vector<int32_t> token_ids;
  std::vector<int32_t> positions;
  std::vector<int32_t> cu_seqlens{0};
  std::vector<int32_t> context_lens;
  std::vector<int32_t> block_tables;
  int64_t max_blocks_per_seq = 0;
  std::vector<int32_t> slot_mapping;
  std::vector<int32_t> logits_indices;
  std::vector<int32_t> block_tables1;
  std::vector<int32_t> slot_mapping1;

  int64_t n_tokens() const { return static_cast<int64_t>(token_ids.size()); }
  int64_t n_seqs() const { return static_cast<int64_t>(context_lens.size()); }
  int64_t n_logits() const { return static_cast<int64_t>(logits_indices.size()); }
};

// Throws eli::Error(kInternal) if the arrays disagree with each other or with the pools (n_blocks1:
// group 1's block count, 0 when the cache has one group).
void check_batch(const Batch& batch, int64_t block_size, int64_t n_blocks, int64_t vocab_size, int64_t n_blocks1 = 0);

}  // namespace eli
