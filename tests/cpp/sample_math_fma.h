// tests/cpp/sample_math_fma.h: kernels/sample_math.h built for a CPU with FMA (the compiler may
// then contract a * b + c), in its own namespace (tests/cpp/sample_math_fma.cc), so that
// test_sample_math.cc can check that every result is bit-identical to the plain build's.
#pragma once

#include <cstdint>

namespace fma_build {

bool available();  // an x86 build on a CPU with FMA
float exp(float s);
float log(float x);
float neg_log1m(float v);
float gumbel(uint64_t bits);
uint64_t mass(float s);
float scaled(float z, float zmax, float inv_t);
float gumbel_key(float s, uint64_t row_key, int32_t t);
float penalize(float raw, int32_t count, double repetition, double presence, double frequency);

}  // namespace fma_build
