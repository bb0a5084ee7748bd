// runtime/parallel/rank_collectives.cc: see rank_collectives.h.
#include "runtime/parallel/rank_collectives.h"

#include <cstring>

#include "eli/error.h"

namespace eli {

RankCollectives::RankCollectives(const RankShard& shard, Communicator* tp, Communicator* pp, const Stream& stream)
    : shard_(shard), tp_(tp), pp_(pp), stream_(stream) {
  ELI_CHECK_KIND(kInternal, shard.tp_size == 1 || (tp != nullptr && tp->world_size() == shard.tp_size &&
                                                   tp->rank() == shard.tp_rank),
                 "tensor-parallel communicator does not match the rank's shard");
  ELI_CHECK_KIND(kInternal, shard.pp_size == 1 || (pp != nullptr && pp->world_size() == shard.pp_size &&
                                                   pp->rank() == shard.pp_rank),
                 "pipeline communicator does not match the rank's shard");
  for (int r = 0; r < shard.tp_size; ++r) vocab_of_rank_.push_back(even_split(shard.vocab_size, shard.tp_size, r));
  width_ = vocab_of_rank_[0].size();  // the first ranks get the larger shards
}

void RankCollectives::all_reduce_sum(float* buf, int64_t n, const ExecContext&) const {
  if (shard_.tp_size == 1 || n == 0) return;
  tp_->all_reduce(buf, buf, static_cast<size_t>(n), DType::kF32, ReduceOp::kSum, stream_);
}

float* RankCollectives::logits_shard(int64_t rows, int64_t* stride) const {
  const size_t need = static_cast<size_t>(rows * width_);
  if (shard_buf_.size() < need) shard_buf_.assign(need, 0.0f);
  *stride = width_;
  return shard_buf_.data();
}

void RankCollectives::gather_logits(int64_t rows, float* out, const ExecContext&) const {
  const int W = shard_.tp_size;
  const size_t count = static_cast<size_t>(rows * width_);
  if (gathered_.size() < count * W) gathered_.assign(count * W, 0.0f);
  ELI_CHECK_KIND(kInternal, shard_buf_.size() >= count, "gather_logits before logits_shard");
  tp_->all_gather(shard_buf_.data(), gathered_.data(), count, DType::kF32, stream_);
  const int64_t V = shard_.vocab_size;
  for (int q = 0; q < W; ++q) {
    const Range& v = vocab_of_rank_[static_cast<size_t>(q)];
    const float* block = gathered_.data() + static_cast<size_t>(q) * count;
    for (int64_t i = 0; i < rows; ++i) {
      std::memcpy(out + i * V + v.begin, block + i * width_, static_cast<size_t>(v.size()) * sizeof(float));
    }
  }
}

void RankCollectives::send_to_next_stage(const float* x, int64_t n, const ExecContext&) const {
  ELI_CHECK_KIND(kInternal, !shard_.last_stage(), "the last stage has no next stage");
  pp_->send(x, static_cast<size_t>(n), DType::kF32, shard_.pp_rank + 1, stream_);
}

void RankCollectives::recv_from_prev_stage(float* x, int64_t n, const ExecContext&) const {
  ELI_CHECK_KIND(kInternal, !shard_.first_stage(), "the first stage has no previous stage");
  pp_->recv(x, static_cast<size_t>(n), DType::kF32, shard_.pp_rank - 1, stream_);
}

}  // namespace eli
