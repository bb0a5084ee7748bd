// runtime/model/shard_plan.h: which part of the model one rank of a tensor x pipeline parallel
// group holds (RankShard), and the rules that decide it.
//
// Ranks: world = tp * pp; rank = pp_rank * tp + tp_rank (a pipeline stage is tp consecutive ranks).
// Sharding rules (tensor parallelism over tp ranks; r = tp_rank):
//   q heads      contiguous ranges, as even as possible (the first nh % tp ranks get one more);
//   kv heads     the kv heads the rank's q heads read (GQA group g = nh / nkv: q head h reads kv
//                head h / g). With nkv >= tp they are split; with fewer they are replicated. A
//                split is valid when every rank's q heads map onto its kv heads uniformly (the
//                attention kernels' rule q_local / (nq_local / nkv_local)); otherwise kInvalidArgument.
//   qkv          rows q[h0 hd, h1 hd), k[k0 hd, k1 hd), v[k0 hd, k1 hd) of the full matrix;
//   o            columns [h0 hd, h1 hd) (a row-parallel product: partial sums all-reduced);
//   gate / up    rows [i0, i1) of each (column parallel); down: columns [i0, i1) (row parallel);
//   embedding    vocab rows [v0, v1) (vocab parallel: other ranks' tokens give zero rows, summed);
//   lm_head      vocab rows [v0, v1); the logits shards are gathered on every rank.
// Ranges are as even as possible and may be uneven (a vocabulary or intermediate size not
// divisible by tp). Biases of row-parallel products (o, down) are added on tp rank 0 only.
// Pipeline parallelism over pp stages: stage s holds layers [l0, l1), as even as possible (the
// first n_layers % pp stages get one more) unless `stage_layers` gives each stage's count (the
// CPU stage of weight offloading: runtime/runner/offload_compute.h); stage 0 embeds, the last stage
// computes the logits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eli/model_spec.h"

namespace eli {

// [begin, end) of n split over `parts` as evenly as possible (the first n % parts get one more).
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Range even_split(int64_t n, int64_t parts, int64_t index);

struct RankShard {
  int tp_rank = 0, tp_size = 1, pp_rank = 0, pp_size = 1;
  Range q_heads, kv_heads, intermediate, vocab, layers;
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0, vocab_size = 0;  // the whole model's

  bool sharded() const { return tp_size > 1 || pp_size > 1; }
  bool first_stage() const { return pp_rank == 0; }
  bool last_stage() const { return pp_rank == pp_size - 1; }
  int world_rank() const { return pp_rank * tp_size + tp_rank; }
};

// The shard of (tp_rank, pp_rank) for `spec` (no checks: call check_shardable first).
RankShard make_rank_shard(const ModelSpec& spec, int tp_rank, int tp_size, int pp_rank, int pp_size,
                          const std::vector<int64_t>& stage_layers = {});
// kInvalidArgument naming the sizes when `spec` cannot be split over tp x pp ranks: more tp ranks
// than q heads, an uneven head split GQA cannot serve (see above), more pp stages than layers,
// stage_layers (when given) not pp counts of at least 1 adding up to the layers.
void check_shardable(const ModelSpec& spec, int tp_size, int pp_size, const std::vector<int64_t>& stage_layers = {});

}  // namespace eli
