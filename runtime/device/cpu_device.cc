// runtime/device/cpu_device.cc: the CPU Device: 64-byte aligned host memory through the same
// caching SizeClassPool as the GPU (so stats and "no allocations in the decode loop" read alike),
// immediate streams and host events (PooledDevice's), and the host thread pool the CPU kernels
// run on.
//
// Invariants: every block is 64-byte aligned (sizes are rounded to >= 512 B multiples); copies are
// plain memmove and complete before returning; synchronize() is a no-op. Its memory is host
// memory: pinned buffers are plain aligned RAM, and mapped-file buffers serve as device memory.
#include <cstring>
#include <memory>
#include <thread>

#include "eli/error.h"
#include "runtime/device/pooled_device.h"

namespace eli {
namespace {

class CpuDevice final : public PooledDevice {
 public:
  explicit CpuDevice(const DeviceOptions& options) : PooledDevice(options), pool_(&backend_) {
    DeviceProperties& p = properties_;
    p.id = DeviceId{DeviceKind::kCPU, 0};
    p.name = "cpu";
    p.total_memory_bytes = host_total_bytes();
    p.n_compute_units = static_cast<int>(std::thread::hardware_concurrency());
    p.alignment = 64;
    p.host_memory = true;
    p.unified_memory = true;
  }
  DeviceId id() const override { return DeviceId{DeviceKind::kCPU, 0}; }
  void copy_host_to_device(void* dst, const void* src, size_t bytes, void*) override { copy(dst, src, bytes); }
  void copy_device_to_host(void* dst, const void* src, size_t bytes, void*) override { copy(dst, src, bytes); }
  void copy_device_to_device(void* dst, const void* src, size_t bytes, void*) override { copy(dst, src, bytes); }
  void copy_device_to_device_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                                size_t rows, void*) override {
    ELI_CHECK(rows == 0 || width == 0 || (dst_pitch >= width && src_pitch >= width), "2-d copy: pitch below width");
    for (size_t i = 0; i < rows; ++i) {
      copy(static_cast<char*>(dst) + i * dst_pitch, static_cast<const char*>(src) + i * src_pitch, width);
    }
  }
  void memset_zero(void* dst, size_t bytes, void*) override {
    if (bytes == 0) return;
    ELI_CHECK(dst != nullptr, "memset_zero of ", bytes, " bytes to null");
    std::memset(dst, 0, bytes);
  }
  void synchronize() override {}
  uint64_t available_bytes() const override { return host_available_bytes(); }
  uint64_t total_bytes() const override { return host_total_bytes(); }
  SizeClassPool& pool() override { return pool_; }

 private:
  static void copy(void* dst, const void* src, size_t bytes) {
    if (bytes == 0) return;
    ELI_CHECK(dst != nullptr && src != nullptr, "copy of ", bytes, " bytes with a null pointer");
    std::memmove(dst, src, bytes);
  }
  AlignedHostBackend backend_;  // declared before pool_: destroyed after it
  SizeClassPool pool_;
};

}  // namespace

std::unique_ptr<Device> create_cpu_device(const DeviceOptions& options) { return std::make_unique<CpuDevice>(options); }

}  // namespace eli
