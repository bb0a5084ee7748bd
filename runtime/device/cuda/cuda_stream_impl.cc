// runtime/device/cuda/cuda_stream_impl.cc: see cuda_stream_impl.h.
#include "runtime/device/cuda/cuda_stream_impl.h"

#include <algorithm>

#include "eli/error.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

int clamp_priority(int device, int priority) {
  CudaDeviceGuard guard(device);
  int least = 0, greatest = 0;  // greatest priority is the numerically lowest
  ELI_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  return std::min(std::max(priority, greatest), least);
}

}  // namespace

CudaStreamImpl::CudaStreamImpl(int device, int priority) : stream_(device, clamp_priority(device, priority)) {}

void CudaStreamImpl::wait(const Event& event) const {
  if (event.native() == nullptr) {
    event.synchronize();  // a host event: complete once recorded
    return;
  }
  ELI_CUDA_CHECK(cudaStreamWaitEvent(stream_.get(), static_cast<cudaEvent_t>(event.native()), 0));
}

void CudaEventImpl::record(const Stream& stream) {
  ELI_CHECK(stream.device() == device() && stream.native() != nullptr, "an event of ", device_name(device()),
            " cannot be recorded on a stream of ", device_name(stream.device()));
  CudaDeviceGuard guard(device_);
  event_.record(static_cast<cudaStream_t>(stream.native()));
  recorded_ = true;
}

float CudaEventImpl::elapsed_ms_since(const Event& start) const {
  const CudaEventImpl* s = dynamic_cast<const CudaEventImpl*>(&start);
  ELI_CHECK(s != nullptr && s->device_ == device_, "elapsed time between events of different devices");
  ELI_CHECK(timing_ && s->timing_, "elapsed time needs two timing events (create_event(true))");
  ELI_CHECK(recorded_ && s->recorded_, "elapsed time of an event that was never recorded");
  s->event_.synchronize();  // start may be on another stream
  event_.synchronize();
  return CudaEvent::elapsed_ms(s->event_, event_);
}

}  // namespace eli
