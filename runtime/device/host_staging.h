// runtime/device/host_staging.h: a host buffer for asynchronous copies with one device, plus a
// fence that says when the copies queued on a stream up to a point are done. Callers that overlap
// host work with device work (the sampler's per-step upload and download) use it without knowing
// which backend they run on.
//
// On CUDA the buffer is page-locked (cudaMemcpyAsync then really is asynchronous; pageable memory
// is used if pinning fails, which is slower but still correct) and the fence is an event; on the
// CPU the buffer is plain memory and the fence is a no-op, because CPU copies complete before they
// return. Invariants: the buffer's address and size never change; wait() returns once every copy
// queued on the stream before the last record() has finished (at once if record() was never
// called); the buffer must not be destroyed while copies that use it are in flight.
#pragma once

#include <cstddef>
#include <memory>

namespace eli {

class Device;

class HostStaging {
 public:
  virtual ~HostStaging() = default;
  virtual void* data() = 0;
  virtual size_t bytes() const = 0;
  // Marks the current end of `stream`, the stream the copies were queued on (cudaStream_t on CUDA).
  virtual void record(void* stream) = 0;
  // Waits until the work up to the last mark is done.
  virtual void wait() = 0;
};

// A staging buffer of `bytes` (> 0) for copies with `device`.
std::unique_ptr<HostStaging> create_host_staging(Device& device, size_t bytes);

// The CUDA implementation (runtime/device/cuda/cuda_host_staging.cc); throws eli::Error
// (kNotCompiled) in a build without CUDA.
std::unique_ptr<HostStaging> create_cuda_host_staging(int device_index, size_t bytes);

}  // namespace eli
