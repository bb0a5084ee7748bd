// runtime/device/device_factory.cc: device names ("cpu", "cuda", "cuda:N"), create_device, the
// current device (make_device_current, DeviceScope), and the CPU-only stand-ins of the CUDA entry
// points (a CPU-only build keeps every Device API; creating a CUDA device throws
// eli::Error(kNotCompiled)). "auto" is resolved by the caller, not here.
#include <cctype>
#include <memory>
#include <string>

#include "eli/device.h"
#include "eli/error.h"
#include "runtime/device/current_device.h"
#include "runtime/device/device.h"

namespace eli {

namespace {
constexpr int kMaxDeviceIndex = 1023;
}

DeviceId parse_device(const std::string& name) {
  if (name == "cpu" || name == "cpu:0") return DeviceId{DeviceKind::kCPU, 0};
  if (name == "cuda") return DeviceId{DeviceKind::kCUDA, 0};
  const std::string prefix = "cuda:";
  if (name.size() > prefix.size() && name.size() <= prefix.size() + 4 &&
      name.compare(0, prefix.size(), prefix) == 0) {
    int index = 0;
    bool digits = true;
    for (size_t i = prefix.size(); i < name.size(); ++i) {
      if (!std::isdigit(static_cast<unsigned char>(name[i]))) {
        digits = false;
        break;
      }
      index = index * 10 + (name[i] - '0');
    }
    if (digits && index <= kMaxDeviceIndex) return DeviceId{DeviceKind::kCUDA, index};
  }
  ELI_THROW(kInvalidArgument, "unknown device '", name.substr(0, 64),
            "' (expected \"cpu\", \"cuda\" or \"cuda:N\")");
}

std::string device_name(DeviceId id) {
  switch (id.kind) {
    case DeviceKind::kCPU: return "cpu";
    case DeviceKind::kCUDA: return "cuda:" + std::to_string(id.index);
  }
  return "unknown:" + std::to_string(static_cast<int>(id.kind));
}

std::unique_ptr<Device> create_device(DeviceId id, const DeviceOptions& options) {
  switch (id.kind) {
    case DeviceKind::kCPU:
      ELI_CHECK_ARG(id.index == 0, "there is one CPU device (cpu:0), not cpu:", id.index);
      return create_cpu_device(options);
    case DeviceKind::kCUDA:
      return create_cuda_device(id.index, options);
  }
  ELI_THROW(kInvalidArgument, "unknown device kind ", static_cast<int>(id.kind));
}

void make_device_current(DeviceId id) {
  switch (id.kind) {
    case DeviceKind::kCPU:
      ELI_CHECK_ARG(id.index == 0, "there is one CPU device (cpu:0), not cpu:", id.index);
      return;
    case DeviceKind::kCUDA:
      cuda_set_current_device(id.index);
      return;
  }
  ELI_THROW(kInvalidArgument, "unknown device kind ", static_cast<int>(id.kind));
}

DeviceScope::DeviceScope(DeviceId id) {
  if (id.kind != DeviceKind::kCUDA) {
    make_device_current(id);  // checks the id; nothing to change or restore
    return;
  }
  const int previous = cuda_current_device();
  cuda_set_current_device(id.index);
  if (previous >= 0 && previous != id.index) previous_cuda_ = previous;
}

DeviceScope::~DeviceScope() {
  if (previous_cuda_ < 0) return;
  try {
    cuda_set_current_device(previous_cuda_);
  } catch (...) {
    // A destructor must not throw; a broken context shows at the next checked call.
  }
}

#ifndef ELI_WITH_CUDA
std::unique_ptr<Device> create_cuda_device(int index, const DeviceOptions&) {
  ELI_THROW(kNotCompiled, "eli was built without CUDA (cannot create cuda:", index, ")");
}
int cuda_device_count() { return 0; }
bool cuda_compiled() { return false; }
bool cuda_loads_kernels_lazily() { return false; }
int cuda_current_device() { return -1; }
void cuda_set_current_device(int index) {
  ELI_THROW(kNotCompiled, "eli was built without CUDA (cannot use cuda:", index, ")");
}
#endif

}  // namespace eli
