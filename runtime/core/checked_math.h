// runtime/core/checked_math.h: overflow-checked integer arithmetic for sizes that come from files
// or requests. Every product or sum of untrusted counts goes through these before it sizes
// anything. They return false on overflow (or negative input) instead of wrapping.
#pragma once

#include <cstdint>
#include <limits>

namespace eli {

inline bool checked_mul(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0) return false;
  return !__builtin_mul_overflow(a, b, out);
}
inline bool checked_add(int64_t a, int64_t b, int64_t* out) {
  if (a < 0 || b < 0) return false;
  return !__builtin_add_overflow(a, b, out);
}
inline bool checked_mul_u64(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }
inline bool checked_add_u64(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

}  // namespace eli
