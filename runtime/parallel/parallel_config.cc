// runtime/parallel/parallel_config.cc: see parallel_config.h.
#include "runtime/parallel/parallel_config.h"

#include <algorithm>
#include <cctype>

#include "eli/error.h"
#include "runtime/device/device.h"

namespace eli {

std::vector<DeviceId> parse_device_list(const std::string& devices) {
  std::vector<DeviceId> out;
  if (devices.empty()) return out;
  std::string kind;  // the kind a bare number takes
  size_t at = 0;
  while (at <= devices.size()) {
    const size_t comma = std::min(devices.find(',', at), devices.size());
    std::string item = devices.substr(at, comma - at);
    item.erase(std::remove_if(item.begin(), item.end(), [](unsigned char c) { return std::isspace(c); }), item.end());
    ELI_CHECK_ARG(!item.empty(), "devices '", devices, "' has an empty entry");
    if (std::all_of(item.begin(), item.end(), [](unsigned char c) { return std::isdigit(c); })) {
      ELI_CHECK_ARG(kind == "cuda", "devices '", devices, "': a bare index (", item,
                    ") must follow a cuda:N entry, e.g. cuda:0,1");
      item = "cuda:" + item;
    }
    DeviceId id;
    try {
      id = parse_device(item);
    } catch (const Error& e) {
      ELI_THROW(kInvalidArgument, "devices '", devices, "': ", e.what());
    }
    kind = id.kind == DeviceKind::kCUDA ? "cuda" : "cpu";
    out.push_back(id);
    at = comma + 1;
  }
  return out;
}

ParallelPlan plan_parallel(const EngineConfig& config, DeviceId device) {
  ParallelPlan p;
  p.tp = config.tensor_parallel_size;
  p.pp = config.pipeline_parallel_size;
  ELI_CHECK_ARG(p.tp >= 1 && p.pp >= 1, "tensor_parallel_size and pipeline_parallel_size must be >= 1, got ", p.tp,
                " and ", p.pp);
  const int world = p.world();
  std::vector<DeviceId> listed = parse_device_list(config.devices);
  const bool all_cpu = !listed.empty() && std::all_of(listed.begin(), listed.end(), [](DeviceId d) {
    return d.kind == DeviceKind::kCPU;
  });
  if (!listed.empty()) {
    const DeviceKind kind = listed[0].kind;
    ELI_CHECK_ARG(std::all_of(listed.begin(), listed.end(), [&](DeviceId d) { return d.kind == kind; }),
                  "devices '", config.devices, "' mixes the CPU and GPUs");
    ELI_CHECK_ARG(config.device == "auto" || device.kind == kind, "device '", config.device,
                  "' conflicts with devices '", config.devices, "'");
    device.kind = kind;
  }
  if (device.kind == DeviceKind::kCPU || all_cpu) {
    ELI_CHECK_ARG(listed.size() <= 1, "devices '", config.devices,
                  "': on the CPU every rank is a thread of the one CPU; list it once (cpu) or not at all");
    p.devices.assign(static_cast<size_t>(world), DeviceId{DeviceKind::kCPU, 0});
  } else if (!listed.empty()) {
    ELI_CHECK_ARG(static_cast<int>(listed.size()) == world, "devices '", config.devices, "' lists ", listed.size(),
                  " devices but tensor_parallel_size x pipeline_parallel_size = ", p.tp, " x ", p.pp, " = ", world,
                  " ranks (one device per rank)");
    p.devices = listed;
  } else if (world > 1) {
    ELI_CHECK_ARG(config.device == "auto" || config.device == "cuda", "device '", config.device, "' is one GPU but ",
                  world, " ranks need ", world, " devices: pass devices (e.g. cuda:0,1) or device=cuda");
    const int visible = cuda_device_count();
    ELI_CHECK_ARG(world <= visible, "tensor_parallel_size x pipeline_parallel_size = ", world,
                  " ranks but only ", visible, " CUDA devices are visible (more ranks than devices; ranks may share a "
                  "GPU when devices lists it more than once, e.g. cuda:0,0: slower, for checking sharding)");
    for (int i = 0; i < world; ++i) p.devices.push_back(DeviceId{DeviceKind::kCUDA, i});
  } else {
    p.devices = {device};
  }
  return p;
}

}  // namespace eli
