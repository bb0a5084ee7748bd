// kernels/cuda/peer_all_reduce.h: eli's own all-reduce over peer pointers (one process, so every
// rank's buffers are directly addressable once peer access is on), for the small messages of
// decode, beside NCCL (runtime/comm/nccl_communicator.h) for the large ones. Plain C++ header.
//
// One-shot: every rank reads all ranks' inputs and writes the whole sum (n reads per element;
// latency-bound sizes; a separate output). Two-shot: rank r reduces slice r of every input into
// its own scratch, then every rank gathers all slices (2 passes, 2 / n of the reads;
// bandwidth-bound sizes; in place allowed). Block b of every rank handles the same element
// indices in both shots, so per-block barriers order exactly the accesses that conflict. Both sum in
// f32 in rank order and round once to the dtype, so every rank gets the same bits (and equal to
// the CPU communicator's sums). f32, bf16, f16.
//
// Synchronisation without the host (graph-capturable): each rank owns a signal area (peer-visible
// device memory, zeroed once, kPeerSignalBytes); block b of rank r bumps its own launch counter,
// writes the new epoch into every peer's slot (r, b) and waits until every peer's slot in its own
// area holds that epoch; barriers before reading the inputs, between the two shots and at the end
// (so no rank reuses its buffers while a peer still reads them). Every rank must launch the same
// sequence of calls with the same sizes. A wait that exceeds `timeout_cycles` sets *error and returns
// (a test fails instead of hanging); so does a set `abort_word`.
//
// The same code runs with real peers and with N local buffers on one GPU standing in for them
// (each "rank" launched on its own stream, concurrently): tests/cpp/test_cuda_peer_all_reduce.cc.
#pragma once

#include <cstddef>
#include <cstdint>

#include "eli/dtype.h"

namespace eli {

constexpr int kMaxPeers = 8;
constexpr int kPeerBlocks = 16;  // blocks per launch (and signal slots per peer)
// Bytes of one rank's signal area: launch counters + one slot per (peer, block).
constexpr size_t kPeerSignalBytes = sizeof(uint32_t) * (kPeerBlocks + kMaxPeers * kPeerBlocks);

struct PeerAllReduceArgs {
  const void* inputs[kMaxPeers] = {};  // each rank's input (count elements), rank order
  void* scratch[kMaxPeers] = {};       // two-shot: each rank's scratch (count elements), peer-visible
  uint32_t* signals[kMaxPeers] = {};   // each rank's signal area, peer-visible
  void* out = nullptr;                 // this rank's output (count elements; its input: two-shot only)
  int64_t count = 0;
  DType dtype = DType::kF32;
  int n_ranks = 1, rank = 0;
  bool two_shot = false;
  int* error = nullptr;                // set to 1 on a barrier timeout (device or mapped host memory; nullptr: none)
  int64_t timeout_cycles = 4000000000LL;
  // Optional (the peer communicator's, mapped host memory): a wait also ends when *abort_word is
  // non-zero, and a timeout sets it (so that the other ranks' waits end too).
  volatile int* abort_word = nullptr;
};

// One all-reduce on `stream` (a cudaStream_t). Throws eli::Error(kInvalidArgument) for bad args.
void peer_all_reduce(const PeerAllReduceArgs& args, void* stream);
// The variant eli picks for a message: one-shot up to 512 KB (or with 2 ranks up to 2 MB), else
// two-shot; above 32 MB NCCL is used instead (returns false).
bool peer_all_reduce_fits(size_t bytes, int n_ranks, bool* two_shot);

}  // namespace eli
