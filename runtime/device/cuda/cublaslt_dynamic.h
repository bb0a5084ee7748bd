// runtime/device/cuda/cublaslt_dynamic.h: cuBLASLt loaded at run time (CUDA builds only).
//
// cublaslt_dynamic.cc defines the cublasLt* functions eli calls (hidden symbols, so they never
// interpose on a real libcublasLt elsewhere in the process); each forwards to the library that
// require_cublaslt() loads on first use (cuda_library_loader.h: ELI_CUBLASLT_PATH, NVIDIA's
// nvidia-cublas pip package, the loader's path, the toolkit). The module therefore links no
// cuBLAS library and imports without the CUDA toolkit; the CUDA runtime is linked statically.
// Code that calls a cublasLt function not forwarded there fails to link into a program (and to
// import as a module, which tests/python/test_wheel_linkage.py checks): add it to the list.
#pragma once

namespace eli {
namespace cuda {

// Loads cuBLASLt (once per process; thread-safe) and checks its major version against the
// headers eli was built with; throws eli::Error (kDevice) saying what to install when it cannot.
void require_cublaslt();

}  // namespace cuda
}  // namespace eli
