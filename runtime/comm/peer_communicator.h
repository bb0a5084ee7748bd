// runtime/comm/peer_communicator.h: eli's own GPU Communicator for the ranks of one process, without
// NCCL: several ranks on one GPU (each rank a host thread with its own CUDA stream: what tests
// TP = 2 / PP = 2 on one lent GPU) or ranks on distinct GPUs with peer access.
//
// Memory (allocated once at creation, on the rank's device, peer-visible): a staging buffer
// (`staging_bytes`) and an all-reduce scratch of the same size, a mailbox of `mailbox_bytes` per
// destination rank, the signal areas of kernels/cuda/peer_all_reduce.h and peer_signal.h. The group
// shares their pointers; one mapped pinned host block holds the group's abort word and one error
// word per rank.
//
// Every call is enqueued on the caller's stream (Stream::native(), a cudaStream_t of device()) and
// the device waits on device flags, so calls are graph-capturable and never block the host on the
// data (the host only checks the call against its peers' through shared host state, and a recv
// waits on the host until its send was issued, bounded by `timeout`). Messages larger than the
// staging (or mailbox) go in chunks:
//   all_reduce      copy send into my staging; peer_all_reduce (one-/two-shot by
//                   peer_all_reduce_fits) writing recv.
//   reduce_scatter  copy my W slices into staging; barrier; sum slice r of every staging (rank
//                   order) into recv; barrier.
//   all_gather      copy send into staging; barrier; copy every rank's staging into recv; barrier.
//   broadcast       the root copies send into its staging; barrier; every rank copies it; barrier.
//   send / recv     pairwise counters: the sender waits "mailbox free", copies into its mailbox for
//                   the peer, posts "full"; the receiver waits "full", copies out, posts "free".
//                   Inside a group the sends' and recvs' chunks are interleaved (chunk 0 of every
//                   op, then chunk 1, ...), so rings of multi-chunk messages do not deadlock.
// Sums are f32 in rank order from rank 0's value, one rounding (bit-equal to the CPU
// communicator's) for f32 / bf16 / f16; copies of any dtype go as bytes (comm_bytes).
//
// Failures (as the CPU communicator's, communicator.h): a call that does not match the peers'
// (kind, count, dtype, root; a recv against its send) is a kInternal abort of the group; a bad
// argument aborts the group and throws on the calling rank. A device wait that exceeds `timeout`
// records the rank's error word and sets the abort word (every other rank's waits end at once);
// the rank's next call, or peer_comm_check() after a synchronize, throws eli::Error(kDevice) on
// that rank and CommAbortedError on the others. abort() sets the abort word too: pending device
// waits end and later calls throw on every rank. After a failure the results of calls in flight
// are undefined; the communicator cannot be used again. Destroying the group with work in flight
// aborts it (synchronize the streams first).
//
// A CPU build links and throws kNotCompiled from create_peer_communicators.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "runtime/comm/communicator.h"

namespace eli {

struct PeerCommOptions {
  size_t staging_bytes = size_t{32} << 20;  // per rank (and as much scratch); >= 4096
  size_t mailbox_bytes = size_t{4} << 20;   // per (rank, destination); >= 256
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};  // longest device (and recv host) wait
};

// The communicators of ranks 0 .. n-1 (n in [1, kMaxPeers = 8]); rank i on devices[i] (CUDA).
// Devices may repeat (ranks sharing a GPU) or differ: peer access is enabled between every
// distinct pair, and a pair without it is refused with kUnsupported naming the two devices.
// Ranks sharing a GPU need eager kernel loading (CUDA_MODULE_LOADING=EAGER set before CUDA starts;
// cuda_loads_kernels_lazily() in runtime/device/device.h): a lazy first launch waits for the GPU to
// drain, which never happens while a peer's kernel on it spins for this rank. Refused (kUnsupported,
// naming the variable) otherwise.
std::vector<std::unique_ptr<Communicator>> create_peer_communicators(const std::vector<DeviceId>& devices,
                                                                     const PeerCommOptions& options = {});

// Throws what the rank's next call would (a device timeout or an abort seen since the last call);
// returns for a healthy peer communicator. kInvalidArgument for a communicator of another kind.
void peer_comm_check(const Communicator& comm);

// ---- host-only planning (what the .cc follows; tested on the CPU) ----

struct PeerChunk {
  size_t offset = 0, count = 0;
};
// [0, total) in pieces of at most `max_per_chunk` (> 0); empty for total == 0.
std::vector<PeerChunk> peer_chunks(size_t total, size_t max_per_chunk);
// The issue order of a group's point-to-point ops: op i has n_chunks[i] chunks and is a send when
// is_send[i]. Returns (op, chunk) pairs: for chunk c = 0, 1, ...: every send's chunk c in op order,
// then every recv's chunk c.
std::vector<std::pair<size_t, size_t>> peer_p2p_order(const std::vector<size_t>& n_chunks,
                                                      const std::vector<bool>& is_send);

}  // namespace eli
