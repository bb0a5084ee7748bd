// kernels/registry.h: the one table of (op, device, weight format, dtype, variant) -> kernel function.
//
// Dispatch, "is this supported?", tests and benchmarks all read this table; nothing else keeps a
// list of ops. Kernels are added in kernels/kernel_table.cc (explicitly, so static-library linking
// cannot drop them). For a key, the entry with the highest priority that is usable on this machine
// (e.g. its CPU features are present) is the default; tests walk every entry.
#pragma once

#include <string>
#include <vector>

#include "eli/device.h"
#include "eli/dtype.h"
#include "kernels/ops.h"
#include "runtime/core/weight_format.h"

namespace eli {

using KernelFn = void (*)(const void* args, const ExecContext& ctx);

struct KernelEntry {
  Op op;
  DeviceKind device;
  DType dtype;            // weight/storage dtype the kernel reads
  const char* variant;    // "ref", "avx2", "cuda", ...
  int priority;           // higher wins; ref kernels are 0
  KernelFn fn;
  bool (*usable)();       // nullptr: always usable; else checked at lookup (CPU features, ...)
  WeightFormat format = WeightFormat::kDense;  // layout of the weight the kernel reads
};

// Every kernel of this build (including ones not usable on this machine).
const std::vector<KernelEntry>& all_kernels();
// The best usable entry for (op, device, format, dtype), or nullptr if none.
const KernelEntry* find_kernel(Op op, DeviceKind device, WeightFormat format, DType dtype,
                               const char* variant = nullptr);
// Dense weights (every op but the block-format ones).
inline const KernelEntry* find_kernel(Op op, DeviceKind device, DType dtype, const char* variant = nullptr) {
  return find_kernel(op, device, WeightFormat::kDense, dtype, variant);
}
// Loads now what a device's kernels would load at their first call (on CUDA the GEMM library's
// handle for GPU `index`, and with it its code), so that no step loads code: ranks sharing a GPU
// must not while a peer's kernel waits on the GPU (runtime/comm/peer_communicator.h). Called when a
// runner is created. Idempotent; a no-op on the CPU.
void prepare_kernels(DeviceKind device, int index);

// As find_kernel, but throws eli::Error(kUnsupported) naming the key when none exists.
const KernelEntry& get_kernel(Op op, DeviceKind device, WeightFormat format, DType dtype,
                              const char* variant = nullptr);
inline const KernelEntry& get_kernel(Op op, DeviceKind device, DType dtype, const char* variant = nullptr) {
  return get_kernel(op, device, WeightFormat::kDense, dtype, variant);
}

// Benchmarks only (bench/cuda_decode_step_bench.cc): while an OpAblation lives, lookups of its ops
// return a kernel that does nothing, so the forward runs without them and the time saved is their
// marginal cost in the chain. Their outputs are garbage then. One at a time; not for library code.
class OpAblation {
 public:
  explicit OpAblation(const std::vector<Op>& ops);
  ~OpAblation();
  OpAblation(const OpAblation&) = delete;
  OpAblation& operator=(const OpAblation&) = delete;
};

}  // namespace eli
