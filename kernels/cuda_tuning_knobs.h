// kernels/cuda_tuning_knobs.h: the launch settings of the decode kernels that the benchmarks
// (bench/cuda_decode_step_bench.cc, bench/cuda_matmul_bench.cc) and a GPU test switch to time or
// check alternatives. Each knob is read from its environment variable once, at its first use in
// the process, and then costs one relaxed atomic load per launch; set_knob changes it later (under
// CUDA graphs a launch's settings are the ones in force when it is captured). Unset, every kernel
// runs its measured default (docs/cuda_backend.md). Not a user interface. knob/set_knob are plain
// C++ (kernels/cuda_tuning_knobs.cc, in every build, so that tests link without CUDA);
// apply_carveout_knob exists in CUDA builds only (kernels/cuda/tuning_knobs.cu).
#pragma once

#include <climits>

namespace eli {
namespace cuda {

enum class Knob : int {
  kPdl,               // ELI_PDL, default 1: programmatic dependent launch for every PDL kernel
  kGemvPdl,           // ELI_GEMV_PDL, default 1: ... for the GEMV (on top of kPdl)
  kAttnTriggerEarly,  // ELI_ATTN_TRIGGER, default 0: decode attention starts the next kernel at its start
  kAttnMinSplit,      // ELI_ATTN_MIN_SPLIT, default 0 (= from kMinSplitBytes): positions per split at least
  kAttnCarveout,      // ELI_ATTN_CARVEOUT, default unset: decode attention's shared-memory carveout
  kGemvCarveout,      // ELI_GEMV_CARVEOUT, default unset
  kRopeCarveout,      // ELI_ROPE_CARVEOUT, default unset
  kAttnStages,        // ELI_ATTN_STAGES, default 0 (= the deepest K/V ring that keeps the occupancy): 2 or 3
  kCount
};

// Carveout knobs: leave the kernel's attribute as it is. Otherwise a percentage, or -1 for the
// driver's default.
constexpr int kKnobUnset = INT_MIN;

int knob(Knob k);
void set_knob(Knob k, int value);

// CUDA builds: if the carveout knob k is set, sets the kernel's preferred shared-memory carveout to
// it. Throws eli::Error(kDevice) on failure.
void apply_carveout_knob(const void* kernel, Knob k);

}  // namespace cuda
}  // namespace eli
