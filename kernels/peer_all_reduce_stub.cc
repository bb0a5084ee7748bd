// kernels/peer_all_reduce_stub.cc: peer_all_reduce in a build without CUDA (the kernels are in
// kernels/cuda/peer_all_reduce.cu): kNotCompiled, so that callers and tests link in every build.
#if !defined(ELI_WITH_CUDA) || !ELI_WITH_CUDA
#include "eli/error.h"
#include "kernels/cuda/peer_all_reduce.h"

namespace eli {

void peer_all_reduce(const PeerAllReduceArgs&, void*) {
  ELI_THROW(kNotCompiled, "peer_all_reduce needs a CUDA build of eli");
}

bool peer_all_reduce_fits(size_t bytes, int n_ranks, bool* two_shot) {
  if (bytes > (size_t{32} << 20)) return false;
  *two_shot = n_ranks > 2 ? bytes > (size_t{512} << 10) : bytes > (size_t{2} << 20);
  return true;
}

}  // namespace eli
#endif
