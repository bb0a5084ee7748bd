// runtime/device/cuda/cuda_stream.cc: RAII streams, events and the device guard.
#include "runtime/device/cuda/cuda_stream.h"

#include <utility>

#include "runtime/device/cuda/cuda_check.h"

namespace eli {

CudaDeviceGuard::CudaDeviceGuard(int index) {
  ELI_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != index) {
    ELI_CUDA_CHECK(cudaSetDevice(index));
    changed_ = true;
  }
}

CudaDeviceGuard::~CudaDeviceGuard() {
  if (changed_) ELI_CUDA_WARN(cudaSetDevice(previous_));
}

CudaStream::CudaStream(int device, int priority) : device_(device) {
  CudaDeviceGuard guard(device);
  ELI_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, priority));
}

CudaStream::~CudaStream() { reset(); }

CudaStream::CudaStream(CudaStream&& o) noexcept
    : stream_(std::exchange(o.stream_, nullptr)), device_(o.device_) {}

CudaStream& CudaStream::operator=(CudaStream&& o) noexcept {
  if (this != &o) {
    reset();
    stream_ = std::exchange(o.stream_, nullptr);
    device_ = o.device_;
  }
  return *this;
}

void CudaStream::reset() noexcept {
  if (stream_ == nullptr) return;
  int previous = -1;
  if (cudaGetDevice(&previous) == cudaSuccess && previous != device_) {
    ELI_CUDA_WARN(cudaSetDevice(device_));
  }
  ELI_CUDA_WARN(cudaStreamDestroy(stream_));
  if (previous >= 0 && previous != device_) ELI_CUDA_WARN(cudaSetDevice(previous));
  stream_ = nullptr;
}

void CudaStream::synchronize() const { ELI_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

void CudaStream::wait(const CudaEvent& event) const {
  ELI_CUDA_CHECK(cudaStreamWaitEvent(stream_, event.get(), 0));
}

bool CudaStream::query() const {
  cudaError_t e = cudaStreamQuery(stream_);
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  ELI_CUDA_CHECK(e);
  return true;
}

CudaEvent::CudaEvent(int device, bool timing) : device_(device) {
  CudaDeviceGuard guard(device);
  ELI_CUDA_CHECK(cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming));
}

CudaEvent::~CudaEvent() { reset(); }

CudaEvent::CudaEvent(CudaEvent&& o) noexcept : event_(std::exchange(o.event_, nullptr)), device_(o.device_) {}

CudaEvent& CudaEvent::operator=(CudaEvent&& o) noexcept {
  if (this != &o) {
    reset();
    event_ = std::exchange(o.event_, nullptr);
    device_ = o.device_;
  }
  return *this;
}

void CudaEvent::reset() noexcept {
  if (event_ == nullptr) return;
  ELI_CUDA_WARN(cudaEventDestroy(event_));  // events need no current-device switch to destroy
  event_ = nullptr;
}

void CudaEvent::record(cudaStream_t stream) const { ELI_CUDA_CHECK(cudaEventRecord(event_, stream)); }

void CudaEvent::synchronize() const { ELI_CUDA_CHECK(cudaEventSynchronize(event_)); }

bool CudaEvent::query() const {
  cudaError_t e = cudaEventQuery(event_);
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  ELI_CUDA_CHECK(e);
  return true;
}

float CudaEvent::elapsed_ms(const CudaEvent& start, const CudaEvent& end) {
  float ms = 0.f;
  ELI_CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), end.get()));
  return ms;
}

}  // namespace eli
