// kernels/cuda/peer_signal.h: the small device-side synchronisation kernels of the peer
// communicator (runtime/comm/peer_communicator.h), plus its rank-order reduction. Plain C++ header.
//
// Every rank owns one signal area (PeerSignals, peer-visible device memory, zeroed once). All
// counters live on the device and are bumped by the kernels themselves, so a captured CUDA graph
// replays correctly (no host-baked sequence numbers):
//   barrier: epoch = ++barrier_count (own area); write it into every peer's barrier_slot[me]; wait
//            until every barrier_slot[p] of mine reached it. Every rank calls the same barriers.
//   send to d:   k = ++sent[d]; wait freed[d] >= k - 1 (d took message k - 1 out of my mailbox);
//                (the caller copies into the mailbox) ; post: full[me] of d's area = sent[d].
//   recv from s: k = ++recvd[s]; wait full[s] >= k; (the caller copies out); post: freed[me] of
//                s's area = recvd[s].
// Counters compare as wrapping 32-bit sequence numbers. A wait ends when satisfied, when the
// group's abort word (mapped host memory, `abort_word`) is non-zero, or after `timeout_ns`
// (globaltimer): a timeout stores `error_code` into this rank's error word (mapped host memory)
// and sets the abort word, so every other rank's waits end too. A failed wait skips the rest of
// its kernel; later waits of the same group fail at once (the abort word stays set).
#pragma once

#include <cstddef>
#include <cstdint>

#include "eli/dtype.h"
#include "kernels/cuda/peer_all_reduce.h"

namespace eli {

struct PeerSignals {
  uint32_t barrier_count;
  uint32_t barrier_slot[kMaxPeers];
  uint32_t sent[kMaxPeers], recvd[kMaxPeers];  // local counters
  uint32_t full[kMaxPeers];                    // written by the senders
  uint32_t freed[kMaxPeers];                   // written by the receivers
};

struct PeerSignalArgs {
  PeerSignals* signals[kMaxPeers] = {};  // every rank's area (peer-visible)
  int n_ranks = 1, rank = 0;
  volatile int* abort_word = nullptr;     // the group's (mapped host memory; nullptr: none)
  volatile int* error_word = nullptr;     // this rank's (mapped host memory; nullptr: none)
  int error_code = 1;                     // stored into *error_word on a timeout
  int64_t timeout_ns = 300LL * 1000 * 1000 * 1000;
};

// Each enqueues one tiny kernel on `stream` (a cudaStream_t). Throw kInvalidArgument on bad args,
// kNotCompiled in a CPU build.
void peer_barrier(const PeerSignalArgs& args, void* stream);
void peer_send_wait(const PeerSignalArgs& args, int dst, void* stream);
void peer_send_post(const PeerSignalArgs& args, int dst, void* stream);
void peer_recv_wait(const PeerSignalArgs& args, int src, void* stream);
void peer_recv_post(const PeerSignalArgs& args, int src, void* stream);

// out[i] = sum over p < n_inputs of inputs[p][i] (f32 accumulation from inputs[0], rank order, one
// rounding to `dtype`: f32, bf16, f16), i < count. `out` may be any buffer of the stream's device;
// the inputs any peer-visible buffers. Skipped (nothing written) once the abort word is set.
void peer_reduce(const void* const* inputs, int n_inputs, void* out, size_t count, DType dtype,
                 const volatile int* abort_word, void* stream);

}  // namespace eli
