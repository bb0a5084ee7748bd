// runtime/engine/engine.cc: the Engine: model loading, memory planning, admission, and the step
// loop body (schedule -> batch -> forward -> sample -> outputs).
//
// Invariants: requests_ holds every request that has not yet reported its end; a request's blocks
// are released in the same call that reports its end (finish, abort or error); the KV pool and the
// workspace are sized once at construction.
//
// Asynchronous scheduling (EngineConfig::async_scheduling; on by default for device models): a
// step is launched (batch built, forward and sampling queued) and completed (samples read, tokens
// appended, ends reported) separately. When every sampled row of the launched step is free of
// penalties, each of its sequences that will go on gets a placeholder token at once, so the next
// step is scheduled and queued before this one is completed: the device never waits for the host.
// The next step's inputs at placeholders come from the sampler's device output
// (ModelRunner::TokenFeed; on the CPU, from the completed host samples). Rules that keep this
// exact: num_computed advances at launch; a sampled token lands at the index recorded at launch
// (out_pos), overwriting its placeholder; prefix-cache blocks are registered at completion and
// only up to what the completed step computed; a sequence that ends while a launched step still
// names it stays alive in `retired` until that step completes (its rows are then ignored); its
// freed blocks are only reused by steps queued later on the same stream. Outputs of a step are
// reported by the step() call after the one that launched it (or the same call when not
// asynchronous).
//
// Prompt logprobs and embeddings (SamplingParams::prompt_logprobs, pooling): such a request's
// prompt rows become extra logits rows of its steps ("aux rows", after the sampled rows), read back
// to the host at launch: a log-softmax + top-k per prompt position, or the final-normed hidden
// state (summed for mean pooling). At most kAuxRowsPerStep aux rows per step (the workspace is
// reserved for them): fit_aux_rows() shortens such a request's chunk to what fits, or leaves it
// out of the step. aux_next keeps a preempted request from counting a recomputed row twice, and
// these requests get a cache salt of their own (their rows must be computed, not taken from the
// prefix cache). An embedding request samples nothing; it ends when its prompt is computed.
//
// Token masks (structured output, allowed_token_ids, min_tokens; runtime/engine/token_mask.h) are
// built on the host after the forward pass is queued and before sampling, and applied inside the
// sampler. A constrained row whose input is a placeholder (the previous step, launched ahead, has
// not been completed) needs that token first: after queueing the forward pass the engine collects
// the previous step's samples (queued before this forward, so they are ready early), feeds the
// token to the constraint (recorded in the previous step's `fed`, so its completion does not feed
// it again), then fills the mask while the forward pass runs (include/eli/token_constraint.h).
#include "eli/engine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>

#include "runtime/runner/batch.h"
#include "eli/error.h"
#include "runtime/core/phase_timer.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"
#include "runtime/runner/device_sampler.h"
#include "runtime/engine/memory_plan.h"
#include "runtime/engine/model_load.h"
#include "runtime/engine/scheduler.h"
#include "runtime/engine/step_trace.h"
#include "runtime/engine/token_mask.h"
#include "runtime/kv/disk_kv_tier.h"
#include "runtime/kv/host_kv_tier.h"
#include "runtime/kv/host_prefix_cache.h"
#include "runtime/kv/kv_cache.h"
#include "runtime/model/model.h"
#include "runtime/model/model_files.h"
#include "runtime/model/weight_reader.h"
#include "runtime/device/host_memory.h"
#include "runtime/parallel/parallel_config.h"
#include "runtime/parallel/parallel_runner.h"
#include "runtime/runner/model_runner.h"

namespace eli {
namespace {

// Writes a sequence's block table into a batch row: entries [0, n_dropped) are no longer held
// (out of the window, runtime/kv/kv_groups.h) and become the first held block, so that no kernel
// could ever touch a block another sequence owns; attention never reads them anyway.
void put_block_table(const std::vector<int32_t>& table, int64_t n_dropped, int32_t* row) {
  std::copy(table.begin(), table.end(), row);
  if (n_dropped <= 0) return;
  ELI_CHECK(n_dropped < static_cast<int64_t>(table.size()), "a sequence holds no block of its window");
  std::fill(row, row + n_dropped, table[static_cast<size_t>(n_dropped)]);
}

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kError: return "error";
  }
  return "";
}

namespace {

bool wants_aux(const Sequence& s) { return s.params.pooling != kPoolingNone || s.params.prompt_logprobs >= 0; }

// Aux rows the chunk [c, c + n) of `s` adds: prompt logprobs, each prompt position below
// prompt_len - 1 (whose next token is a prompt token); mean pooling, each prompt position; last
// pooling, the last one. Positions below aux_next had theirs.
int64_t aux_rows(const Sequence& s, int64_t c, int64_t n) {
  const int64_t lo = std::max(c, s.aux_next);
  if (s.params.pooling == kPoolingLast) return c + n == s.prompt_len && lo < s.prompt_len ? 1 : 0;
  const int64_t end = s.params.pooling == kPoolingMean ? s.prompt_len : (s.params.prompt_logprobs >= 0 ? s.prompt_len - 1 : 0);
  return std::max<int64_t>(0, std::min(c + n, end) - lo);
}

// (token, its logprob) then the top k (id, logprob) of one logits row.
std::vector<std::pair<int32_t, float>> prompt_entry(const float* row, int64_t V, int32_t token, int k) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t v = 0; v < V; ++v) mx = std::max(mx, row[v]);
  double sum = 0.0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
  const double lse = mx + std::log(sum);
  std::vector<std::pair<int32_t, float>> out;
  out.reserve(static_cast<size_t>(k) + 1);
  out.emplace_back(token, static_cast<float>(row[token] - lse));
  if (k > 0) {
    std::vector<int32_t> idx(static_cast<size_t>(V));
    std::iota(idx.begin(), idx.end(), 0);
    const auto kk = std::min<int64_t>(k, V);
    std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), [&](int32_t a, int32_t b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
    for (int64_t j = 0; j < kk; ++j) out.emplace_back(idx[j], static_cast<float>(row[idx[j]] - lse));
  }
  return out;
}

}  // namespace

struct Engine::Impl {
  EngineConfig config;
  EngineInfo info;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Device> device;
  std::unique_ptr<ModelRunner> runner;
  std::unique_ptr<KvCache> kv;
  std::unique_ptr<ParallelRunner> parallel;       // tp x pp > 1: the ranks' runners and KV (runner, kv unset)
  std::vector<MemoryBudget> rank_budgets;         // parallel ranks on GPUs: each rank's budget
  std::unique_ptr<BlockPool> blocks;
  std::unique_ptr<BlockPool> blocks1;  // KV group 1 (sliding-window layers beside full ones) or null
  std::unique_ptr<HostKvTier> host_kv;  // swap_space_gb > 0: the host tier of swap preemption
  std::unique_ptr<HostKvTier> offload_kv;         // kv_offload_gb > 0: the host prefix cache's tier
  std::unique_ptr<DiskKvTier> disk_kv;           // kv_offload_disk_gb > 0: its disk tier
  std::unique_ptr<HostPrefixCache> host_prefix;  // ... and its index
  std::unique_ptr<Scheduler> scheduler;
  DeviceSampler* sampler = nullptr;  // the runner's (parallel: the driver rank's): Op::kSample next to the logits
  bool on_device = false;                         // the model runs on a GPU (device logits)
  bool device_feed = false;  // one GPU runner: asynchronous sampling, next tokens fed on the device
  // The device whose kernels the engine's thread launches (the sampler's): the driver rank's with
  // parallel GPU ranks (a DeviceScope around launches), else the engine's device.
  DeviceId sampler_dev{};
  std::map<int64_t, std::unique_ptr<Sequence>> requests;
  std::vector<TokenOutput> pending;  // ends reported by abort_request(), delivered by the next step()
  std::vector<float> logits;         // (n_logits, V)
  static constexpr int64_t kAuxRowsPerStep = 128;
  std::vector<float> aux_logits, aux_hidden;  // this step's aux rows, on the host
  std::mt19937_64 seed_rng;
  int64_t next_id = 0;
  EngineStats counters;
  bool async_scheduling = false;
  StepTrace trace;             // ELI_STEP_TRACE=1: per-phase step timings on stderr at destruction
  int64_t trace_wait_ns = 0;   // time blocked on the device in collect(), this step() call

  // A launched step whose samples are not yet applied.
  struct Inflight {
    uint64_t serial = 0;
    std::vector<ScheduledSeq> sched;
    std::vector<int64_t> computed_end;  // per entry: the sequence's num_computed after this step
    std::vector<int64_t> out_pos;       // per entry: index of the sampled token in seq->tokens (-1: none)
    std::vector<bool> embed_end;        // per entry: an embedding request whose prompt this step ends
    bool lookahead = false;             // placeholders appended: the next step may launch first
    bool pending_on_device = false;     // results still to collect from the DeviceSampler
    std::vector<SampleResult> results;  // per sampled row, once collected
    std::vector<std::string> errors;
    std::vector<std::string> mask_errors;  // per sampled row: a failed constraint or a dead end
    // Per sampled row, when the next step fed this row's token to its constraint early: fed[r] = 1,
    // with the outcome (an error, or the constraint's completion) for complete().
    std::vector<char> fed, fed_done;
    std::vector<std::string> fed_error;
  };
  // Feeds the placeholder tokens of f's constrained rows (samples of prev) to their constraints;
  // skip[r] = 1 for a row whose request ends with prev's token (no mask is built for it).
  void feed_constraints(const Inflight& f, Inflight* prev, std::vector<char>* skip);
  std::unique_ptr<Inflight> inflight;  // the newest launched step, not completed
  uint64_t next_serial = 1;
  // Sequences that ended while a launched step named them, with that step's serial.
  std::vector<std::pair<uint64_t, std::unique_ptr<Sequence>>> retired;

  // Ends `id`'s life: erased now, or kept in `retired` while the newest launched step may name it.
  void retire(int64_t id) {
    auto it = requests.find(id);
    if (it == requests.end()) return;
    if (inflight) retired.emplace_back(inflight->serial, std::move(it->second));
    requests.erase(it);
  }
  void release_retired(uint64_t completed_serial) {
    retired.erase(std::remove_if(retired.begin(), retired.end(),
                                 [&](const auto& r) { return r.first <= completed_serial; }),
                  retired.end());
  }
  std::unique_ptr<Inflight> launch(const std::vector<ScheduledSeq>& sched, Inflight* prev);
  void fit_aux_rows(std::vector<ScheduledSeq>& sched) const;
  void take_aux_rows(const std::vector<ScheduledSeq>& sched, const std::vector<std::pair<int32_t, int64_t>>& aux,
                     int64_t row0, const float* step_logits);
  void collect(Inflight& f);
  void complete(Inflight& f, std::vector<TokenOutput>& outs);

  void finish(Sequence* seq, FinishReason reason, TokenOutput* out) {
    scheduler->remove(seq);
    out->finish = reason;
  }
  bool is_stop_token(const Sequence& seq, int32_t token) const {
    const SamplingParams& p = seq.params;
    if (std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), token) != p.stop_token_ids.end()) return true;
    if (p.ignore_eos) return false;
    const auto& eos = info.spec.eos_token_ids;
    return std::find(eos.begin(), eos.end(), token) != eos.end();
  }
};

Engine::Engine(const EngineConfig& config) : impl_(new Impl) {
  Impl& m = *impl_;
  PhaseTimer trace("ELI_LOAD_TRACE", "load");  // one stderr line per phase when ELI_LOAD_TRACE=1
  m.config = config;
  m.seed_rng.seed(config.seed != 0 ? config.seed : std::random_device{}());
  // Device, threads, files, dtypes, budget, the model on the host and the placement plan
  // (runtime/engine/model_load.h); nothing is uploaded yet.
  LoadedModel L = load_model_for(config, Impl::kAuxRowsPerStep, trace);
  m.device = std::move(L.device);
  m.pool = std::move(L.pool);
  m.parallel = std::move(L.parallel);
  m.rank_budgets = std::move(L.rank_budgets);
  const DeviceId dev = L.dev;
  const bool on_device = L.on_device;
  const ModelFiles& files = L.files;
  const DType wdtype = L.weight_dtype, kv_dtype = L.kv_dtype;
  const MemoryBudget& budget = L.budget;
  const OffloadPlan& offload = L.offload;
  const int64_t max_logits = L.max_logits;
  std::unique_ptr<Model> model = std::move(L.model);
  if (on_device) apply_pool_budget(*m.device, budget);

  m.info.spec = files.spec;
  m.info.format = files.format;
  m.info.weight_dtype = dtype_name(wdtype);
  m.info.device = device_name(dev);
  m.info.n_params = m.parallel ? m.parallel->n_params() : model->weights().n_params();
  m.info.n_threads = m.pool->n_threads();
  if (!m.parallel) m.runner = std::make_unique<ModelRunner>(*m.device, std::move(model), m.pool.get(), &offload);
  if (L.compute.cpu_layers > 0) {  // the CPU stage computes the offloaded layers (rank 0, host memory)
    m.info.weight_placement = describe_cpu_stage(L.compute, files.spec.n_layers, device_name(dev));
    m.info.memory.weights_host_bytes = m.parallel->runner(0).weight_bytes();
  } else {
    m.info.weight_placement =
        offload.describe(device_name(dev)) + (L.compute.reason.empty() ? "" : "; " + L.compute.reason);
    if (m.runner != nullptr && m.runner->streamer() != nullptr) {
      m.info.weight_placement += m.runner->streamer()->file_reads();  // how the file tier is read
    }
    m.info.memory.weights_host_bytes = offload.host_bytes;
    m.info.memory.weights_disk_bytes = offload.disk_bytes;
  }
  if (trace.enabled()) {
    if (on_device) trace.mark("upload", trace.bytes_and_rate(m.runner->weight_bytes()));
    else trace.mark("place weights");
  }
  m.on_device = on_device;
  m.device_feed = on_device && m.runner != nullptr;
  // Sampling next to the logits, in the runner that makes them (its buffers are sized once, before
  // the KV pool is planned): on a GPU the logits never travel to the host; on the CPU the rows are
  // sampled on the thread pool.
  if (m.parallel) {
    m.parallel->enable_sampling(config.max_num_seqs, files.spec.vocab_size);
    m.sampler = &m.parallel->sampler();
    m.sampler_dev = on_device ? m.parallel->device(m.parallel->driver()).id() : dev;
  } else {
    m.runner->enable_sampling(config.max_num_seqs, files.spec.vocab_size);
    m.sampler = &m.runner->sampler();
    m.sampler_dev = dev;
  }
  trace.mark("sampler");

  KvPlan plan;
  EngineMemoryInfo& mem = m.info.memory;
  mem.total_bytes = m.device->total_bytes();
  if (on_device && m.parallel) {
    // Every rank: its workspaces, then its share of the KV pool on its device; the pool gets the
    // fewest blocks a rank can hold.
    const std::vector<uint64_t> ws = m.parallel->reserve(config.max_num_batched_tokens, max_logits);
    trace.mark("workspace reservation");
    m.parallel->release_cached();
    // Host ranks (the CPU stage of offload_compute) plan no device KV: their caches, as many
    // blocks, go to host memory (checked below).
    std::vector<RankKvInput> ranks;
    for (int r = 0; r < m.parallel->world(); ++r) {
      if (m.parallel->device(r).properties().host_memory) continue;
      const ModelRunner& rr = m.parallel->runner(r);
      ranks.push_back({&m.rank_budgets[static_cast<size_t>(r)], &m.parallel->device(r), rr.weight_bytes(),
                       ws[static_cast<size_t>(r)], rr.model().kv_spec()});
      mem.workspace_bytes += ws[static_cast<size_t>(r)];
      mem.weights_bytes += rr.weight_bytes();
    }
    plan = plan_parallel_device_kv_cache(config, files.spec, kv_dtype, ranks);
    uint64_t host_kv = 0;
    for (int r = 0; r < m.parallel->world(); ++r) {
      if (!m.parallel->device(r).properties().host_memory) continue;
      host_kv += m.parallel->rank_kv_shape(r, plan.shape).nbytes();
    }
    ELI_CHECK_KIND(kOutOfMemory, host_kv <= host_available_bytes(), "the CPU stage's KV cache (",
                   plan.shape.n_blocks, " blocks: ", format_bytes(host_kv), ") does not fit the host's available "
                   "memory (", format_bytes(host_available_bytes()), "); lower num_kv_blocks / kv_cache_bytes or "
                   "gpu_memory_utilization");
    mem.budget_bytes = budget.budget_bytes;
    mem.headroom_bytes = budget.headroom_bytes;
  } else if (on_device) {
    // Workspaces for the largest step, reserved before the KV pool takes what is left.
    mem.workspace_bytes = m.runner->reserve(config.max_num_batched_tokens, max_logits);
    trace.mark("workspace reservation");
    mem.weights_bytes = m.runner->weight_bytes();
    check_weights_fit(budget, mem.weights_bytes);
    // Blocks freed while the workspaces grew are garbage now: give them back before measuring.
    m.device->release_cached();
    plan = plan_device_kv_cache(config, files.spec, budget, *m.device, mem.weights_bytes, mem.workspace_bytes, kv_dtype);
    mem.budget_bytes = budget.budget_bytes;
    mem.headroom_bytes = budget.headroom_bytes;
  } else {
    plan = plan_kv_cache(config, files.spec, *m.device, kv_dtype);
    // Host memory (mapped-file views included).
    mem.weights_bytes = m.parallel ? m.parallel->weight_bytes() : m.runner->weight_bytes();
  }
  plan.shape.quantized_query_dtype = on_device ? wdtype : DType::kF32;  // an int8/fp8 cache's queries
  if (m.parallel) {
    mem.kv_bytes = m.parallel->create_kv(plan.shape);  // each rank its layers and kv heads, the same blocks
  } else {
    m.kv = std::make_unique<KvCache>(*m.device, plan.shape);
    mem.kv_bytes = m.kv->nbytes();
  }
  trace.mark("kv pool");
  m.blocks = std::make_unique<BlockPool>(plan.shape.n_blocks);
  if (plan.shape.n_blocks1 > 0) m.blocks1 = std::make_unique<BlockPool>(plan.shape.n_blocks1, /*foreign_parent_keys=*/true);
  m.info.max_model_len = plan.max_model_len;
  m.info.block_size = plan.shape.block_size;
  m.info.num_kv_blocks = plan.shape.n_blocks;
  m.info.num_kv_window_blocks = plan.shape.n_blocks1;
  m.info.kv_cache_dtype = dtype_name(plan.shape.dtype);
  if (m.runner) m.runner->set_graphs_enabled(config.enable_cuda_graphs);
  if (m.parallel && on_device) m.parallel->set_graphs_enabled(config.enable_cuda_graphs);
  ELI_CHECK_ARG(config.async_scheduling >= -1 && config.async_scheduling <= 1,
                "async_scheduling must be -1 (auto), 0 or 1, got ", config.async_scheduling);
  m.async_scheduling = config.async_scheduling == 1 || (config.async_scheduling == -1 && on_device);
  SchedulerConfig sc;
  sc.block_size = plan.shape.block_size;
  sc.max_num_seqs = config.max_num_seqs;
  sc.max_num_batched_tokens = config.max_num_batched_tokens;
  sc.enable_chunked_prefill = config.enable_chunked_prefill;
  sc.enable_prefix_caching = config.enable_prefix_caching;
  sc.kv_groups = kv_groups_for(files.spec);  // the KV cache's layer groups come from the same rule
  // Swap preemption (runtime/kv/host_kv_tier.h, runtime/kv/swap_cost.h); off: nothing changes.
  if (config.swap_space_gb > 0.0) sc.swap_cost = KvSwapCost::for_device(dev.kind, m.info.n_params);
  m.scheduler = std::make_unique<Scheduler>(sc, *m.blocks, m.blocks1.get());
  // A host KV tier of `gb` GiB (option `option`), refused when it cannot hold one block.
  auto make_host_tier = [&](const char* option, double gb) {
    const uint64_t bytes = gib_bytes(gb);
    const int64_t slots = HostKvTier::slots_for_bytes(plan.shape, bytes);
    ELI_CHECK_ARG(slots > 0, option, " = ", gb, " (", format_bytes(bytes),
                  ") holds no KV block of this model (one block of every layer takes ",
                  format_bytes(HostKvTier::slot_set_bytes(plan.shape)), "); raise it or set 0 to turn it off");
    return std::make_unique<HostKvTier>(*m.device, *m.kv, slots);
  };
  if (config.swap_space_gb > 0.0) {
    ELI_CHECK_KIND(kUnsupported, !m.parallel,
                   "swap_space_gb needs tensor_parallel_size = pipeline_parallel_size = 1 and no CPU stage "
                   "(offload_compute=cpu) for now");
    m.host_kv = make_host_tier("swap_space_gb", config.swap_space_gb);
    m.scheduler->set_host_tier(m.host_kv.get());
  }
  if (config.kv_offload_gb > 0.0 && config.enable_prefix_caching) {  // without prefix caching: nothing to keep
    ELI_CHECK_KIND(kUnsupported, !m.parallel,
                   "kv_offload_gb needs tensor_parallel_size = pipeline_parallel_size = 1 and no CPU stage "
                   "(offload_compute=cpu) for now");
    ELI_CHECK_KIND(kUnsupported, sc.kv_groups.n_groups() == 1 && sc.kv_groups.window[0] == 0,
                   "kv_offload_gb does not support models with sliding-window layers yet; set it to 0");
    m.offload_kv = make_host_tier("kv_offload_gb", config.kv_offload_gb);
    m.host_prefix = std::make_unique<HostPrefixCache>(*m.offload_kv);
    if (config.kv_offload_disk_gb > 0.0) {  // behind the host tier (runtime/kv/disk_kv_tier.h)
      const uint64_t bytes = gib_bytes(config.kv_offload_disk_gb), slot = m.offload_kv->slot_bytes(0);
      const int64_t slots = DiskKvTier::slots_for_bytes(slot, bytes);
      ELI_CHECK_ARG(slots > 0, "kv_offload_disk_gb = ", config.kv_offload_disk_gb, " (", format_bytes(bytes),
                    ") holds no KV block of this model (one block of every layer takes ", format_bytes(slot),
                    "); raise it or set 0 to turn it off");
      m.disk_kv = std::make_unique<DiskKvTier>(config.kv_offload_disk_path, slot, slots);
      m.host_prefix->set_disk(m.disk_kv.get());
    }
    m.scheduler->set_host_prefix_cache(m.host_prefix.get());
  }
  trace.mark("scheduler");
  trace.done();
}

Engine::~Engine() = default;

const EngineInfo& Engine::info() const { return impl_->info; }

int64_t Engine::add_request(const std::vector<int32_t>& prompt, const SamplingParams& params) {
  Impl& m = *impl_;
  const int64_t V = m.info.spec.vocab_size;
  ELI_CHECK_ARG(!prompt.empty(), "the prompt is empty");
  for (size_t i = 0; i < prompt.size(); ++i) {
    ELI_CHECK_ARG(prompt[i] >= 0 && prompt[i] < V, "prompt token ", i, " has id ", prompt[i],
                  ", outside the vocabulary [0, ", V, ")");
  }
  validate_sampling_params(params, V);
  if (params.pooling != kPoolingNone && m.parallel) {
    ELI_THROW(kUnsupported, "embeddings are not supported with tensor or pipeline parallelism, or with the CPU stage "
                            "of offload_compute=cpu, yet");
  }
  const int64_t n = static_cast<int64_t>(prompt.size());
  const int64_t total = n + params.max_tokens;
  ELI_CHECK_ARG(total <= m.info.max_model_len, "the prompt (", n, " tokens) plus max_tokens (", params.max_tokens,
                ") is ", total, " tokens, more than the context length of ", m.info.max_model_len);
  // A windowed group holds the window's blocks and those of a step or two of new tokens at most.
  const KvGroups& groups = m.scheduler->config().kv_groups;
  for (int g = 0; g < groups.n_groups(); ++g) {
    const BlockPool& pool = g == 0 ? *m.blocks : *m.blocks1;
    int64_t need = m.scheduler->blocks_for(total);
    const int64_t w = groups.window[static_cast<size_t>(g)];
    if (w > 0) {
      need = std::min(need, m.scheduler->blocks_for(w - 1) + 2 * m.scheduler->blocks_for(m.config.max_num_batched_tokens) + 2);
    }
    ELI_CHECK_ARG(need <= pool.n_blocks(), "the request needs ", need, " KV blocks but the ",
                  g == 0 ? "" : "sliding-window layers' ", "pool has only ", pool.n_blocks(),
                  "; raise kv_cache_bytes or num_kv_blocks");
  }

  auto seq = std::make_unique<Sequence>();
  seq->id = m.next_id++;
  seq->tokens = prompt;
  seq->prompt_len = n;
  seq->params = params;
  if (wants_aux(*seq)) {
    // Its prompt rows must be computed: a salt no other request has keeps prefix-cache hits out.
    seq->params.cache_salt = 0x5eed000000000000ull ^ static_cast<uint64_t>(seq->id + 1);
  }
  seq->sampling = std::make_unique<SequenceSamplingState>(params, prompt, m.seed_rng());
  Sequence* raw = seq.get();
  m.requests[seq->id] = std::move(seq);
  m.scheduler->add(raw);
  m.counters.prompt_tokens += n;
  return raw->id;
}

void Engine::abort_request(int64_t request_id) {
  Impl& m = *impl_;
  auto it = m.requests.find(request_id);
  if (it == m.requests.end()) return;  // already ended: nothing to do
  TokenOutput out;
  out.request_id = request_id;
  m.finish(it->second.get(), FinishReason::kAbort, &out);
  m.retire(request_id);
  m.pending.push_back(out);
}

bool Engine::has_unfinished() const {
  return !impl_->requests.empty() || !impl_->pending.empty() || impl_->inflight != nullptr;
}

std::vector<TokenOutput> Engine::step() {
  Impl& m = *impl_;
  m.device->make_current();  // kernels launch on the current device (any cuda:N), whichever thread steps
  std::vector<TokenOutput> outs;
  outs.swap(m.pending);
  try {
    return step_inner(outs);
  } catch (...) {
    // Ends reported by abort_request() are delivered by a later step, not lost with this one.
    m.pending.insert(m.pending.begin(), outs.begin(), outs.end());
    throw;
  }
}

std::vector<TokenOutput> Engine::step_inner(std::vector<TokenOutput>& outs) {
  Impl& m = *impl_;
  const bool tracing = m.trace.enabled();
  StepTrace::Step tr;
  m.trace_wait_ns = 0;
  if (tracing) tr.begin_ns = StepTrace::now_ns();
  std::unique_ptr<Impl::Inflight> prev = std::move(m.inflight);
  if (prev && !prev->lookahead) {
    m.complete(*prev, outs);
    prev.reset();
  }
  const int64_t t_sched = tracing ? StepTrace::now_ns() : 0;
  std::vector<ScheduledSeq> sched = m.scheduler->schedule();
  m.fit_aux_rows(sched);
  const int64_t t_launch = tracing ? StepTrace::now_ns() : 0;
  if (tracing) {
    tr.schedule_ns = t_launch - t_sched;
    tr.seqs = static_cast<int64_t>(sched.size());
    for (const ScheduledSeq& s : sched) {
      tr.tokens += s.n_new;
      tr.rows += s.sample ? 1 : 0;
      tr.prefill = tr.prefill || s.n_new > 1;
    }
  }
  if (!sched.empty()) {
    try {
      m.inflight = m.launch(sched, prev.get());
      if (tracing) tr.launch_ns = StepTrace::now_ns() - t_launch;
    } catch (...) {
      // Nothing of the failed step advanced; the previous step's samples are still applied (its
      // outputs are delivered by a later step() with the pending ones).
      if (prev) {
        try {
          m.complete(*prev, outs);
        } catch (...) {
        }
      }
      if (m.sampler) m.sampler->drop_pending();
      throw;
    }
  }
  if (prev) m.complete(*prev, outs);
  if (m.inflight && !m.inflight->lookahead) {
    m.complete(*m.inflight, outs);
    m.inflight.reset();
  }
  if (tracing) {
    tr.end_ns = StepTrace::now_ns();
    tr.wait_ns = m.trace_wait_ns;
    tr.complete_ns = tr.end_ns - tr.begin_ns - tr.schedule_ns - tr.launch_ns - tr.wait_ns;
    m.trace.record(tr);
    if (!has_unfinished()) m.trace.flush();
  }
  return outs;
}

std::unique_ptr<Engine::Impl::Inflight> Engine::Impl::launch(const std::vector<ScheduledSeq>& sched, Inflight* prev) {
  const int64_t B = info.block_size, V = info.spec.vocab_size;
  auto f = std::make_unique<Inflight>();
  f->serial = next_serial++;
  f->sched = sched;
  ++counters.steps;

  Batch batch;
  ModelRunner::TokenFeed feed;
  if (device_feed) feed.src = sampler->device_tokens();
  int64_t max_blocks = 0;
  for (const ScheduledSeq& s : sched) max_blocks = std::max<int64_t>(max_blocks, s.seq->blocks.size());
  batch.max_blocks_per_seq = max_blocks;
  batch.block_tables.assign(static_cast<size_t>(max_blocks * sched.size()), 0);
  const bool two_groups = blocks1 != nullptr;
  if (two_groups) batch.block_tables1.assign(batch.block_tables.size(), 0);
  std::vector<const SamplingParams*> ps;
  std::vector<SequenceSamplingState*> ss;
  std::vector<int64_t> draw_offsets;
  std::vector<std::pair<int32_t, int64_t>> aux;  // (entry, position) of each aux row, after the sampled rows
  std::vector<int32_t> aux_index;                // their flat token indices
  bool want_hidden = false;
  for (size_t i = 0; i < sched.size(); ++i) {
    const Sequence& seq = *sched[i].seq;
    if (wants_aux(seq) && aux_rows(seq, seq.num_computed, sched[i].n_new) > 0) {
      const int64_t c = seq.num_computed, n = sched[i].n_new;
      const int64_t first = seq.params.pooling == kPoolingLast ? seq.prompt_len - 1 : std::max(c, seq.aux_next);
      const int64_t count = aux_rows(seq, c, n);
      for (int64_t p = first; p < first + count; ++p) {
        aux.emplace_back(static_cast<int32_t>(i), p);
        aux_index.push_back(static_cast<int32_t>(batch.token_ids.size() + (p - c)));
      }
      want_hidden = want_hidden || seq.params.pooling != kPoolingNone;
    }
    for (int64_t j = 0; j < sched[i].n_new; ++j) {
      const int64_t pos = seq.num_computed + j;
      int32_t token = seq.tokens[static_cast<size_t>(pos)];
      if (seq.feed_row >= 0 && pos == seq.n_tokens() - 1) {
        // A placeholder: the previous (launched, not completed) step samples this token.
        ELI_CHECK_KIND(kInternal, prev != nullptr && prev->serial == seq.feed_serial,
                       "a placeholder token without its step");
        if (device_feed) {
          feed.dst_index.push_back(static_cast<int32_t>(batch.token_ids.size()));
          feed.src_index.push_back(seq.feed_row);
          token = 0;
        } else {
          const size_t r = static_cast<size_t>(seq.feed_row);
          token = prev->errors[r].empty() ? prev->results[r].token : 0;  // a failed row's sequence ends anyway
        }
      }
      batch.token_ids.push_back(token);
      batch.positions.push_back(static_cast<int32_t>(pos));
      batch.slot_mapping.push_back(static_cast<int32_t>(seq.blocks[static_cast<size_t>(pos / B)] * B + pos % B));
      if (two_groups) {
        batch.slot_mapping1.push_back(static_cast<int32_t>(seq.blocks1[static_cast<size_t>(pos / B)] * B + pos % B));
      }
    }
    batch.cu_seqlens.push_back(static_cast<int32_t>(batch.token_ids.size()));
    batch.context_lens.push_back(static_cast<int32_t>(seq.num_computed + sched[i].n_new));
    put_block_table(seq.blocks, seq.n_dropped[0], &batch.block_tables[i * max_blocks]);
    if (two_groups) put_block_table(seq.blocks1, seq.n_dropped[1], &batch.block_tables1[i * max_blocks]);
    if (sched[i].sample) {
      batch.logits_indices.push_back(batch.cu_seqlens.back() - 1);
      ps.push_back(&seq.params);
      ss.push_back(seq.sampling.get());
      // The sampled token's index in the request's outputs: what precedes it, placeholders included.
      draw_offsets.push_back(seq.num_computed + sched[i].n_new - seq.prompt_len);
    }
  }
  const int64_t n_rows = static_cast<int64_t>(ps.size());
  batch.logits_indices.insert(batch.logits_indices.end(), aux_index.begin(), aux_index.end());
  bool no_penalties = true;
  for (const SamplingParams* p : ps) {
    no_penalties = no_penalties && p->repetition_penalty == 1.0 && p->presence_penalty == 0.0 && p->frequency_penalty == 0.0;
  }
  f->lookahead = async_scheduling && n_rows > 0 && (device_feed ? sampler->can_launch_async(ps) : no_penalties);
  // The rows' token masks, computed on the host while the queued forward pass runs.
  StepMasks masks;
  auto build_masks = [&] {
    std::vector<char> skip;
    feed_constraints(*f, prev, &skip);
    build_step_masks(ps, draw_offsets, V, info.spec.eos_token_ids, &masks, &f->mask_errors, &skip);
  };

  // Sampling next to the logits: asynchronously on a GPU when it can, else one synchronous call.
  if (runner) runner->set_want_hidden(want_hidden);  // parallel ranks: no embeddings (add_request)
  if (on_device) {
    // Parallel GPU ranks: the sampler's kernels go to the driver rank's device.
    const DeviceScope scope(sampler_dev);
    float* d_logits = nullptr;
    if (parallel) {
      d_logits = parallel->forward(batch);
    } else {
      try {
        d_logits = runner->forward(batch, *kv, feed.dst_index.empty() ? nullptr : &feed);
      } catch (...) {
        runner->set_want_hidden(false);
        throw;
      }
      runner->set_want_hidden(false);
    }
    if (n_rows > 0) {
      build_masks();
      if (f->lookahead && device_feed) {
        sampler->launch_async(d_logits, n_rows, V, ps, ss, draw_offsets, &masks);
        f->pending_on_device = true;
      } else {
        if (prev != nullptr) collect(*prev);  // sample() needs nothing queued
        sampler->sample(d_logits, n_rows, V, ps, ss, &f->results, &f->errors, &draw_offsets, &masks);
      }
    }
    if (!aux.empty()) take_aux_rows(sched, aux, n_rows, d_logits);  // synchronous reads
  } else {
    logits.resize(static_cast<size_t>(batch.n_logits() * V));
    try {
      if (parallel) {
        parallel->forward_to_host(batch, logits.data());
      } else {
        runner->forward_to_host(batch, *kv, logits.data());
      }
    } catch (...) {
      if (runner) runner->set_want_hidden(false);
      throw;
    }
    if (runner) runner->set_want_hidden(false);
    build_masks();
    // A poisoned row (non-finite logits) fails its request only (an error string per row).
    sampler->sample(logits.data(), n_rows, V, ps, ss, &f->results, &f->errors, &draw_offsets, &masks);
    if (!aux.empty()) take_aux_rows(sched, aux, n_rows, logits.data());
  }

  // The step is queued: advance, and give each sequence that will go on a placeholder.
  f->computed_end.resize(sched.size());
  f->out_pos.assign(sched.size(), -1);
  f->embed_end.assign(sched.size(), false);
  int32_t row = 0;
  for (size_t i = 0; i < sched.size(); ++i) {
    Sequence* seq = sched[i].seq;
    seq->num_computed += sched[i].n_new;
    f->computed_end[i] = seq->num_computed;
    f->embed_end[i] = seq->params.pooling != kPoolingNone && seq->num_computed == seq->n_tokens();
    if (!sched[i].sample) continue;
    const int64_t pos = seq->num_computed;  // == n_tokens(): the sampled token goes right after
    f->out_pos[i] = pos;
    const int32_t r = row++;
    if (f->lookahead && pos + 1 - seq->prompt_len < seq->params.max_tokens && pos + 1 < info.max_model_len) {
      seq->tokens.push_back(0);
      seq->feed_row = r;
      seq->feed_serial = f->serial;
    }
  }
  return f;
}

void Engine::Impl::fit_aux_rows(std::vector<ScheduledSeq>& sched) const {
  int64_t budget = kAuxRowsPerStep;
  size_t w = 0;
  for (size_t i = 0; i < sched.size(); ++i) {
    ScheduledSeq s = sched[i];
    const Sequence& seq = *s.seq;
    if (wants_aux(seq)) {
      const int64_t c = seq.num_computed;
      if (aux_rows(seq, c, s.n_new) > budget) {
        // Rows grow by at most one per token: stop the chunk where the budget ends (last pooling:
        // just before the prompt's end).
        s.n_new = seq.params.pooling == kPoolingLast ? s.n_new - 1 : std::max(c, seq.aux_next) + budget - c;
      }
      if (s.n_new <= 0) continue;  // no room this step: it stays running and waits for the next
      budget -= aux_rows(seq, c, s.n_new);
      s.sample = c + s.n_new == seq.n_tokens() && seq.params.pooling == kPoolingNone;
    }
    sched[w++] = s;
  }
  sched.resize(w);
}

void Engine::Impl::take_aux_rows(const std::vector<ScheduledSeq>& sched,
                                 const std::vector<std::pair<int32_t, int64_t>>& aux, int64_t row0,
                                 const float* step_logits) {
  const int64_t V = info.spec.vocab_size, H = info.spec.hidden_size, n = static_cast<int64_t>(aux.size());
  bool any_lp = false, any_embed = false;
  for (const auto& a : aux) {
    const Sequence& seq = *sched[static_cast<size_t>(a.first)].seq;
    any_lp = any_lp || seq.params.prompt_logprobs >= 0;
    any_embed = any_embed || seq.params.pooling != kPoolingNone;
  }
  if (any_lp) {
    aux_logits.resize(static_cast<size_t>(n * V));
    if (runner) {
      runner->copy_logits(step_logits, row0, n, aux_logits.data());
    } else {
      parallel->copy_logits(step_logits, row0, n, aux_logits.data());
    }
  }
  if (any_embed) {
    aux_hidden.resize(static_cast<size_t>(n * H));
    runner->copy_hidden(row0, n, aux_hidden.data());
  }
  for (int64_t j = 0; j < n; ++j) {
    Sequence& seq = *sched[static_cast<size_t>(aux[j].first)].seq;
    const int64_t p = aux[j].second;
    if (seq.params.prompt_logprobs >= 0) {
      seq.prompt_lps.push_back(prompt_entry(&aux_logits[static_cast<size_t>(j * V)], V,
                                            seq.tokens[static_cast<size_t>(p + 1)], seq.params.prompt_logprobs));
    } else {
      const float* h = &aux_hidden[static_cast<size_t>(j * H)];
      if (seq.pooled.empty() || seq.params.pooling == kPoolingLast) seq.pooled.assign(static_cast<size_t>(H), 0.0);
      for (int64_t d = 0; d < H; ++d) seq.pooled[static_cast<size_t>(d)] += h[d];
    }
    seq.aux_next = p + 1;
  }
}

void Engine::Impl::feed_constraints(const Inflight& f, Inflight* prev, std::vector<char>* skip) {
  int64_t row = 0;
  for (const ScheduledSeq& s : f.sched) {
    if (!s.sample) continue;
    const size_t r = static_cast<size_t>(row++);
    Sequence* seq = s.seq;
    if (seq->params.constraint == nullptr || seq->feed_row < 0) continue;
    ELI_CHECK_KIND(kInternal, prev != nullptr && prev->serial == seq->feed_serial, "a placeholder token without its step");
    collect(*prev);  // its samples were queued before this step's forward pass: ready early
    const size_t pr = static_cast<size_t>(seq->feed_row);
    const size_t n_prev = prev->results.size();
    if (prev->fed.empty()) {
      prev->fed.assign(n_prev, 0);
      prev->fed_done.assign(n_prev, 0);
      prev->fed_error.assign(n_prev, std::string());
    }
    skip->resize(f.sched.size(), 0);
    const bool failed = !prev->errors[pr].empty() || (pr < prev->mask_errors.size() && !prev->mask_errors[pr].empty());
    if (!failed && !prev->fed[pr]) {
      bool done = false;
      prev->fed_error[pr] = constraint_accept(*seq->params.constraint, prev->results[pr].token, &done);
      prev->fed_done[pr] = done ? 1 : 0;
      prev->fed[pr] = 1;
    }
    // The request ends with prev's token (an error, the grammar's end, or a stop token): this
    // step's row is ignored at completion; build no mask for it.
    if (failed || !prev->fed_error[pr].empty() || prev->fed_done[pr] || is_stop_token(*seq, prev->results[pr].token)) {
      (*skip)[r] = 1;
    }
  }
}

void Engine::Impl::collect(Inflight& f) {
  if (!f.pending_on_device) return;
  f.pending_on_device = false;
  const int64_t t0 = trace.enabled() ? StepTrace::now_ns() : 0;
  sampler->collect(&f.results, &f.errors);
  if (trace.enabled()) trace_wait_ns += StepTrace::now_ns() - t0;
}

void Engine::Impl::complete(Inflight& f, std::vector<TokenOutput>& outs) {
  collect(f);
  int64_t row = 0;
  for (size_t i = 0; i < f.sched.size(); ++i) {
    const ScheduledSeq& s = f.sched[i];
    Sequence* seq = s.seq;
    const int64_t r_index = s.sample ? row++ : -1;
    if (seq->state == SeqState::kFinished) continue;  // ended while in flight (kept in `retired`)
    if (!s.sample) {
      scheduler->cache_full_blocks(seq, f.computed_end[i]);
      if (f.embed_end[i]) {
        TokenOutput out;
        out.request_id = seq->id;
        const double scale = seq->params.pooling == kPoolingMean ? 1.0 / static_cast<double>(seq->prompt_len) : 1.0;
        out.embedding.resize(seq->pooled.size());
        for (size_t d = 0; d < seq->pooled.size(); ++d) out.embedding[d] = static_cast<float>(seq->pooled[d] * scale);
        finish(seq, FinishReason::kStop, &out);
        retire(seq->id);
        outs.push_back(std::move(out));
      }
      continue;
    }
    TokenOutput out;
    out.request_id = seq->id;
    const size_t r = static_cast<size_t>(r_index);
    if (r < f.mask_errors.size() && !f.mask_errors[r].empty()) f.errors[r] = f.mask_errors[r];
    if (!f.errors[r].empty()) {
      out.error = f.errors[r];
      finish(seq, FinishReason::kError, &out);
      retire(seq->id);
      outs.push_back(std::move(out));
      continue;
    }
    SampleResult& res = f.results[r];
    out.token = res.token;
    out.logprob = res.logprob;
    out.top_logprobs = std::move(res.top_logprobs);
    if (seq->params.prompt_logprobs >= 0 && f.out_pos[i] == seq->prompt_len) out.prompt_logprobs = std::move(seq->prompt_lps);
    scheduler->cache_full_blocks(seq, f.computed_end[i]);  // after a good sample: never share a poisoned row's blocks
    const int64_t pos = f.out_pos[i];
    if (pos < seq->n_tokens()) {
      seq->tokens[static_cast<size_t>(pos)] = out.token;  // its placeholder
    } else {
      ELI_CHECK_KIND(kInternal, pos == seq->n_tokens(), "sampled token index ", pos, " past ", seq->n_tokens(), " tokens");
      seq->tokens.push_back(out.token);
    }
    if (seq->feed_serial == f.serial) seq->feed_row = -1;
    seq->sampling->append_output(out.token);
    ++counters.generated_tokens;
    bool grammar_done = false;
    if (seq->params.constraint != nullptr) {
      if (!f.fed.empty() && f.fed[r]) {  // the next step fed it already (feed_constraints)
        out.error = f.fed_error[r];
        grammar_done = f.fed_done[r] != 0;
      } else {
        out.error = constraint_accept(*seq->params.constraint, out.token, &grammar_done);
      }
      if (!out.error.empty()) {
        out.token = -1;  // a token the constraint refused is not output
        out.top_logprobs.clear();
        finish(seq, FinishReason::kError, &out);
      }
    }
    if (out.finish != FinishReason::kNone) {
    } else if (grammar_done || is_stop_token(*seq, out.token)) {
      finish(seq, FinishReason::kStop, &out);
    } else if (pos + 1 - seq->prompt_len >= seq->params.max_tokens || pos + 1 >= info.max_model_len) {
      finish(seq, FinishReason::kLength, &out);
    }
    if (out.finish != FinishReason::kNone) retire(seq->id);
    outs.push_back(std::move(out));
  }
  release_retired(f.serial);
}

std::vector<float> Engine::score(const std::vector<int32_t>& ids) {
  Impl& m = *impl_;
  const int64_t V = m.info.spec.vocab_size, B = m.info.block_size;
  const int64_t n = static_cast<int64_t>(ids.size());
  ELI_CHECK_ARG(n > 0, "score needs at least one token");
  ELI_CHECK_ARG(n <= m.info.max_model_len, "cannot score ", n, " tokens: the context length is ", m.info.max_model_len);
  for (int64_t i = 0; i < n; ++i) {
    ELI_CHECK_ARG(ids[i] >= 0 && ids[i] < V, "token ", i, " has id ", ids[i], ", outside the vocabulary [0, ", V, ")");
  }
  std::vector<int32_t> blocks, blocks1;
  const int64_t need = (n + B - 1) / B;
  ELI_CHECK_ARG(m.blocks->allocate(need, &blocks), "scoring ", n, " tokens needs ", need, " free KV blocks; ",
                m.blocks->n_free(), " are free");
  if (m.blocks1 != nullptr && !m.blocks1->allocate(need, &blocks1)) {
    m.blocks->release(blocks);
    ELI_THROW(kInvalidArgument, "scoring ", n, " tokens needs ", need, " free KV blocks of the sliding-window layers; ",
              m.blocks1->n_free(), " are free");
  }
  auto release = [&] {
    m.blocks->release(blocks);
    if (m.blocks1 != nullptr) m.blocks1->release(blocks1);
  };
  std::vector<float> out(static_cast<size_t>(n * V));
  try {
    // Chunks bound the logits workspace: (chunk, V) floats at a time.
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(m.config.max_num_batched_tokens, 256));
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t len = std::min(chunk, n - start);
      Batch b;
      b.max_blocks_per_seq = need;
      b.block_tables = blocks;
      b.block_tables1 = blocks1;
      for (int64_t j = 0; j < len; ++j) {
        const int64_t pos = start + j;
        b.token_ids.push_back(ids[pos]);
        b.positions.push_back(static_cast<int32_t>(pos));
        b.slot_mapping.push_back(static_cast<int32_t>(blocks[pos / B] * B + pos % B));
        if (!blocks1.empty()) b.slot_mapping1.push_back(static_cast<int32_t>(blocks1[pos / B] * B + pos % B));
        b.logits_indices.push_back(static_cast<int32_t>(j));
      }
      b.cu_seqlens.push_back(static_cast<int32_t>(len));
      b.context_lens.push_back(static_cast<int32_t>(start + len));
      if (m.parallel) {
        m.parallel->forward_to_host(b, &out[static_cast<size_t>(start * V)]);
      } else {
        m.runner->forward_to_host(b, *m.kv, &out[static_cast<size_t>(start * V)]);
      }
    }
  } catch (...) {
    release();
    throw;
  }
  release();
  return out;
}

EngineStats Engine::stats() const {
  const Impl& m = *impl_;
  EngineStats s = m.counters;
  s.kv_blocks_total = m.blocks->n_blocks();
  s.kv_blocks_free = m.blocks->n_free();
  if (m.blocks1 != nullptr) {
    s.kv_window_blocks_total = m.blocks1->n_blocks();
    s.kv_window_blocks_free = m.blocks1->n_free();
  }
  s.num_running = m.scheduler->num_running();
  s.num_waiting = m.scheduler->num_waiting();
  s.preemptions = m.scheduler->preemptions();
  s.prefix_cache_hits = m.scheduler->prefix_cache_hits();
  s.prefix_cache_queries = m.scheduler->prefix_cache_queries();
  s.swaps_out = m.scheduler->swaps_out();
  s.swaps_in = m.scheduler->swaps_in();
  s.kv_bytes_to_host = static_cast<int64_t>(m.scheduler->kv_bytes_to_host());
  s.kv_bytes_from_host = static_cast<int64_t>(m.scheduler->kv_bytes_from_host());
  s.host_prefix_hits = m.scheduler->host_prefix_hits();
  s.disk_prefix_hits = m.scheduler->disk_prefix_hits();
  s.kv_bytes_to_disk = static_cast<int64_t>(m.scheduler->kv_bytes_to_disk());
  s.kv_bytes_from_disk = static_cast<int64_t>(m.scheduler->kv_bytes_from_disk());
  return s;
}

MemoryStats Engine::memory_stats() const { return impl_->device->memory_stats(); }

}  // namespace eli
