// kernels/cuda_tuning_knobs.cc: the values of the CUDA kernels' tuning knobs
// (kernels/cuda_tuning_knobs.h), read from the environment on first use.
#include "kernels/cuda_tuning_knobs.h"

#include <atomic>
#include <cstdlib>

namespace eli {
namespace cuda {
namespace {

constexpr int kN = static_cast<int>(Knob::kCount);

struct KnobInfo {
  const char* env;
  int fallback;
};
// In the order of Knob.
constexpr KnobInfo kInfo[kN] = {
    {"ELI_PDL", 1},
    {"ELI_GEMV_PDL", 1},
    {"ELI_ATTN_TRIGGER", 0},
    {"ELI_ATTN_MIN_SPLIT", 0},
    {"ELI_ATTN_CARVEOUT", kKnobUnset},
    {"ELI_GEMV_CARVEOUT", kKnobUnset},
    {"ELI_ROPE_CARVEOUT", kKnobUnset},
    {"ELI_ATTN_STAGES", 0},
};

// The values, read from the environment once (function-local statics initialise thread-safely).
std::atomic<int>* values() {
  static std::atomic<int> table[kN];
  static const bool loaded = [] {
    for (int i = 0; i < kN; ++i) {
      const char* e = std::getenv(kInfo[i].env);
      table[i].store(e == nullptr || *e == '\0' ? kInfo[i].fallback : std::atoi(e), std::memory_order_relaxed);
    }
    return true;
  }();
  (void)loaded;
  return table;
}

}  // namespace

int knob(Knob k) { return values()[static_cast<int>(k)].load(std::memory_order_relaxed); }

void set_knob(Knob k, int value) { values()[static_cast<int>(k)].store(value, std::memory_order_relaxed); }

}  // namespace cuda
}  // namespace eli
