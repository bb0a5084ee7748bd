// kernels/registry.cc: lookups in the kernel table built once by build_kernel_table()
// (kernels/kernel_table.cc). The table is immutable after the first call; lookups are thread-safe.
#include "kernels/registry.h"

#include <array>
#include <atomic>
#include <cstring>

#include "eli/error.h"

namespace eli {

std::vector<KernelEntry> build_kernel_table();  // kernels/kernel_table.cc

const std::vector<KernelEntry>& all_kernels() {
  static const std::vector<KernelEntry> kTable = build_kernel_table();
  return kTable;
}

namespace {

std::atomic<uint64_t> g_ablated{0};  // bit i: Op i is ablated (OpAblation)
static_assert(static_cast<int>(Op::kCount) <= 64, "OpAblation keeps one bit per op");

void do_nothing(const void*, const ExecContext&) {}

const KernelEntry* ablated_entry(Op op, DeviceKind device, WeightFormat format, DType dtype) {
  thread_local KernelEntry e{};
  e = KernelEntry{op, device, dtype, "ablated", 0, do_nothing, nullptr, format};
  return &e;
}

}  // namespace

OpAblation::OpAblation(const std::vector<Op>& ops) {
  uint64_t mask = 0;
  for (Op op : ops) mask |= uint64_t{1} << static_cast<int>(op);
  uint64_t none = 0;
  ELI_CHECK(g_ablated.compare_exchange_strong(none, mask), "OpAblation: one at a time");
}

OpAblation::~OpAblation() { g_ablated.store(0); }

const KernelEntry* find_kernel(Op op, DeviceKind device, WeightFormat format, DType dtype, const char* variant) {
  if ((g_ablated.load(std::memory_order_relaxed) >> static_cast<int>(op)) & 1u) {
    return ablated_entry(op, device, format, dtype);
  }
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
