// runtime/kv/prefix_cache.h: the hash chain that names full KV blocks for automatic prefix
// caching (vLLM v1 style). Block i of a sequence is named by
//   h_i = block_hash(h_{i-1}, tokens[i*B, (i+1)*B)),  h_{-1} = kPrefixRootHash,
// so equal names mean "probably the same tokens after the same prefix". A name is only ever a
// lookup key: every hit is verified by the BlockPool against the block's stored tokens and the
// serial of its verified parent entry (see BlockPool::find_cached), so a hash collision costs a
// miss, never a wrong KV block.
//
// The hash is hand-written rather than std::hash: std::hash<int> is the identity in libstdc++ and
// implementation-defined in general, and we want a well-mixed, stable 64-bit function of a whole
// token block chained on its parent, identical across builds (tests and logs can name blocks).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace eli {

// Hash of a full block given its parent's hash. Injectable (SchedulerConfig::block_hash) so that
// tests can force collisions.
using BlockHashFn = uint64_t (*)(uint64_t parent_hash, const int32_t* tokens, int64_t n_tokens);

constexpr uint64_t kPrefixRootHash = 0x6a09e667f3bcc908ULL;  // parent hash of a sequence's block 0

// The parent hash of block 0 for a sequence with prefix-cache salt `salt` (0: kPrefixRootHash).
// Different salts give unrelated hash chains: no block is shared across salts.
uint64_t prefix_root_hash(uint64_t salt);

// The default BlockHashFn: FNV-1a-style multiply/xor over the 32-bit tokens, seeded by the
// parent hash and the length, finished with the splitmix64 avalanche.
uint64_t hash_kv_block(uint64_t parent_hash, const int32_t* tokens, int64_t n_tokens);

// The verification of a hash hit (BlockPool and HostPrefixCache entries alike): the entry's parent
// serial and stored tokens equal the lookup's. A collision is then a miss, never a wrong block.
inline bool cached_entry_matches(uint64_t entry_parent_serial, const std::vector<int32_t>& entry_tokens,
                                 uint64_t parent_serial, const int32_t* tokens, int64_t n) {
  return entry_parent_serial == parent_serial && static_cast<int64_t>(entry_tokens.size()) == n &&
         std::equal(entry_tokens.begin(), entry_tokens.end(), tokens);
}

}  // namespace eli
