// kernels/registry.cc: lookups in the kernel table built once by build_kernel_table()
// (kernels/kernel_table.cc). The table is immutable after the first call; lookups are thread-safe.
#include "kernels/registry.h"

#include <cstring>

#include "eli/error.h"

namespace eli {

std::vector<KernelEntry> build_kernel_table();  // kernels/kernel_table.cc

const std::vector<KernelEntry>& all_kernels() {
  static const std::vector<KernelEntry> kTable = build_kernel_table();
  return kTable;
}

const KernelEntry* find_kernel(Op op, DeviceKind device, WeightFormat format, DType dtype, const char* variant) {
  const KernelEntry* best = nullptr;
  for (const KernelEntry& e : all_kernels()) {
    if (e.op != op || e.device != device || e.format != format || e.dtype != dtype) continue;
    if (variant != nullptr && std::strcmp(variant, e.variant) != 0) continue;
    if (e.usable != nullptr && !e.usable()) continue;
    if (best == nullptr || e.priority > best->priority) best = &e;
  }
  return best;
}

const KernelEntry& get_kernel(Op op, DeviceKind device, WeightFormat format, DType dtype, const char* variant) {
  const KernelEntry* e = find_kernel(op, device, format, dtype, variant);
  if (e == nullptr) {
    ELI_THROW(kUnsupported, "no kernel for op ", op_name(op), " on ",
              device == DeviceKind::kCUDA ? "cuda" : "cpu", " with ", weight_format_name(format), " dtype ",
              dtype_name(dtype),
              variant != nullptr ? " variant " : "", variant != nullptr ? variant : "");
  }
  return *e;
}

}  // namespace eli
