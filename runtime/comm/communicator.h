// runtime/comm/communicator.h: Communicator, one rank's handle on a group of ranks that exchange
// tensors (tensor and pipeline parallelism): all-reduce, all-gather, reduce-scatter, broadcast,
// send/recv and barrier, each ordered on a Stream of the rank's device.
//
// Shaped after NCCL, so that the NCCL implementation (with tensor parallelism) is a thin wrapper:
// one Communicator per rank (an ncclComm_t), calls enqueued on the caller's stream (the CPU
// implementation, whose streams are immediate, completes each call before it returns), counts in
// elements of `dtype`, NCCL's buffer conventions (below), and group_start()/group_end() around
// calls that must be issued together (a send and a recv between the same ranks, many collectives
// fused into one launch). The implementations: runtime/comm/cpu_communicator.h (N ranks as
// threads of one process; tests and CPU parallelism); NCCL later.
//
// Buffer conventions (as NCCL's; `count` in elements, W = world_size(), r = rank()):
//   all_reduce      send, recv: count each; recv = reduce over ranks of send. In place: send == recv.
//   all_gather      send: count; recv: W * count, rank q's send at recv + q * count.
//                   In place: send == recv + r * count.
//   reduce_scatter  send: W * count; recv: count = reduce over ranks of their send + r * count.
//                   In place: recv == send + r * count.
//   broadcast       recv (count) of every rank = send of `root` (send is read on the root only).
//   send / recv     count elements to / from `peer`; a recv must match its send in count and dtype.
// A rank's send and recv either coincide as above or do not overlap; ranks' buffers are their own.
//
// Invariants: every rank calls the same collectives in the same order with the same count, dtype,
// op and root (a mismatch is a bug: CommAbortedError of kind kInternal on every rank). Reductions support f32, bf16 and
// f16 (kUnsupported otherwise); copies support every dtype (a block-quantized count must be whole
// blocks). A failure is collective: once one rank fails, times out or calls abort(), every rank's
// pending and later calls throw CommAbortedError (kDevice, naming the cause) instead of waiting; the
// communicator cannot be used again. One thread at a time per rank's Communicator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "eli/device.h"
#include "eli/dtype.h"
#include "eli/error.h"

namespace eli {

class Stream;

// What a call on an aborted communicator throws (kind kDevice; kInternal when the abort was a
// mismatch of the ranks' calls); the message carries the first abort's reason. A rank's own failure (a timeout, a mismatch) is a plain eli::Error, so that the
// cause can be told from its echoes on the other ranks.
class CommAbortedError : public Error {
 public:
  CommAbortedError(ErrorKind kind, const std::string& message) : Error(kind, message) {}
};

enum class ReduceOp : int { kSum };
const char* reduce_op_name(ReduceOp op);

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // The device whose memory the buffers are and whose streams the calls take.
  virtual DeviceId device() const = 0;

  virtual void all_reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                          const Stream& stream) = 0;
  virtual void all_gather(const void* send, void* recv, size_t count, DType dtype, const Stream& stream) = 0;
  virtual void reduce_scatter(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                              const Stream& stream) = 0;
  virtual void broadcast(const void* send, void* recv, size_t count, DType dtype, int root,
                         const Stream& stream) = 0;
  virtual void send(const void* buf, size_t count, DType dtype, int peer, const Stream& stream) = 0;
  virtual void recv(void* buf, size_t count, DType dtype, int peer, const Stream& stream) = 0;
  // Returns (or, on a GPU, lets the stream go on) once every rank has reached the barrier.
  virtual void barrier(const Stream& stream) = 0;

  // Calls between group_start() and group_end() are issued together at group_end() (groups nest;
  // the outermost end issues). Needed where a rank both sends to and receives from a peer.
  virtual void group_start() = 0;
  virtual void group_end() = 0;

  // Fails the whole group: every rank's pending and later calls throw CommAbortedError with `reason`. What
  // a rank calls when it fails outside the communicator, so that its peers do not wait for it.
  // Never throws; later aborts keep the first reason.
  virtual void abort(const std::string& reason) noexcept = 0;
  // Empty while healthy; the first abort's reason after.
  virtual std::string abort_reason() const = 0;
};

// Runs one rank's part of a call: a failure of the rank itself (anything but an echo of the group's
// abort, CommAbortedError) first fails the whole group through fail_group(kind, "rank R: reason")
// (the implementation's group abort), so that no peer waits for it, then propagates. For
// Communicator implementations.
void run_failing_group(int rank, const std::function<void()>& f,
                       const std::function<void(ErrorKind, const std::string&)>& fail_group);

// Bytes of `count` elements of `dtype`: throws kInvalidArgument when a block-quantized count is
// not whole blocks or the size overflows.
size_t comm_bytes(size_t count, DType dtype);

}  // namespace eli
