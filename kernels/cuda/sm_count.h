// kernels/cuda/sm_count.h: the streaming-multiprocessor count of the calling thread's current CUDA
// device, which launch heuristics (rows per CTA, split counts) weigh. Cached per device index after
// the first query (a driver call is not free on every launch); never less than 1.
#pragma once

namespace eli {
namespace cuda {

int sm_count();

}  // namespace cuda
}  // namespace eli
