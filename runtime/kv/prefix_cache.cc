// runtime/kv/prefix_cache.cc: see prefix_cache.h.
#include "runtime/kv/prefix_cache.h"

namespace eli {

namespace {
uint64_t mix64(uint64_t x) {  // splitmix64 finalizer: every input bit affects every output bit
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}
}  // namespace

uint64_t prefix_root_hash(uint64_t salt) {
  return salt == 0 ? kPrefixRootHash : mix64(kPrefixRootHash ^ mix64(salt ^ 0x243f6a8885a308d3ULL));
}

uint64_t hash_kv_block(uint64_t parent_hash, const int32_t* tokens, int64_t n_tokens) {
  constexpr uint64_t kPrime = 0x100000001b3ULL;  // 64-bit FNV prime
  uint64_t h = mix64(parent_hash ^ (static_cast<uint64_t>(n_tokens) * 0x9e3779b97f4a7c15ULL));
  for (int64_t i = 0; i < n_tokens; ++i) {
    h ^= static_cast<uint32_t>(tokens[i]);
    h *= kPrime;
    h ^= h >> 32;  // fold high bits down so later tokens see earlier ones fully
  }
  return mix64(h);
}

}  // namespace eli
