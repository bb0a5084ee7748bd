// runtime/parallel/micro_batch.cc: see micro_batch.h.
#include "runtime/parallel/micro_batch.h"

#include <algorithm>

namespace eli {

std::vector<MicroBatch> split_micro_batches(const Batch& b, int parts) {
  const int64_t S = b.n_seqs(), T = b.n_tokens();
  const bool ascending = std::is_sorted(b.logits_indices.begin(), b.logits_indices.end());
  if (parts <= 1 || S <= 1 || !ascending) return {MicroBatch{b, 0}};
  parts = static_cast<int>(std::min<int64_t>(parts, S));
  std::vector<MicroBatch> out;
  int64_t s0 = 0, logit = 0;
  for (int m = 0; m < parts && s0 < S; ++m) {
    // Sequences up to the m+1-th token quantile (at least one per micro-batch, and one left for
    // each of the later ones).
    const int64_t target = T * (m + 1) / parts;
    int64_t s1 = s0 + 1;
    while (s1 < S - (parts - 1 - m) && b.cu_seqlens[s1] < target) ++s1;
    if (m == parts - 1) s1 = S;
    const int32_t t0 = b.cu_seqlens[s0], t1 = b.cu_seqlens[s1];
    MicroBatch mb;
    Batch& x = mb.batch;
    x.token_ids.assign(b.token_ids.begin() + t0, b.token_ids.begin() + t1);
    x.positions.assign(b.positions.begin() + t0, b.positions.begin() + t1);
    x.slot_mapping.assign(b.slot_mapping.begin() + t0, b.slot_mapping.begin() + t1);
    x.cu_seqlens.clear();
    for (int64_t s = s0; s <= s1; ++s) x.cu_seqlens.push_back(b.cu_seqlens[s] - t0);
    x.context_lens.assign(b.context_lens.begin() + s0, b.context_lens.begin() + s1);
    x.max_blocks_per_seq = b.max_blocks_per_seq;
    x.block_tables.assign(b.block_tables.begin() + s0 * b.max_blocks_per_seq,
                          b.block_tables.begin() + s1 * b.max_blocks_per_seq);
    if (!b.block_tables1.empty()) {  // KV group 1 (runtime/kv/kv_groups.h): the same rows
      x.slot_mapping1.assign(b.slot_mapping1.begin() + t0, b.slot_mapping1.begin() + t1);
      x.block_tables1.assign(b.block_tables1.begin() + s0 * b.max_blocks_per_seq,
                             b.block_tables1.begin() + s1 * b.max_blocks_per_seq);
    }
    mb.first_logit = logit;
    while (logit < b.n_logits() && b.logits_indices[logit] < t1) {
      x.logits_indices.push_back(b.logits_indices[logit] - t0);
      ++logit;
    }
    out.push_back(std::move(mb));
    s0 = s1;
  }
  return out;
}

}  // namespace eli
