// runtime/model/shard_plan.cc: see shard_plan.h.
#include "runtime/model/shard_plan.h"

#include "eli/error.h"

namespace eli {

Range even_split(int64_t n, int64_t parts, int64_t index) {
  const int64_t base = n / parts, extra = n % parts;
  Range r;
  r.begin = index * base + (index < extra ? index : extra);
  r.end = r.begin + base + (index < extra ? 1 : 0);
  return r;
}

namespace {

// The kv heads q heads [q.begin, q.end) read, for a GQA group of g q heads per kv head.
Range kv_heads_of(Range q, int64_t g) { return Range{q.begin / g, (q.end - 1) / g + 1}; }

// Whether q heads q map onto kv heads kv as the kernels assume: local q head i reads local kv head
// i / (nq / nkv), i.e. global (q.begin + i) / g - kv.begin.
bool uniform_mapping(Range q, Range kv, int64_t g) {
  if (q.size() % kv.size() != 0) return false;
  const int64_t local_g = q.size() / kv.size();
  for (int64_t i = 0; i < q.size(); ++i) {
    if ((q.begin + i) / g - kv.begin != i / local_g) return false;
  }
  return true;
}

}  // namespace

RankShard make_rank_shard(const ModelSpec& s, int tp_rank, int tp_size, int pp_rank, int pp_size,
                          const std::vector<int64_t>& stage_layers) {
  RankShard r;
  r.tp_rank = tp_rank;
  r.tp_size = tp_size;
  r.pp_rank = pp_rank;
  r.pp_size = pp_size;
  const int64_t g = s.n_kv_heads > 0 ? s.n_heads / s.n_kv_heads : 1;
  r.q_heads = even_split(s.n_heads, tp_size, tp_rank);
  r.kv_heads = kv_heads_of(r.q_heads, g);
  r.intermediate = even_split(s.intermediate_size, tp_size, tp_rank);
  r.vocab = even_split(s.vocab_size, tp_size, tp_rank);
  if (stage_layers.empty()) {
    r.layers = even_split(s.n_layers, pp_size, pp_rank);
  } else {
    for (int i = 0; i < pp_rank; ++i) r.layers.begin += stage_layers[static_cast<size_t>(i)];
    r.layers.end = r.layers.begin + stage_layers[static_cast<size_t>(pp_rank)];
  }
  r.n_heads = s.n_heads;
  r.n_kv_heads = s.n_kv_heads;
  r.head_dim = s.head_dim;
  r.vocab_size = s.vocab_size;
  return r;
}

void check_shardable(const ModelSpec& s, int tp_size, int pp_size, const std::vector<int64_t>& stage_layers) {
  ELI_CHECK_ARG(tp_size >= 1 && pp_size >= 1, "tensor_parallel_size and pipeline_parallel_size must be >= 1, got ",
                tp_size, " and ", pp_size);
  ELI_CHECK_ARG(pp_size <= s.n_layers, "pipeline_parallel_size ", pp_size, " is more stages than the model's ",
                s.n_layers, " layers");
  if (!stage_layers.empty()) {
    ELI_CHECK_ARG(static_cast<int>(stage_layers.size()) == pp_size, stage_layers.size(), " stage layer counts for ",
                  pp_size, " pipeline stages");
    int64_t total = 0;
    for (int64_t n : stage_layers) {
      ELI_CHECK_ARG(n >= 1, "every pipeline stage needs at least one layer, got a stage of ", n);
      total += n;
    }
    ELI_CHECK_ARG(total == s.n_layers, "the pipeline stages hold ", total, " layers, the model has ", s.n_layers);
  }
  if (tp_size == 1) return;
  ELI_CHECK_ARG(tp_size <= s.n_heads, "tensor_parallel_size ", tp_size, " is more ranks than the model's ", s.n_heads,
                " attention heads");
  ELI_CHECK_ARG(tp_size <= s.intermediate_size && tp_size <= s.vocab_size, "tensor_parallel_size ", tp_size,
                " is more ranks than the MLP width ", s.intermediate_size, " or the vocabulary ", s.vocab_size);
  ELI_CHECK_ARG(s.n_kv_heads >= 1 && s.n_heads % s.n_kv_heads == 0, "the model's ", s.n_heads,
                " attention heads are not a multiple of its ", s.n_kv_heads, " kv heads");
  const int64_t g = s.n_heads / s.n_kv_heads;
  for (int r = 0; r < tp_size; ++r) {
    const Range q = even_split(s.n_heads, tp_size, r);
    const Range kv = kv_heads_of(q, g);
    ELI_CHECK_ARG(uniform_mapping(q, kv, g), "tensor_parallel_size ", tp_size, " cannot split ", s.n_heads,
                  " attention heads over ", s.n_kv_heads, " kv heads: rank ", r, " would hold q heads [", q.begin, ", ",
                  q.end, ") reading kv heads [", kv.begin, ", ", kv.end,
                  ") unevenly (choose a size that divides the heads, or whose head ranges keep whole kv groups)");
  }
}

}  // namespace eli
