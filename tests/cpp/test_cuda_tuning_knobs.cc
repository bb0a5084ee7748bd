// tests/cpp/test_cuda_tuning_knobs.cc: the CUDA kernels' tuning knobs (kernels/cuda_tuning_knobs.h)
// hold their defaults unless the environment or set_knob says otherwise, and set_knob takes effect
// at once. Plain C++: runs in every build.
#include <gtest/gtest.h>

#include <cstdlib>

#include "kernels/cuda_tuning_knobs.h"

namespace eli {
namespace {

using cuda::Knob;

// The knob's default, unless the test's environment set its variable.
void expect_default(Knob k, const char* env, int fallback) {
  if (std::getenv(env) != nullptr) return;
  EXPECT_EQ(cuda::knob(k), fallback) << env;
}

TEST(CudaTuningKnobs, DefaultsAreTheMeasuredSettings) {
  expect_default(Knob::kPdl, "ELI_PDL", 1);
  expect_default(Knob::kGemvPdl, "ELI_GEMV_PDL", 1);
  expect_default(Knob::kAttnTriggerEarly, "ELI_ATTN_TRIGGER", 0);
  expect_default(Knob::kAttnMinSplit, "ELI_ATTN_MIN_SPLIT", 0);
  expect_default(Knob::kAttnCarveout, "ELI_ATTN_CARVEOUT", cuda::kKnobUnset);
  expect_default(Knob::kGemvCarveout, "ELI_GEMV_CARVEOUT", cuda::kKnobUnset);
  expect_default(Knob::kRopeCarveout, "ELI_ROPE_CARVEOUT", cuda::kKnobUnset);
  expect_default(Knob::kAttnStages, "ELI_ATTN_STAGES", 0);
}

TEST(CudaTuningKnobs, SetKnobTakesEffectAndOnlyOnItsKnob) {
  const int pdl = cuda::knob(Knob::kPdl), split = cuda::knob(Knob::kAttnMinSplit);
  cuda::set_knob(Knob::kAttnMinSplit, 1024);
  EXPECT_EQ(cuda::knob(Knob::kAttnMinSplit), 1024);
  EXPECT_EQ(cuda::knob(Knob::kPdl), pdl);
  cuda::set_knob(Knob::kAttnMinSplit, split);
  EXPECT_EQ(cuda::knob(Knob::kAttnMinSplit), split);
}

}  // namespace
}  // namespace eli
