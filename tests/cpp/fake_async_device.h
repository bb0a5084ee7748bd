// tests/cpp/fake_async_device.h: a device whose memory is host memory but which claims
// asynchronous execution and is not host-memory to its users (a stand-in for a GPU without one):
// the staged uploader and weight placement take their GPU paths (pinned staging ring, streams and
// events, all immediate here) and the results can be read back directly. Counts host->device copies.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "runtime/device/host_memory.h"
#include "runtime/device/pooled_device.h"

namespace eli {

class FakeAsyncDevice final : public PooledDevice {
 public:
  explicit FakeAsyncDevice(DeviceId id = DeviceId{DeviceKind::kCPU, 0}) : id_(id), pool_(&backend_) {
    properties_.id = id;
    properties_.name = "fake-async";
    properties_.async_execution = true;
  }
  DeviceId id() const override { return id_; }
  void copy_host_to_device(void* dst, const void* src, size_t bytes, void*) override {
    ++n_copies;
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void copy_device_to_host(void* dst, const void* src, size_t bytes, void*) override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void copy_device_to_device(void* dst, const void* src, size_t bytes, void*) override {
    if (bytes) std::memmove(dst, src, bytes);
  }
  void copy_device_to_device_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                                size_t rows, void*) override {
    for (size_t i = 0; i < rows; ++i) {
      std::memmove(static_cast<char*>(dst) + i * dst_pitch, static_cast<const char*>(src) + i * src_pitch, width);
    }
  }
  void memset_zero(void* dst, size_t bytes, void*) override {
    if (bytes) std::memset(dst, 0, bytes);
  }
  void synchronize() override {}
  uint64_t available_bytes() const override { return uint64_t{1} << 30; }
  uint64_t total_bytes() const override { return uint64_t{1} << 30; }
  SizeClassPool& pool() override { return pool_; }
  int n_copies = 0;

 private:
  DeviceId id_;
  AlignedHostBackend backend_;
  SizeClassPool pool_;
};

}  // namespace eli
