// runtime/device/cuda/cuda_host_staging.cc: HostStaging on CUDA (see runtime/device/host_staging.h):
// a page-locked buffer (pageable if pinning fails) and an event as the fence.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/cuda/cuda_stream.h"
#include "runtime/device/host_staging.h"

namespace eli {

namespace {

class CudaHostStaging final : public HostStaging {
 public:
  CudaHostStaging(int device, size_t bytes) : event_(device), bytes_(bytes) {
    if (cudaHostAlloc(&pinned_, bytes, cudaHostAllocPortable) != cudaSuccess) {
      (void)cudaGetLastError();  // not sticky: fall back to pageable memory
      pinned_ = nullptr;
      pageable_.resize((bytes + 7) / 8);
    }
  }
  ~CudaHostStaging() override {
    if (recorded_) ELI_CUDA_WARN(cudaEventSynchronize(event_.get()));
    if (pinned_ != nullptr) ELI_CUDA_WARN(cudaFreeHost(pinned_));
  }
  void* data() override { return pinned_ != nullptr ? pinned_ : static_cast<void*>(pageable_.data()); }
  size_t bytes() const override { return bytes_; }
  void record(void* stream) override {
    event_.record(static_cast<cudaStream_t>(stream));
    recorded_ = true;
  }
  void wait() override {
    if (recorded_) event_.synchronize();
  }

 private:
  CudaEvent event_;
  void* pinned_ = nullptr;
  std::vector<uint64_t> pageable_;
  size_t bytes_;
  bool recorded_ = false;
};

}  // namespace

std::unique_ptr<HostStaging> create_cuda_host_staging(int device_index, size_t bytes) {
  return std::make_unique<CudaHostStaging>(device_index, bytes);
}

}  // namespace eli
