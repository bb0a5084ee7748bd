// runtime/parallel/rank_collectives.h: RankCollectives, the ForwardCollectives of one rank of a
// tensor x pipeline parallel group, over two Communicators: `tp` (the ranks of this rank's stage)
// and `pp` (the ranks holding the same tensor-parallel slice in every stage; rank = stage).
//
// all_reduce_sum and the stage send / recv are the communicator's calls on the rank's stream. The
// logits gather: each rank's lm_head shard writes (rows, width) with width = the widest vocab shard
// (padding columns unused), one all_gather brings every rank's block, and each block's columns are
// copied into (rows, vocab) with one strided copy on the rank's stream (host memcpy on the CPU).
//
// Host-staged stages: a pipeline group whose ranks run on devices of different kinds (the CPU stage
// of weight offloading, runtime/runner/offload_compute.h, before a GPU stage) exchanges through the
// in-process CPU communicator; a rank whose memory the host cannot read then copies each message
// through a pinned host buffer of its device (device -> host, stream synchronized, send; recv, host
// -> device on the stream, an event guarding the buffer until that copy ran). Such a rank's steps
// wait on the host, so they cannot be captured in CUDA graphs (capturable() is false).
//
// Invariants: the scratch buffers live on the rank's device (the staging ones in pinned host
// memory) and grow on demand (a step with more logits rows or tokens than any before; reserve() /
// reserve_stage() grow them up front); one forward at a time.
#pragma once

#include <memory>
#include <vector>

#include "runtime/comm/communicator.h"
#include "runtime/core/tensor.h"
#include "runtime/device/buffer.h"
#include "runtime/model/forward.h"
#include "runtime/model/shard_plan.h"

namespace eli {

class Device;
class Event;
class Stream;

class RankCollectives final : public ForwardCollectives {
 public:
  // tp: world shard.tp_size, rank shard.tp_rank; pp: world shard.pp_size, rank shard.pp_rank (either
  // may be nullptr when its size is 1). `stream` is the rank's; all outlive this.
  RankCollectives(const RankShard& shard, Communicator* tp, Communicator* pp, Device& device, const Stream& stream);
  ~RankCollectives() override;
  // Grows the logits scratch for steps of up to `rows` logits rows.
  void reserve(int64_t rows) const;
  // Grows the host staging buffers for pipeline messages of up to `n` floats (no-op unstaged).
  void reserve_stage(int64_t n) const;
  // False when the stage messages go through host memory (a host wait inside every step).
  bool capturable() const { return !staged_; }

  const RankShard& shard() const override { return shard_; }
  void all_reduce_sum(float* buf, int64_t n, const ExecContext& exec) const override;
  float* logits_shard(int64_t rows, int64_t* stride) const override;
  void gather_logits(int64_t rows, float* out, const ExecContext& exec) const override;
  void send_to_next_stage(const float* x, int64_t n, const ExecContext& exec) const override;
  void recv_from_prev_stage(float* x, int64_t n, const ExecContext& exec) const override;

 private:
  RankShard shard_;
  Communicator* tp_;
  Communicator* pp_;
  Device& device_;
  const Stream& stream_;
  int64_t width_ = 0;                     // widest vocab shard (tp rank 0's)
  std::vector<Range> vocab_of_rank_;      // each tp rank's vocab rows
  mutable Tensor shard_buf_;              // (rows, width) f32 on the device
  mutable Tensor gathered_;               // (tp, rows, width)
  mutable int64_t rows_ = 0;              // rows the two hold
  // Host staging (see the header comment): send and recv buffers, the recv copy's event, and a CPU
  // device whose immediate stream the CPU communicator takes.
  bool staged_ = false;
  std::unique_ptr<Device> host_;
  mutable Buffer send_stage_, recv_stage_;
  std::unique_ptr<Event> recv_copied_;
  mutable bool recv_pending_ = false;
  float* stage_buffer(Buffer& b, int64_t n) const;
};

}  // namespace eli
