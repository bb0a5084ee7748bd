// runtime/device/cuda/cuda_stream.h: RAII owners of CUDA streams and events, and a guard that
// sets the current device for a scope. Internal (CUDA builds only).
//
// Invariants: a CudaStream / CudaEvent owns its handle exclusively (move-only) and destroys it on
// the device it was created on; destructors never throw.
#pragma once

#include <cuda_runtime.h>

namespace eli {

// Makes `index` the current device for the scope and restores the previous one after.
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int index);
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;
  bool changed_ = false;
};

class CudaEvent;

class CudaStream {
 public:
  // A non-blocking stream on `device` (it does not synchronize with the legacy default stream).
  // priority: lower numbers are higher priority (cudaDeviceGetStreamPriorityRange); 0 is normal.
  explicit CudaStream(int device, int priority = 0);
  ~CudaStream();
  CudaStream(CudaStream&& o) noexcept;
  CudaStream& operator=(CudaStream&& o) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  cudaStream_t get() const { return stream_; }
  int device() const { return device_; }
  void synchronize() const;
  // Work queued on this stream after the call waits for `event`.
  void wait(const CudaEvent& event) const;
  // True when all work queued so far has finished.
  bool query() const;

 private:
  void reset() noexcept;
  cudaStream_t stream_ = nullptr;
  int device_ = -1;
};

class CudaEvent {
 public:
  // timing=false makes a lighter event (cudaEventDisableTiming), good for ordering only.
  explicit CudaEvent(int device, bool timing = false);
  ~CudaEvent();
  CudaEvent(CudaEvent&& o) noexcept;
  CudaEvent& operator=(CudaEvent&& o) noexcept;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  cudaEvent_t get() const { return event_; }
  void record(cudaStream_t stream) const;
  void synchronize() const;
  bool query() const;
  // Milliseconds between two recorded timing events (start recorded before end).
  static float elapsed_ms(const CudaEvent& start, const CudaEvent& end);

 private:
  void reset() noexcept;
  cudaEvent_t event_ = nullptr;
  int device_ = -1;
};

}  // namespace eli
