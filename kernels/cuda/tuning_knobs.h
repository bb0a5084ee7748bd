// kernels/cuda/tuning_knobs.h: environment knobs that bench/cuda_decode_step_bench.cc uses to time
// alternatives of the decode kernels' launch settings (docs/cuda_backend.md lists them). They are
// read at every launch (so at capture time under CUDA graphs); unset, every kernel runs its
// measured default. Not a user interface: the defaults are what the measurements chose.
#pragma once

namespace eli {
namespace cuda {

// The integer value of environment variable `name`, or `fallback` when it is unset or empty.
int env_int(const char* name, int fallback);

// If environment variable `name` is set, sets the kernel's preferred shared-memory carveout to its
// value (a percentage, or -1 for the driver's default). Throws eli::Error(kDevice) on failure.
void apply_env_carveout(const void* kernel, const char* name);

}  // namespace cuda
}  // namespace eli
