// runtime/parallel/parallel_runner.cc: see parallel_runner.h.
#include "runtime/parallel/parallel_runner.h"

#include <algorithm>

#include "eli/error.h"
#include "runtime/comm/cpu_communicator.h"
#include "runtime/comm/nccl_communicator.h"
#include "runtime/comm/peer_communicator.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/model/weight_reader.h"
#include "runtime/parallel/micro_batch.h"
#include "runtime/parallel/rank_collectives.h"
#include "runtime/runner/model_runner.h"

namespace eli {

struct ParallelRunner::Rank {
  RankShard shard;
  std::unique_ptr<Device> device;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<RankCollectives> comm;
  std::unique_ptr<ModelRunner> runner;
  std::unique_ptr<KvCache> kv;
};

namespace {

// The communicators of one group of ranks on `devices`: the CPU's in-process ones; on GPUs NCCL's
// (one GPU per rank), or eli's peer communicators where ranks share a GPU (NCCL refuses that) or
// NCCL cannot be loaded.
std::vector<std::unique_ptr<Communicator>> make_group(const std::vector<DeviceId>& devices) {
  bool mixed = false;
  for (const DeviceId& d : devices) mixed = mixed || d.kind != devices[0].kind;
  // Mixed kinds (a CPU stage before a GPU one): the host's communicator, staged by RankCollectives.
  if (mixed || devices[0].kind == DeviceKind::kCPU) return create_cpu_communicators(static_cast<int>(devices.size()));
  bool shared = false;
  for (size_t i = 0; i < devices.size(); ++i) {
    for (size_t j = 0; j < i; ++j) shared = shared || devices[i] == devices[j];
  }
  if (shared || !nccl_available()) return create_peer_communicators(devices);
  return create_nccl_communicators(devices);
}

}  // namespace

ParallelRunner::ParallelRunner(const ModelFiles& files, const ModelLoadOptions& opt, int tp, int pp, int n_threads,
                               std::vector<DeviceId> devices, std::vector<uint64_t> memory_budgets,
                               const StageLayout& layout)
    : tp_(tp), pp_(pp) {
  check_shardable(files.spec, tp, pp, layout.stage_layers);
  const int world = tp * pp;
  if (devices.empty()) devices.assign(static_cast<size_t>(world), DeviceId{opt.device, 0});
  ELI_CHECK_KIND(kInternal, static_cast<int>(devices.size()) == world, "ParallelRunner: ", devices.size(),
                 " devices for ", world, " ranks");
  for (int r = 0; r < world; ++r) {
    ELI_CHECK_KIND(kInternal, devices[static_cast<size_t>(r)].kind == devices[static_cast<size_t>(r - r % tp)].kind,
                   "ParallelRunner: the ranks of a stage must share a device kind");
  }
  ELI_CHECK_KIND(kInternal, layout.compute_dtypes.empty() || static_cast<int>(layout.compute_dtypes.size()) == world,
                 "ParallelRunner: ", layout.compute_dtypes.size(), " compute dtypes for ", world, " ranks");
  ELI_CHECK_KIND(kInternal, layout.rank_threads.empty() || static_cast<int>(layout.rank_threads.size()) == world,
                 "ParallelRunner: ", layout.rank_threads.size(), " thread counts for ", world, " ranks");
  // tp groups: the tp ranks of each stage; pp groups: the pp ranks holding each tp slice.
  tp_comms_.resize(static_cast<size_t>(world));
  pp_comms_.resize(static_cast<size_t>(world));
  for (int s = 0; s < pp; ++s) {
    std::vector<DeviceId> ids(devices.begin() + s * tp, devices.begin() + (s + 1) * tp);
    auto group = tp > 1 || ids[0].kind == DeviceKind::kCPU ? make_group(ids) : create_cpu_communicators(1);
    for (int t = 0; t < tp; ++t) tp_comms_[static_cast<size_t>(s * tp + t)] = std::move(group[static_cast<size_t>(t)]);
  }
  for (int t = 0; t < tp; ++t) {
    std::vector<DeviceId> ids;
    for (int s = 0; s < pp; ++s) ids.push_back(devices[static_cast<size_t>(s * tp + t)]);
    auto group = pp > 1 || ids[0].kind == DeviceKind::kCPU ? make_group(ids) : create_cpu_communicators(1);
    for (int s = 0; s < pp; ++s) pp_comms_[static_cast<size_t>(s * tp + t)] = std::move(group[static_cast<size_t>(s)]);
  }
  std::vector<Communicator*> all;
  for (auto& c : tp_comms_) all.push_back(c.get());
  for (auto& c : pp_comms_) all.push_back(c.get());
  const int threads_per_rank = std::max(1, n_threads / world);
  vocab_ = files.spec.vocab_size;
  for (int r = 0; r < world; ++r) {
    auto k = std::make_unique<Rank>();
    k->shard = make_rank_shard(files.spec, r % tp, tp, r / tp, pp, layout.stage_layers);
    ranks_.push_back(std::move(k));
  }
  workers_ = std::make_unique<RankWorkers>(world, all);
  // Each rank loads its shard on its own thread (its pool; its slices of the mapped file).
  workers_->run([&](int r) {
    Rank& k = *ranks_[static_cast<size_t>(r)];
    const DeviceId id = devices[static_cast<size_t>(r)];
    if (id.kind != DeviceKind::kCPU) make_device_current(id);  // this thread's device for good
    k.device = create_device(id);
    if (static_cast<size_t>(r) < memory_budgets.size() && memory_budgets[static_cast<size_t>(r)] > 0) {
      k.device->set_memory_budget(memory_budgets[static_cast<size_t>(r)]);
    }
    k.pool = std::make_unique<ThreadPool>(
        layout.rank_threads.empty() ? threads_per_rank : std::max(1, layout.rank_threads[static_cast<size_t>(r)]));
    k.comm = std::make_unique<RankCollectives>(k.shard, tp_comms_[static_cast<size_t>(r)].get(),
                                               pp_comms_[static_cast<size_t>(r)].get(), *k.device,
                                               k.device->default_stream());
    ModelLoadOptions o = opt;
    o.shard = k.shard;
    o.pool = k.pool.get();
    o.device = id.kind;
    if (!layout.compute_dtypes.empty()) o.compute_dtype = layout.compute_dtypes[static_cast<size_t>(r)];
    std::unique_ptr<Model> model = create_model(files.spec, WeightReader(files.weights, files.name_of), o);
    k.runner = std::make_unique<ModelRunner>(*k.device, std::move(model), k.pool.get());
    k.runner->set_collectives(k.comm.get());
    k.runner->set_graphs_enabled(false);  // until the engine asks (set_graphs_enabled)
  });
}

ParallelRunner::~ParallelRunner() {
  // The logits buffer and the runners and caches go before the devices, threads and communicators
  // they use.
  logits_ = Tensor();
  ranks_.clear();
  workers_.reset();
}

Device& ParallelRunner::device(int rank) const { return *ranks_.at(static_cast<size_t>(rank))->device; }

const ModelRunner& ParallelRunner::runner(int rank) const { return *ranks_.at(static_cast<size_t>(rank))->runner; }

std::vector<uint64_t> ParallelRunner::reserve(int64_t max_tokens, int64_t max_logits) {
  std::vector<uint64_t> bytes(ranks_.size(), 0);
  workers_->run([&](int r) {
    Rank& k = *ranks_[static_cast<size_t>(r)];
    const uint64_t before = k.device->memory_stats().reserved_bytes;
    bytes[static_cast<size_t>(r)] = k.runner->reserve(max_tokens, max_logits);
    if (k.shard.last_stage()) k.comm->reserve(max_logits);  // the logits gather's scratch
    k.comm->reserve_stage(max_tokens * k.runner->model().spec().hidden_size);  // pinned: not device bytes
    const uint64_t after = k.device->memory_stats().reserved_bytes;
    if (after > before + bytes[static_cast<size_t>(r)]) bytes[static_cast<size_t>(r)] = after - before;
  });
  if (!ranks_[static_cast<size_t>(driver())]->device->properties().host_memory && pp_ > 1) {
    // Several micro-batches' logits rows meet in one buffer on the driver's device.
    Rank& d = *ranks_[static_cast<size_t>(driver())];
    logits_ = Tensor();
    logits_ = Tensor::empty(*d.device, DType::kF32, {std::max<int64_t>(max_logits, 1) * vocab_});
    bytes[static_cast<size_t>(driver())] += logits_.nbytes();
  }
  return bytes;
}

void ParallelRunner::set_graphs_enabled(bool on) {
  workers_->run([&](int r) {
    Rank& k = *ranks_[static_cast<size_t>(r)];
    k.runner->set_graphs_enabled(on && k.comm->capturable());  // host-staged stages wait on the host
  });
}

void ParallelRunner::enable_sampling(int64_t max_rows, int64_t vocab) {
  workers_->run([&](int r) {
    if (r == driver()) ranks_[static_cast<size_t>(r)]->runner->enable_sampling(max_rows, vocab);
  });
}

DeviceSampler& ParallelRunner::sampler() { return ranks_[static_cast<size_t>(driver())]->runner->sampler(); }

void ParallelRunner::release_cached() {
  for (auto& k : ranks_) k->device->release_cached();
}

uint64_t ParallelRunner::weight_bytes() const {
  uint64_t b = 0;
  for (const auto& k : ranks_) b += k->runner->weight_bytes();
  return b;
}

uint64_t ParallelRunner::n_params() const {
  uint64_t n = 0;
  for (const auto& k : ranks_) n += k->runner->model().weights().n_params();
  return n;
}

KvCacheShape ParallelRunner::rank_kv_shape(int r, const KvCacheShape& shape) const {
  const Rank& k = *ranks_.at(static_cast<size_t>(r));
  const KvSpec ks = k.runner->model().kv_spec();
  KvCacheShape s = slice_kv_shape(shape, ks.first_layer, ks.n_layers, ks.n_kv_heads);
  if (k.device->id().kind == DeviceKind::kCPU) {
    if (s.dtype == DType::kBF16 || s.dtype == DType::kF16) s.dtype = DType::kF32;
    s.quantized_query_dtype = DType::kF32;
  }
  return s;
}

uint64_t ParallelRunner::create_kv(const KvCacheShape& shape) {
  uint64_t bytes = 0;
  for (size_t r = 0; r < ranks_.size(); ++r) {
    Rank& k = *ranks_[r];
    k.kv = std::make_unique<KvCache>(*k.device, rank_kv_shape(static_cast<int>(r), shape));
    bytes += k.kv->nbytes();
  }
  return bytes;
}

void ParallelRunner::forward_to_host(const Batch& batch, float* logits) {
  const int driver = this->driver();  // the last stage's tp rank 0 writes the caller's logits
  const int64_t V = vocab_;
  // With stages, micro-batches let stage s + 1 run micro-batch m while stage s runs m + 1.
  const std::vector<MicroBatch> mbs = split_micro_batches(batch, pp_);
  workers_->run([&](int r) {
    Rank& k = *ranks_[static_cast<size_t>(r)];
    ELI_CHECK_KIND(kInternal, k.kv != nullptr, "ParallelRunner: create_kv() was not called");
    for (const MicroBatch& mb : mbs) {
      if (r == driver) {
        k.runner->forward_to_host(mb.batch, *k.kv, logits + mb.first_logit * V);
      } else {
        k.runner->forward(mb.batch, *k.kv);
      }
    }
  });
}

float* ParallelRunner::forward(const Batch& batch) {
  const int driver = this->driver();
  const int64_t V = vocab_;
  const std::vector<MicroBatch> mbs = split_micro_batches(batch, pp_);
  float* out = nullptr;
  if (mbs.size() > 1) {
    Rank& d = *ranks_[static_cast<size_t>(driver)];
    if (static_cast<size_t>(batch.n_logits() * V) * sizeof(float) > logits_.nbytes()) {  // past reserve()
      logits_ = Tensor();
      logits_ = Tensor::empty(*d.device, DType::kF32, {std::max<int64_t>(batch.n_logits(), 1) * V});
    }
    out = logits_.ptr<float>();
  }
  workers_->run([&](int r) {
    Rank& k = *ranks_[static_cast<size_t>(r)];
    ELI_CHECK_KIND(kInternal, k.kv != nullptr, "ParallelRunner: create_kv() was not called");
    for (const MicroBatch& mb : mbs) {
      float* logits = k.runner->forward(mb.batch, *k.kv);
      if (r != driver) continue;
      if (mbs.size() == 1) {
        out = logits;
      } else if (mb.batch.n_logits() > 0) {  // into the step's rows, in the runner's stream order
        k.device->copy_device_to_device(out + mb.first_logit * V, logits,
                                        static_cast<size_t>(mb.batch.n_logits() * V) * sizeof(float),
                                        k.device->default_stream().native());
      }
    }
  });
  return out;
}

void ParallelRunner::copy_logits(const float* logits, int64_t row0, int64_t n, float* dst) {
  ranks_[static_cast<size_t>(driver())]->runner->copy_logits(logits, row0, n, dst);
}

}  // namespace eli
