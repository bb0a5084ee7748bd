// runtime/kv/swap_cost.h: the one place that decides whether a preempted sequence's KV is swapped
// to the host tier (runtime/kv/host_kv_tier.h) or dropped and recomputed later.
//
// Rule: swap when moving its KV out and back costs less time than recomputing it,
//   2 * kv_bytes / copy_bytes_per_s  <=  2 * n_params * n_tokens / flops_per_s
// (a forward pass is about 2 FLOPs per parameter per token; attention's own FLOPs are left out,
// which favours recompute slightly for long contexts). The rates are assumptions, not
// measurements: per device kind below, overridable with the environment variables
//   ELI_KV_SWAP_COPY_GBPS   host<->device copy bandwidth in GB/s (1e9 bytes)
//   ELI_KV_SWAP_TFLOPS      sustained forward-pass rate in TFLOP/s (1e12)
//   ELI_KV_SWAP_POLICY      "cost" (default), "always" (swap whenever the tier has room; tests),
//                           "never" (always recompute)
// Invariants: pure function of its fields; never throws after construction.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

#include "eli/device.h"
#include "eli/error.h"

namespace eli {

struct KvSwapCost {
  enum class Policy { kCost, kAlways, kNever };
  Policy policy = Policy::kCost;
  double copy_bytes_per_s = 10e9;
  double flops_per_s = 1e12;
  uint64_t n_params = 0;

  bool favours_swap(uint64_t kv_bytes, int64_t n_tokens) const {
    if (policy == Policy::kAlways) return true;
    if (policy == Policy::kNever) return false;
    const double copy_s = 2.0 * static_cast<double>(kv_bytes) / copy_bytes_per_s;
    const double recompute_s = 2.0 * static_cast<double>(n_params) * static_cast<double>(n_tokens) / flops_per_s;
    return copy_s <= recompute_s;
  }

  // The assumed rates of a device kind, then the environment's overrides (bad values: kInvalidArgument).
  static KvSwapCost for_device(DeviceKind kind, uint64_t n_params) {
    KvSwapCost c;
    c.n_params = n_params;
    if (kind == DeviceKind::kCUDA) {
      c.copy_bytes_per_s = 20e9;   // PCIe 4.0 x16 with pinned memory, roughly
      c.flops_per_s = 200e12;      // a large GPU's sustained bf16 forward rate, roughly
    } else {
      c.copy_bytes_per_s = 5e9;    // memcpy within host RAM, one thread
      c.flops_per_s = 0.2e12;      // a many-core CPU's sustained forward rate, roughly
    }
    auto num = [](const char* name, double* out, double scale) {
      const char* v = std::getenv(name);
      if (v == nullptr || *v == '\0') return;
      char* end = nullptr;
      const double x = std::strtod(v, &end);
      ELI_CHECK_ARG(end != v && *end == '\0' && x > 0.0 && x < 1e9, name, " must be a positive number, got '", v, "'");
      *out = x * scale;
    };
    num("ELI_KV_SWAP_COPY_GBPS", &c.copy_bytes_per_s, 1e9);
    num("ELI_KV_SWAP_TFLOPS", &c.flops_per_s, 1e12);
    if (const char* p = std::getenv("ELI_KV_SWAP_POLICY"); p != nullptr && *p != '\0') {
      const std::string s(p);
      if (s == "cost") c.policy = Policy::kCost;
      else if (s == "always") c.policy = Policy::kAlways;
      else if (s == "never") c.policy = Policy::kNever;
      else ELI_THROW(kInvalidArgument, "ELI_KV_SWAP_POLICY must be cost, always or never, got '", s, "'");
    }
    return c;
  }
};

}  // namespace eli
