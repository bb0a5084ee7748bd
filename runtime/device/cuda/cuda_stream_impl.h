// runtime/device/cuda/cuda_stream_impl.h: the CUDA implementations of Stream and Event
// (runtime/device/stream.h) over the RAII CudaStream / CudaEvent. Internal (CUDA builds only).
//
// Invariants: a CudaStreamImpl is a non-blocking stream of one device; waiting for a host event
// waits on the host (it is complete already), for a CUDA event of any device asynchronously
// (cudaStreamWaitEvent). A CudaEventImpl is recorded only on a CUDA stream of its own device.
#pragma once

#include "runtime/device/cuda/cuda_stream.h"
#include "runtime/device/stream.h"

namespace eli {

class CudaStreamImpl final : public Stream {
 public:
  // priority: clamped to the device's range (lower is more urgent).
  CudaStreamImpl(int device, int priority);
  DeviceId device() const override { return DeviceId{DeviceKind::kCUDA, stream_.device()}; }
  void* native() const override { return stream_.get(); }
  void synchronize() const override { stream_.synchronize(); }
  bool query() const override { return stream_.query(); }
  void wait(const Event& event) const override;

 private:
  CudaStream stream_;
};

class CudaEventImpl final : public Event {
 public:
  CudaEventImpl(int device, bool timing) : event_(device, timing), device_(device), timing_(timing) {}
  DeviceId device() const override { return DeviceId{DeviceKind::kCUDA, device_}; }
  void* native() const override { return event_.get(); }
  void record(const Stream& stream) override;
  void synchronize() const override { event_.synchronize(); }
  bool query() const override { return event_.query(); }
  bool timing() const override { return timing_; }
  float elapsed_ms_since(const Event& start) const override;

 private:
  CudaEvent event_;
  int device_;
  bool timing_;
  bool recorded_ = false;
};

}  // namespace eli
