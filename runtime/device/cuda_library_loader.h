// runtime/device/cuda_library_loader.h: finds and dlopen()s a CUDA library (cuBLASLt now, NCCL
// later) at run time, so that the compiled module links none of them (readelf shows no CUDA
// library as NEEDED) and a CUDA wheel imports on machines without the toolkit. Compiled in every
// build (no CUDA headers), so the search and its error are tested on CPU-only machines.
//
// Search order (the first file that loads wins):
//   1. the override variable (e.g. ELI_CUBLASLT_PATH): a library file or a folder holding it; when
//      set, it is the only place tried;
//   2. NVIDIA's pip packages beside the eli package: <site-packages>/<pip_subdir>/<soname> for the
//      site-packages folder that holds the loaded module (found with dladdr);
//   3. the dynamic loader's own search (LD_LIBRARY_PATH, the ld.so cache, system folders);
//   4. the toolkit: $CUDA_HOME, $CUDA_PATH, /usr/local/cuda (lib64 and targets/<arch>/lib).
// Nothing is cached here: callers keep the handle (a loaded library stays loaded).
#pragma once

#include <string>
#include <vector>

namespace eli {

struct CudaLibrarySpec {
  const char* what;                      // "cuBLASLt"
  const char* soname;                    // "libcublasLt.so.13"
  const char* env_override;              // "ELI_CUBLASLT_PATH"
  std::vector<const char*> pip_subdirs;  // "nvidia/cu13/lib", ... (relative to site-packages)
  const char* pip_package;               // "nvidia-cublas" (named in the error)
  const char* toolkit;                   // "CUDA 13" (named in the error)
};

// The candidates of steps 1, 2 and 4 in order, as absolute paths; "" stands for step 3 (the plain
// soname handed to dlopen). With the override set, only its candidate.
std::vector<std::string> cuda_library_candidates(const CudaLibrarySpec& spec);

// The dlopen handle of the first candidate that loads (RTLD_NOW | RTLD_LOCAL). Throws eli::Error
// (kDevice) naming the library, what to install and every place tried with dlerror's reason.
void* load_cuda_library(const CudaLibrarySpec& spec);

// The folder holding the module (shared object or executable) this code was linked into.
std::string loaded_module_dir();

}  // namespace eli
