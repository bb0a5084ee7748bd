// runtime/device/host_staging.cc: HostStaging for the CPU (plain memory, no-op fence) and the
// dispatch by device kind (see host_staging.h); the CUDA implementation lives in
// runtime/device/cuda/cuda_host_staging.cc, stubbed here in builds without CUDA.
#include "runtime/device/host_staging.h"

#include <cstdint>
#include <vector>

#include "eli/error.h"
#include "runtime/device/device.h"

namespace eli {

namespace {

class PlainHostStaging final : public HostStaging {
 public:
  explicit PlainHostStaging(size_t bytes) : words_((bytes + 7) / 8), bytes_(bytes) {}
  void* data() override { return words_.data(); }
  size_t bytes() const override { return bytes_; }
  void record(void*) override {}
  void wait() override {}

 private:
  std::vector<uint64_t> words_;  // 8-byte aligned
  size_t bytes_;
};

}  // namespace

std::unique_ptr<HostStaging> create_host_staging(Device& device, size_t bytes) {
  ELI_CHECK(bytes > 0, "host staging needs a positive size");
  const DeviceId id = device.id();
  if (id.kind == DeviceKind::kCUDA) return create_cuda_host_staging(id.index, bytes);
  return std::make_unique<PlainHostStaging>(bytes);
}

#ifndef ELI_WITH_CUDA
std::unique_ptr<HostStaging> create_cuda_host_staging(int device_index, size_t) {
  ELI_THROW(kNotCompiled, "eli was built without CUDA (no host staging for cuda:", device_index, ")");
}
#endif

}  // namespace eli
