// runtime/device/cuda/cuda_staged_upload.cc: the pinned, pipelined path of the staged uploader
// (see runtime/device/staged_upload.h) for CUDA devices.
//
// A ring of n_buffers page-locked buffers, allocated for this call and freed before it returns.
// Fill f uses buffer f % n: the host waits on that buffer's event (its previous copies are done),
// fills it on the thread pool, queues its copies on the stream and records the event; so the
// host fills buffer f + 1 while the copy engine drains buffer f. Ends with one stream synchronize.
// Invariants: no buffer is written while a copy reads it; on any exit (errors included) the
// stream is synchronized before the buffers are freed.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "eli/error.h"
#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/cuda/cuda_stream.h"
#include "runtime/device/pooled_device.h"
#include "runtime/device/staged_upload.h"

namespace eli {
namespace {

// Owns the pinned buffers and events of one upload; waits for the stream before freeing them.
struct StagingRing {
  cudaStream_t stream = nullptr;
  std::vector<void*> buffers;
  std::vector<CudaEvent> events;
  ~StagingRing() {
    if (stream != nullptr) ELI_CUDA_WARN(cudaStreamSynchronize(stream));
    for (void* b : buffers) ELI_CUDA_WARN(cudaFreeHost(b));
  }
};

}  // namespace

bool run_staged_upload(Device& device, ThreadPool* pool, const std::vector<UploadPiece>& pieces,
                       const std::vector<StagingFill>& plan, void* stream, const StagedUploadOptions& options) {
  if (device.id().kind != DeviceKind::kCUDA || plan.empty()) return false;
  if (stream == nullptr) {
    PooledDevice* pooled = as_pooled(device);
    if (pooled == nullptr || pooled->default_stream() == nullptr) return false;
    stream = pooled->default_stream();
  }
  const int index = device.id().index;
  CudaDeviceGuard guard(index);
  StagingRing ring;
  const size_t n_buffers = std::min<size_t>(static_cast<size_t>(std::max(options.n_buffers, 1)), plan.size());
  uint64_t buffer_bytes = 0;
  for (const StagingFill& f : plan) buffer_bytes = std::max(buffer_bytes, f.bytes);
  for (size_t i = 0; i < n_buffers; ++i) {
    void* p = nullptr;
    cudaError_t e = cudaHostAlloc(&p, buffer_bytes, cudaHostAllocDefault);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      break;  // fewer buffers (still correct); none at all: the caller falls back
    }
    ring.buffers.push_back(p);
  }
  if (ring.buffers.empty()) return false;
  for (size_t i = 0; i < ring.buffers.size(); ++i) ring.events.emplace_back(index, false);
  ring.stream = static_cast<cudaStream_t>(stream);

  for (size_t f = 0; f < plan.size(); ++f) {
    const size_t b = f % ring.buffers.size();
    if (f >= ring.buffers.size()) ring.events[b].synchronize();
    fill_staging(pool, pieces, plan[f], ring.buffers[b]);
    const uint8_t* base = static_cast<const uint8_t*>(ring.buffers[b]);
    // One copy per segment: two pieces adjacent on the device may still be two allocations, which
    // one copy must not span.
    for (const StagingSegment& s : plan[f].segments) {
      uint8_t* dst = static_cast<uint8_t*>(pieces[s.piece].dst) + s.piece_offset;
      ELI_CUDA_CHECK(cudaMemcpyAsync(dst, base + s.staging_offset, s.bytes, cudaMemcpyHostToDevice, ring.stream));
    }
    ring.events[b].record(ring.stream);
  }
  ELI_CUDA_CHECK(cudaStreamSynchronize(ring.stream));
  return true;
}

}  // namespace eli
