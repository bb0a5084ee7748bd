// kernels/registry.h: the one table of (op, device, dtype, variant) -> kernel function.
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
};

// Every kernel of this build (including ones not usable on this machine).
const std::vector<KernelEntry>& all_kernels();
// The best usable entry, or nullptr if none.
const KernelEntry* find_kernel(Op op, DeviceKind device, DType dtype, const char* variant = nullptr);
// As find_kernel, but throws eli::Error(kUnsupported) naming the key when none exists.
const KernelEntry& get_kernel(Op op, DeviceKind device, DType dtype, const char* variant = nullptr);

template <typename Args>
inline void launch(Op op, DeviceKind device, DType dtype, const Args& args, const ExecContext& ctx) {
  get_kernel(op, device, dtype).fn(&args, ctx);
}

}  // namespace eli
