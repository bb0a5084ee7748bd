// runtime/device/host_stream.h: the immediate Stream and the host Event of devices whose work is
// complete when each call returns (the CPU; also the default of PooledDevice). Internal header.
//
// Invariants: an ImmediateStream has no native handle and never has pending work, so
// synchronize() and query() are trivial and wait(event) just waits on the host for the event
// (already complete unless it is another device's). A HostEvent is complete once recorded; it
// stores the host clock at record() for elapsed_ms.
#pragma once

#include <chrono>

#include "runtime/device/stream.h"

namespace eli {

class Device;

class ImmediateStream final : public Stream {
 public:
  explicit ImmediateStream(const Device* device) : device_(device) {}
  DeviceId device() const override;
  void* native() const override { return nullptr; }
  void synchronize() const override {}
  bool query() const override { return true; }
  void wait(const Event& event) const override { event.synchronize(); }

 private:
  const Device* device_;
};

class HostEvent final : public Event {
 public:
  HostEvent(const Device* device, bool timing) : device_(device), timing_(timing) {}
  DeviceId device() const override;
  void* native() const override { return nullptr; }
  // Checks the stream is this device's and that it has no asynchronous work (a host event cannot
  // wait for a GPU stream: record a CUDA event there instead).
  void record(const Stream& stream) override;
  void synchronize() const override {}
  bool query() const override { return true; }
  bool timing() const override { return timing_; }
  float elapsed_ms_since(const Event& start) const override;

 private:
  const Device* device_;
  bool timing_;
  bool recorded_ = false;
  std::chrono::steady_clock::time_point at_{};
};

}  // namespace eli
