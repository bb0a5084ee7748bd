// runtime/parallel/parallel_runner.h: ParallelRunner, a model split over tp x pp ranks in one
// process: per rank a device, a thread-pool share, its shard of the weights (read from the mapped
// file: only its slices), a ModelRunner, its KV storage (its stage's layers, its kv heads) and
// its collectives, all living on the rank's own persistent thread (RankWorkers).
//
// The engine keeps one scheduler and one block pool: a step's Batch (block ids, slots) is the same
// for every rank, each rank runs the one forward (DecoderModel::forward) on its shard, and the
// logits come from the last stage's tensor-parallel rank 0 (every rank of the last stage holds the
// gathered logits). CPU ranks are threads joined by the in-process CPU communicator
// (runtime/comm/cpu_communicator.h); CUDA ranks get NCCL communicators (one GPU per rank,
// runtime/comm/nccl_communicator.h) or, where ranks share a GPU, eli's peer communicators
// (runtime/comm/peer_communicator.h), behind the same interface. On a GPU the engine samples the
// driver rank's device logits (forward()) on the driver's device; on the CPU it takes them in host
// memory (forward_to_host()).
//
// With pipeline stages a step is split into pp micro-batches of whole sequences (micro_batch.h):
// every rank walks them in order, so stage s + 1 works on micro-batch m while stage s works on
// m + 1 (sends never wait). A one-sequence step (a long prefill, score()) is one micro-batch.
//
// Mixed stages (StageLayout): stages may run on devices of different kinds, e.g. the CPU stage of
// weight offloading (runtime/runner/offload_compute.h): stage 0 on the CPU computing the first
// layers from host memory, stage 1 on the GPU with the rest and the logits. Each rank loads for its
// own device kind and compute dtype; such a pipeline exchanges through host memory
// (RankCollectives' host staging), and its GPU ranks run without CUDA graphs.
//
// Invariants: every rank sees the same batches in the same order; a failure on one rank aborts the
// group (the engine cannot step again); the ranks of one stage share a device kind.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/comm/communicator.h"
#include "runtime/core/tensor.h"
#include "runtime/kv/kv_cache.h"
#include "runtime/model/model.h"
#include "runtime/model/model_files.h"
#include "runtime/parallel/rank_workers.h"

namespace eli {

struct Batch;
class Device;
class DeviceSampler;
class ModelRunner;
class RankCollectives;
class ThreadPool;

// How ranks differ beyond their shard; every field may be empty (the even, uniform default).
struct StageLayout {
  std::vector<int64_t> stage_layers;  // layers per stage (check_shardable's rule)
  std::vector<DType> compute_dtypes;  // per rank: the dense matrices' dtype (else opt.compute_dtype)
  std::vector<int> rank_threads;      // per rank: its thread pool (else n_threads shared evenly)
};

class ParallelRunner {
 public:
  // Loads every rank's shard on its thread. `opt` is the whole model's load options (its shard is
  // replaced per rank); n_threads: CPU threads in all, shared evenly (at least one per rank);
  // devices: one per rank (rank = stage * tp + tp rank); each rank loads for its device's kind;
  // empty: every rank on device 0 of opt.device's kind (the CPU's threads). CUDA ranks:
  // communicators per group, each rank's thread keeps its device current. memory_budgets: per
  // rank, the cap of its device pool (Device::set_memory_budget) set before its weights are
  // uploaded; empty or 0: none.
  ParallelRunner(const ModelFiles& files, const ModelLoadOptions& opt, int tp, int pp, int n_threads,
                 std::vector<DeviceId> devices = {}, std::vector<uint64_t> memory_budgets = {},
                 const StageLayout& layout = {});
  ~ParallelRunner();

  int world() const { return tp_ * pp_; }
  // The rank whose logits the engine samples: the last stage's tensor-parallel rank 0.
  int driver() const { return (pp_ - 1) * tp_; }
  Device& device(int rank) const;
  const ModelRunner& runner(int rank) const;
  // Grows every rank's workspace (and logits scratch) for steps of up to max_tokens tokens and
  // max_logits logits rows, so that later steps allocate nothing; the bytes each rank holds for them.
  std::vector<uint64_t> reserve(int64_t max_tokens, int64_t max_logits);
  // CUDA graphs per rank (decode steps; the collectives are captured with the step). Off at first.
  void set_graphs_enabled(bool on);
  // The driver rank's sampler (ModelRunner::enable_sampling on the driver's thread) and the sampler.
  void enable_sampling(int64_t max_rows, int64_t vocab);
  DeviceSampler& sampler();
  // Returns each rank device's cached free blocks to the driver (before the KV plan measures).
  void release_cached();
  uint64_t weight_bytes() const;
  // Parameters held by the ranks together (replicated ones counted once per copy).
  uint64_t n_params() const;
  // Creates each rank's KV storage from the whole model's `shape` (its layers and kv heads, the
  // same blocks); returns the bytes of all ranks together.
  uint64_t create_kv(const KvCacheShape& shape);
  // The cache shape rank `r` holds for the whole model's `shape`: its layers and kv heads; a CPU
  // rank keeps 16-bit caches in f32 (the CPU attention's) and f32 queries.
  KvCacheShape rank_kv_shape(int r, const KvCacheShape& shape) const;
  // One step on every rank; the (n_logits, vocab) logits in host memory `logits` on return.
  void forward_to_host(const Batch& batch, float* logits);
  // One step on every rank, queued on their streams; returns the (n_logits, vocab) f32 logits on
  // the driver's device, valid in the order of its default stream until the next forward.
  float* forward(const Batch& batch);
  // After forward(): logits rows [row0, row0 + n) to host memory `dst` (synchronous).
  void copy_logits(const float* logits, int64_t row0, int64_t n, float* dst);

 private:
  struct Rank;
  int tp_, pp_;
  int64_t vocab_ = 0;
  std::vector<std::unique_ptr<Communicator>> tp_comms_, pp_comms_;  // indexed by world rank
  std::vector<std::unique_ptr<Rank>> ranks_;
  std::unique_ptr<RankWorkers> workers_;
  Tensor logits_;  // several micro-batches: their logits rows, on the driver's device
};

}  // namespace eli
