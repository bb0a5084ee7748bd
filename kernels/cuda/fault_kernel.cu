// kernels/cuda/fault_kernel.cu: the "kernel_poison" fault of runtime/core/fault_injection.h: a
// kernel that writes through an invalid device pointer, which makes the CUDA context sticky-broken
// (every later CUDA call in the process fails with cudaErrorIllegalAddress), as a real out-of-bounds
// kernel would. Test use only: nothing calls it unless the fault point is armed.
//
// Invariants: not in the kernel registry (it is not an op); the bad address is passed at run time
// (the compiler cannot see that the store is out of bounds), and the store is volatile (it is never
// optimized away). Excluded from compute-sanitizer runs (bench/device_sanitize.sh).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "eli/error.h"
#include "runtime/core/fault_injection.h"
#include "runtime/device/cuda/cuda_check.h"
#include "runtime/device/cuda/cuda_stream.h"

namespace eli {
namespace {

__global__ void illegal_address_kernel(int* bad) {
  if (threadIdx.x == 0 && blockIdx.x == 0) *static_cast<volatile int*>(bad) = 0x0BADF00D;
}

}  // namespace

std::string poison_cuda_context(int device) {
  CudaDeviceGuard guard(device);
  // The first page of the address space is never mapped on the device.
  int* bad = reinterpret_cast<int*>(static_cast<uintptr_t>(0x40));
  illegal_address_kernel<<<1, 32>>>(bad);
  cudaError_t launch = cudaGetLastError();
  cudaError_t done = cudaDeviceSynchronize();
  const cudaError_t seen = done != cudaSuccess ? done : launch;
  ELI_CHECK_KIND(kInternal, seen != cudaSuccess, "the fault kernel ran without a fault on cuda:", device);
  return cudaGetErrorName(seen);
}

}  // namespace eli
