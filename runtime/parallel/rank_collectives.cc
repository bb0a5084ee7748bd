// runtime/parallel/rank_collectives.cc: see rank_collectives.h.
#include "runtime/parallel/rank_collectives.h"

#include <algorithm>

#include "eli/error.h"
#include "runtime/device/device.h"
#include "runtime/device/stream.h"

namespace eli {

RankCollectives::RankCollectives(const RankShard& shard, Communicator* tp, Communicator* pp, Device& device,
                                 const Stream& stream)
    : shard_(shard), tp_(tp), pp_(pp), device_(device), stream_(stream) {
  ELI_CHECK_KIND(kInternal, shard.tp_size == 1 || (tp != nullptr && tp->world_size() == shard.tp_size &&
                                                   tp->rank() == shard.tp_rank),
                 "tensor-parallel communicator does not match the rank's shard");
  ELI_CHECK_KIND(kInternal, shard.pp_size == 1 || (pp != nullptr && pp->world_size() == shard.pp_size &&
                                                   pp->rank() == shard.pp_rank),
                 "pipeline communicator does not match the rank's shard");
  for (int r = 0; r < shard.tp_size; ++r) vocab_of_rank_.push_back(even_split(shard.vocab_size, shard.tp_size, r));
  width_ = vocab_of_rank_[0].size();  // the first ranks get the larger shards
  staged_ = pp != nullptr && shard.pp_size > 1 && pp->device().kind == DeviceKind::kCPU &&
            !device.properties().host_memory;
  if (staged_) {
    host_ = create_device(DeviceId{DeviceKind::kCPU, 0});
    recv_copied_ = device.create_event();
  }
}

RankCollectives::~RankCollectives() {
  if (!recv_pending_) return;
  try {
    recv_copied_->synchronize();  // a queued copy still reads recv_stage_
  } catch (...) {
  }
}

float* RankCollectives::stage_buffer(Buffer& b, int64_t n) const {
  const uint64_t bytes = static_cast<uint64_t>(n) * sizeof(float);
  if (!b.valid() || b.size() < bytes) {
    b.reset();
    b = device_.allocate_buffer(std::max<uint64_t>(bytes, 1), BufferType::kPinnedHost);
  }
  return static_cast<float*>(b.mutable_data());
}

void RankCollectives::reserve_stage(int64_t n) const {
  if (!staged_) return;
  if (recv_pending_) recv_copied_->synchronize();  // the buffer may be read by a queued copy
  recv_pending_ = false;
  if (!shard_.last_stage()) stage_buffer(send_stage_, n);
  if (!shard_.first_stage()) stage_buffer(recv_stage_, n);
}

void RankCollectives::all_reduce_sum(float* buf, int64_t n, const ExecContext&) const {
  if (shard_.tp_size == 1 || n == 0) return;
  tp_->all_reduce(buf, buf, static_cast<size_t>(n), DType::kF32, ReduceOp::kSum, stream_);
}

void RankCollectives::reserve(int64_t rows) const {
  if (rows <= rows_ || shard_.tp_size == 1) return;
  shard_buf_ = Tensor();
  gathered_ = Tensor();
  shard_buf_ = Tensor::empty(device_, DType::kF32, {rows * width_});
  gathered_ = Tensor::empty(device_, DType::kF32, {shard_.tp_size * rows * width_});
  rows_ = rows;
}

float* RankCollectives::logits_shard(int64_t rows, int64_t* stride) const {
  reserve(rows);
  *stride = width_;
  return shard_buf_.ptr<float>();
}

void RankCollectives::gather_logits(int64_t rows, float* out, const ExecContext&) const {
  const int W = shard_.tp_size;
  ELI_CHECK_KIND(kInternal, rows <= rows_, "gather_logits before logits_shard");
  const size_t count = static_cast<size_t>(rows * width_);
  const float* blocks = gathered_.ptr<float>();
  tp_->all_gather(shard_buf_.ptr<float>(), gathered_.ptr<float>(), count, DType::kF32, stream_);
  const int64_t V = shard_.vocab_size;
  for (int q = 0; q < W; ++q) {
    const Range& v = vocab_of_rank_[static_cast<size_t>(q)];
    const float* block = blocks + static_cast<size_t>(q) * count;
    device_.copy_device_to_device_2d(out + v.begin, static_cast<size_t>(V) * sizeof(float), block,
                                     static_cast<size_t>(width_) * sizeof(float),
                                     static_cast<size_t>(v.size()) * sizeof(float), static_cast<size_t>(rows),
                                     stream_.native());
  }
}

void RankCollectives::send_to_next_stage(const float* x, int64_t n, const ExecContext&) const {
  ELI_CHECK_KIND(kInternal, !shard_.last_stage(), "the last stage has no next stage");
  if (!staged_) {
    pp_->send(x, static_cast<size_t>(n), DType::kF32, shard_.pp_rank + 1, stream_);
    return;
  }
  // Device -> pinned host, then the host send (which copies the message out before returning).
  float* stage = stage_buffer(send_stage_, n);
  device_.copy_device_to_host(stage, x, static_cast<size_t>(n) * sizeof(float), stream_.native());
  stream_.synchronize();
  pp_->send(stage, static_cast<size_t>(n), DType::kF32, shard_.pp_rank + 1, host_->default_stream());
}

void RankCollectives::recv_from_prev_stage(float* x, int64_t n, const ExecContext&) const {
  ELI_CHECK_KIND(kInternal, !shard_.first_stage(), "the first stage has no previous stage");
  if (!staged_) {
    pp_->recv(x, static_cast<size_t>(n), DType::kF32, shard_.pp_rank - 1, stream_);
    return;
  }
  // The previous message's host -> device copy must have read the buffer before it is refilled.
  if (recv_pending_) recv_copied_->synchronize();
  float* stage = stage_buffer(recv_stage_, n);
  pp_->recv(stage, static_cast<size_t>(n), DType::kF32, shard_.pp_rank - 1, host_->default_stream());
  device_.copy_host_to_device(x, stage, static_cast<size_t>(n) * sizeof(float), stream_.native());
  recv_copied_->record(stream_);
  recv_pending_ = true;
}

}  // namespace eli
