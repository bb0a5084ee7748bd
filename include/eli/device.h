// eli/device.h: device identity (kind + index). The Device interface itself lives in
// runtime/device/ and is not part of the public API.
#pragma once

#include <string>

namespace eli {

enum class DeviceKind : int { kCPU = 1, kCUDA = 2 };  // values match DLPack's DLDeviceType

struct DeviceId {
  DeviceKind kind = DeviceKind::kCPU;
  int index = 0;
  bool operator==(const DeviceId& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const DeviceId& o) const { return !(*this == o); }
};

// "cpu", "cuda", "cuda:1". Throws eli::Error(kInvalidArgument) on anything else.
DeviceId parse_device(const std::string& name);
std::string device_name(DeviceId id);

}  // namespace eli
