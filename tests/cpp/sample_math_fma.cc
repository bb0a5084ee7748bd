// tests/cpp/sample_math_fma.cc: kernels/sample_math.h compiled with the FMA instruction set enabled
// (GCC/Clang target pragma; -ffp-contract=fast is GCC's default for C++), wrapped in namespace
// fma_build so that its inline functions do not collide with the plain build's. The header's
// standard includes come first: including it inside a namespace must not pull them in there.
#include "tests/cpp/sample_math_fma.h"

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ELI_TEST_FMA_BUILD 1
#pragma GCC push_options
#pragma GCC target("fma")
#endif

namespace fma_build {
#include "kernels/sample_math.h"  // NOLINT(build/include): deliberately inside the namespace

float exp(float s) { return eli::sample_exp(s); }
float log(float x) { return eli::sample_log(x); }
float neg_log1m(float v) { return eli::sample_neg_log1m(v); }
float gumbel(uint64_t bits) { return eli::sample_gumbel(bits); }
uint64_t mass(float s) { return eli::sample_mass(s); }
float scaled(float z, float zmax, float inv_t) { return eli::sample_scaled(z, zmax, inv_t); }
float gumbel_key(float s, uint64_t row_key, int32_t t) { return eli::sample_gumbel_key(s, row_key, t); }
float penalize(float raw, int32_t count, double repetition, double presence, double frequency) {
  return eli::sample_penalize(raw, count, repetition, presence, frequency);
}

}  // namespace fma_build

#ifdef ELI_TEST_FMA_BUILD
#pragma GCC pop_options
#endif

namespace fma_build {

bool available() {
#ifdef ELI_TEST_FMA_BUILD
  return __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

}  // namespace fma_build
