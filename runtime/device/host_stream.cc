// runtime/device/host_stream.cc: ImmediateStream and HostEvent (see host_stream.h).
#include "runtime/device/host_stream.h"

#include "eli/error.h"
#include "runtime/device/device.h"

namespace eli {

DeviceId ImmediateStream::device() const { return device_->id(); }

DeviceId HostEvent::device() const { return device_->id(); }

void HostEvent::record(const Stream& stream) {
  ELI_CHECK(stream.device() == device(), "an event of ", device_name(device()), " cannot be recorded on a stream of ",
            device_name(stream.device()));
  ELI_CHECK(stream.native() == nullptr, "a host event cannot be recorded on an asynchronous stream");
  recorded_ = true;
  if (timing_) at_ = std::chrono::steady_clock::now();
}

float HostEvent::elapsed_ms_since(const Event& start) const {
  const HostEvent* s = dynamic_cast<const HostEvent*>(&start);
  ELI_CHECK(s != nullptr && s->device() == device(), "elapsed time between events of different devices");
  ELI_CHECK(timing_ && s->timing_, "elapsed time needs two timing events (create_event(true))");
  ELI_CHECK(recorded_ && s->recorded_, "elapsed time of an event that was never recorded");
  return std::chrono::duration<float, std::milli>(at_ - s->at_).count();
}

}  // namespace eli
