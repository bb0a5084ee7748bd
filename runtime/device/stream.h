// runtime/device/stream.h: Stream (an ordered queue of device work) and Event (a point in a stream
// that other streams and the host can wait for), the execution half of the device layer.
//
// A CUDA Stream wraps a cudaStream_t; an Event a cudaEvent_t. A device whose work completes before
// each call returns (the CPU) has "immediate" streams: native() is nullptr, synchronize() and
// wait() return at once, an event is complete the moment it is recorded, and its time is the host
// clock at that moment. So one body of model code runs on every device: queue work on a stream,
// record an event, make another stream wait for it, synchronize where the host needs results.
//
// Kernels still receive the raw handle (ExecContext::stream = stream.native()).
//
// Invariants: Streams and Events are created by a Device (Device::create_stream/create_event) and
// must be destroyed before it; they are not copyable. A Stream's methods are handle operations and
// thread-safe as the driver's are. An event is recorded only on a stream of its own device
// (kInvalidArgument otherwise); any stream may wait for any event (a stream that cannot wait
// asynchronously for an event of another kind waits on the host). Events report the work recorded
// last; an event never recorded counts as complete (as CUDA's do), but has no time.
#pragma once

#include "eli/device.h"

namespace eli {

class Event;

class Stream {
 public:
  virtual ~Stream() = default;
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  virtual DeviceId device() const = 0;
  // cudaStream_t on CUDA; nullptr for an immediate (CPU) stream. What kernels receive.
  virtual void* native() const = 0;
  // Blocks the host until everything queued so far has finished.
  virtual void synchronize() const = 0;
  // True when everything queued so far has finished (never blocks).
  virtual bool query() const = 0;
  // Work queued on this stream after the call starts only after the work `event` recorded.
  virtual void wait(const Event& event) const = 0;
};

class Event {
 public:
  virtual ~Event() = default;
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  virtual DeviceId device() const = 0;
  // cudaEvent_t on CUDA; nullptr for a host event.
  virtual void* native() const = 0;
  // Captures the work queued on `stream` so far (replacing what was recorded before). The stream
  // must belong to this event's device.
  virtual void record(const Stream& stream) = 0;
  // Blocks the host until the recorded work has finished.
  virtual void synchronize() const = 0;
  // True when the recorded work has finished (never blocks).
  virtual bool query() const = 0;
  // Made with timing enabled (Device::create_event(true)).
  virtual bool timing() const = 0;
  // Milliseconds from `start` to this event: both timing events of the same device, both recorded;
  // waits for this event. Throws kInvalidArgument otherwise.
  virtual float elapsed_ms_since(const Event& start) const = 0;
};

// Milliseconds between two recorded timing events (start recorded before end).
inline float elapsed_ms(const Event& start, const Event& end) { return end.elapsed_ms_since(start); }

}  // namespace eli
