// runtime/device/cuda/cuda_check.h: ELI_CUDA_CHECK(expr) for CUDA runtime calls. Internal header
// (CUDA builds only); never included from include/eli.
//
// ELI_CUDA_CHECK throws eli::Error(kDevice) with the CUDA error name and string, the failed
// expression and file:line. ELI_CUDA_WARN is for destructors: it never throws, it clears the
// error and drops it (destructors run during unwinding; a sticky fault shows at the next check).
#pragma once

#include <cuda_runtime.h>

#include "eli/error.h"

#define ELI_CUDA_CHECK(expr)                                                                   \
  do {                                                                                         \
    cudaError_t eli_cuda_err_ = (expr);                                                        \
    if (eli_cuda_err_ != cudaSuccess) {                                                        \
      ::eli::detail::throw_error(::eli::ErrorKind::kDevice, __FILE__, __LINE__, #expr,         \
                                 ::eli::detail::concat("CUDA error ",                          \
                                                       cudaGetErrorName(eli_cuda_err_), ": ",  \
                                                       cudaGetErrorString(eli_cuda_err_)));    \
    }                                                                                          \
  } while (0)

// Checks the launch of the kernel just queued (bad configuration, no kernel image for this GPU).
#define ELI_CUDA_CHECK_LAUNCH() ELI_CUDA_CHECK(cudaGetLastError())

#define ELI_CUDA_WARN(expr)                     \
  do {                                          \
    cudaError_t eli_cuda_err_ = (expr);         \
    if (eli_cuda_err_ != cudaSuccess) {         \
      (void)cudaGetLastError();                 \
    }                                           \
  } while (0)
