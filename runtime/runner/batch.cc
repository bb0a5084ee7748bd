// runtime/runner/batch.cc: consistency check of a Batch against itself and the KV pool (eli/batch.h).
// Called by the ModelRunner once per step before any kernel reads the batch (kernels trust it).
#include "runtime/runner/batch.h"

#include "eli/error.h"

namespace eli {

namespace {

// One group's table and slots against the pool of n_blocks blocks.
void check_group(const Batch& b, const std::vector<int32_t>& tables, const std::vector<int32_t>& slots,
                 int64_t block_size, int64_t n_blocks) {
  const int64_t S = b.n_seqs(), W = b.max_blocks_per_seq;
  ELI_CHECK_KIND(kInternal, static_cast<int64_t>(tables.size()) == S * W, "batch block table size inconsistent");
  ELI_CHECK_KIND(kInternal, static_cast<int64_t>(slots.size()) == b.n_tokens(), "batch slot mapping size inconsistent");
  for (int64_t s = 0; s < S; ++s) {
    const int32_t begin = b.cu_seqlens[s], end = b.cu_seqlens[s + 1];
    const int64_t n_new = end - begin, ctx = b.context_lens[s];
    for (int32_t i = begin; i < end; ++i) {
      const int64_t pos = ctx - n_new + (i - begin);
      const int32_t block = tables[s * W + pos / block_size];
      ELI_CHECK_KIND(kInternal, block >= 0 && block < n_blocks, "KV block id ", block, " out of range");
      ELI_CHECK_KIND(kInternal, slots[i] == block * block_size + pos % block_size, "slot of token ", i, " wrong");
    }
    for (int64_t j = 0; j < (ctx + block_size - 1) / block_size; ++j) {
      const int32_t block = tables[s * W + j];
      ELI_CHECK_KIND(kInternal, block >= 0 && block < n_blocks, "KV block id ", block, " out of range");
    }
  }
}

}  // namespace

void check_batch(const Batch& b, int64_t block_size, int64_t n_blocks, int64_t vocab_size, int64_t n_blocks1) {
  const int64_t T = b.n_tokens(), S = b.n_seqs();
  ELI_CHECK_KIND(kInternal, static_cast<int64_t>(b.positions.size()) == T, "batch arrays disagree on the token count");
  ELI_CHECK_KIND(kInternal, static_cast<int64_t>(b.cu_seqlens.size()) == S + 1 && b.cu_seqlens[0] == 0 &&
                                b.cu_seqlens[S] == T,
                 "batch cu_seqlens inconsistent");
  for (int32_t id : b.token_ids) ELI_CHECK(id >= 0 && id < vocab_size, "token id ", id, " out of range [0, ", vocab_size, ")");
  for (int64_t s = 0; s < S; ++s) {
    const int32_t begin = b.cu_seqlens[s], end = b.cu_seqlens[s + 1];
    ELI_CHECK_KIND(kInternal, begin <= end, "batch cu_seqlens not increasing");
    const int64_t n_new = end - begin, ctx = b.context_lens[s];
    ELI_CHECK_KIND(kInternal, ctx >= n_new && ctx <= b.max_blocks_per_seq * block_size,
                   "sequence ", s, " context ", ctx, " does not fit its block table");
    for (int32_t i = begin; i < end; ++i) {
      const int64_t pos = ctx - n_new + (i - begin);
      ELI_CHECK_KIND(kInternal, b.positions[i] == pos, "position of token ", i, " is ", b.positions[i], ", expected ", pos);
    }
  }
  check_group(b, b.block_tables, b.slot_mapping, block_size, n_blocks);
  ELI_CHECK_KIND(kInternal, (n_blocks1 > 0) == !b.block_tables1.empty() || S == 0,
                 "batch KV group 1 tables do not match the cache");
  if (n_blocks1 > 0) check_group(b, b.block_tables1, b.slot_mapping1, block_size, n_blocks1);
  for (int32_t r : b.logits_indices) ELI_CHECK_KIND(kInternal, r >= 0 && r < T, "logits index ", r, " out of range");
}

}  // namespace eli
