// runtime/comm/cpu_communicator.h: the in-process CPU Communicator: N ranks that are threads of one
// process, exchanging host memory through a shared rendezvous (what tests and CPU parallelism use;
// the same interface as NCCL's, see communicator.h).
//
// Deterministic: a reduction sums in f32 in rank order 0, 1, ..., N-1 (one rounding to the dtype at
// the end), each element computed once and copied to every rank, so every rank gets the same bits
// whatever the threads' timing. (NCCL reduces along its ring in the dtype itself: 16-bit results
// of the two may differ in the last bits; f32 results too, by summation order.)
//
// Reliable (RELIABILITY 23): every wait is bounded by `timeout`; a rank that times out aborts the
// group and throws kDevice naming the ranks it waited for, so no rank waits forever for a peer that
// died or never came. abort() (or any failure inside a call, e.g. mismatched collectives) wakes
// every waiting rank with an error.
//
// Calls take a Stream of the CPU (immediate: each call is complete when it returns). send() copies
// the message into the peer's mailbox and returns (it never waits); recv() waits for it. Inside a
// group, sends are issued first at group_end(), then the other calls in order.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "runtime/comm/communicator.h"

namespace eli {

struct CpuCommOptions {
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};  // longest wait for the other ranks
};

// The communicators of ranks 0 .. n_ranks-1 of one new group (n_ranks in [1, 4096]); rank i is
// element i. They share the group's state; each is used by one thread.
std::vector<std::unique_ptr<Communicator>> create_cpu_communicators(int n_ranks, const CpuCommOptions& options = {});

}  // namespace eli
