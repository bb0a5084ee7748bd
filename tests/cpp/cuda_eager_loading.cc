// tests/cpp/cuda_eager_loading.cc: the test binary loads CUDA kernels eagerly. The GPU tests of
// ranks sharing one GPU (the peer communicator's, the parallel runner's and the engine's shared-GPU
// cases) need CUDA_MODULE_LOADING=EAGER (runtime/comm/peer_communicator.h says why), and CUDA reads
// it once, when it starts: so it is set here, before main, unless the caller chose a mode. The
// refusal under lazy loading is tested from Python (tests/python/test_parallel_gpu.py), in a child
// process with its own environment.
#include <cstdlib>

namespace {

const bool kEagerLoading = [] {
  setenv("CUDA_MODULE_LOADING", "EAGER", /*overwrite=*/0);
  return true;
}();

}  // namespace
