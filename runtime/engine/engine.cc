// runtime/engine/engine.cc: the Engine: model loading, memory planning, admission, and the step
// loop body (schedule -> batch -> forward -> sample -> outputs).
//
// Invariants: requests_ holds every request that has not yet reported its end; a request's blocks
// are released in the same call that reports its end (finish, abort or error); the KV pool and the
// workspace are sized once at construction.
#include "eli/engine.h"

#include <algorithm>
#include <map>
#include <random>

#include "eli/batch.h"
#include "eli/error.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"
#include "runtime/engine/device_sampler.h"
#include "runtime/engine/memory_plan.h"
#include "runtime/engine/scheduler.h"
#include "runtime/kv/kv_cache.h"
#include "runtime/model/model_files.h"
#include "runtime/model/transformer.h"

namespace eli {

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

struct Engine::Impl {
  EngineConfig config;
  EngineInfo info;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Device> device;
  std::unique_ptr<Transformer> model;
  std::unique_ptr<KvCache> kv;
  std::unique_ptr<BlockPool> blocks;
  std::unique_ptr<Scheduler> scheduler;
  Sampler sampler;
  std::unique_ptr<DeviceSampler> device_sampler;  // device models: sampling next to the logits
  std::map<int64_t, std::unique_ptr<Sequence>> requests;
  std::vector<TokenOutput> pending;  // ends reported by abort_request(), delivered by the next step()
  std::vector<float> logits;         // (n_logits, V)
  std::mt19937_64 seed_rng;
  int64_t next_id = 0;
  EngineStats counters;

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
  m.config = config;
  validate_memory_config(config);
  m.seed_rng.seed(config.seed != 0 ? config.seed : std::random_device{}());
  DeviceId dev = parse_device(config.device);
  // create_device throws kNotCompiled for CUDA in a CPU-only build and kDevice for a missing GPU.
  m.device = create_device(dev);
  // Kernels launch on the current CUDA device, which nothing sets yet: only cuda:0 for now.
  ELI_CHECK_KIND(kUnsupported, dev.kind != DeviceKind::kCUDA || dev.index == 0, "model execution on ",
                 config.device, " is not supported yet; use device=\"cuda:0\"");
  const bool on_device = dev.kind != DeviceKind::kCPU;
  m.pool = std::make_unique<ThreadPool>(config.n_threads);

  ModelFiles files = open_model_files(config.model);
  DType wdtype = choose_weight_dtype(config.dtype, files, dev);
  DType kv_dtype = choose_kv_cache_dtype(config.kv_cache_dtype, wdtype, dev);
  // The device budget is taken before anything is uploaded: free + held now is what eli can get.
  MemoryBudget budget;
  if (on_device) budget = plan_memory_budget(config, *m.device);
  WeightLoadOptions opt;
  opt.matrix_dtype = wdtype;
  opt.gguf_llama_permuted = files.gguf_llama_permuted;
  opt.pool = m.pool.get();
  TransformerWeights weights = load_transformer_weights(files.spec, files.weights, files.name_of, opt);
  if (on_device) {
    // Weights over the budget fail here, with the numbers, before any upload; the allocator's
    // budget then bounds the upload, the workspaces and the KV cache.
    check_weights_fit(budget, estimate_device_weight_bytes(weights));
    apply_pool_budget(*m.device, budget);
  }

  m.info.spec = files.spec;
  m.info.format = files.format;
  m.info.weight_dtype = dtype_name(wdtype);
  m.info.device = device_name(dev);
  m.info.n_params = weights.n_params;
  m.info.n_threads = m.pool->n_threads();
  m.model = std::make_unique<Transformer>(files.spec, std::move(weights), m.pool.get(), m.device.get());
  if (on_device) {
    // Sampling on the device (its buffers are sized once, before the KV pool is planned): the
    // logits never travel to the host.
    m.device_sampler = std::make_unique<DeviceSampler>(*m.device, config.max_num_seqs, files.spec.vocab_size);
  }

  KvPlan plan;
  EngineMemoryInfo& mem = m.info.memory;
  mem.total_bytes = m.device->total_bytes();
  if (on_device) {
    // Workspaces for the largest step, reserved before the KV pool takes what is left. Logits
    // rows: max_num_seqs per step, or one score() chunk (min(max_num_batched_tokens, 256) rows).
    const int64_t max_logits =
        std::max<int64_t>(config.max_num_seqs, std::min<int64_t>(config.max_num_batched_tokens, 256));
    mem.workspace_bytes = m.model->reserve_workspace(config.max_num_batched_tokens, max_logits);
    mem.weights_bytes = m.model->device_weight_bytes();
    check_weights_fit(budget, mem.weights_bytes);
    // Blocks freed while the workspaces grew are garbage now: give them back before measuring.
    if (PooledDevice* pooled = as_pooled(*m.device)) pooled->pool().release_cached();
    plan = plan_device_kv_cache(config, files.spec, budget, *m.device, mem.weights_bytes, mem.workspace_bytes, kv_dtype);
    mem.budget_bytes = budget.budget_bytes;
    mem.headroom_bytes = budget.headroom_bytes;
  } else {
    plan = plan_kv_cache(config, files.spec, *m.device);
  }
  m.kv = std::make_unique<KvCache>(*m.device, plan.shape);
  mem.kv_bytes = m.kv->nbytes();
  m.blocks = std::make_unique<BlockPool>(plan.shape.n_blocks);
  m.info.max_model_len = plan.max_model_len;
  m.info.block_size = plan.shape.block_size;
  m.info.num_kv_blocks = plan.shape.n_blocks;
  m.info.kv_cache_dtype = dtype_name(plan.shape.dtype);
  m.model->set_graphs_enabled(config.enable_cuda_graphs);
  SchedulerConfig sc;
  sc.block_size = plan.shape.block_size;
  sc.max_num_seqs = config.max_num_seqs;
  sc.max_num_batched_tokens = config.max_num_batched_tokens;
  sc.enable_chunked_prefill = config.enable_chunked_prefill;
  sc.enable_prefix_caching = config.enable_prefix_caching;
  m.scheduler = std::make_unique<Scheduler>(sc, *m.blocks);
}

Engine::~Engine() = default;

const EngineInfo& Engine::info() const { return impl_->info; }

int64_t Engine::add_request(const std::vector<int32_t>& prompt, const SamplingParams& params) {
  Impl& m = *impl_;
  const int64_t V = m.info.spec.vocab_size;
  ELI_CHECK(!prompt.empty(), "the prompt is empty");
  for (size_t i = 0; i < prompt.size(); ++i) {
    ELI_CHECK(prompt[i] >= 0 && prompt[i] < V, "prompt token ", i, " has id ", prompt[i],
              ", outside the vocabulary [0, ", V, ")");
  }
  validate_sampling_params(params, V);
  const int64_t n = static_cast<int64_t>(prompt.size());
  const int64_t total = n + params.max_tokens;
  ELI_CHECK(total <= m.info.max_model_len, "the prompt (", n, " tokens) plus max_tokens (", params.max_tokens,
            ") is ", total, " tokens, more than the context length of ", m.info.max_model_len);
  const int64_t need = m.scheduler->blocks_for(total);
  ELI_CHECK(need <= m.blocks->n_blocks(), "the request needs ", need, " KV blocks but the pool has only ",
            m.blocks->n_blocks(), "; raise kv_cache_bytes or num_kv_blocks");

  auto seq = std::make_unique<Sequence>();
  seq->id = m.next_id++;
  seq->tokens = prompt;
  seq->prompt_len = n;
  seq->params = params;
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
  m.requests.erase(it);
  m.pending.push_back(out);
}

bool Engine::has_unfinished() const { return !impl_->requests.empty() || !impl_->pending.empty(); }

std::vector<TokenOutput> Engine::step() {
  Impl& m = *impl_;
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
  std::vector<ScheduledSeq> sched = m.scheduler->schedule();
  if (sched.empty()) return outs;
  ++m.counters.steps;

  const int64_t B = m.info.block_size, V = m.info.spec.vocab_size;
  Batch batch;
  int64_t max_blocks = 0;
  for (const ScheduledSeq& s : sched) max_blocks = std::max<int64_t>(max_blocks, s.seq->blocks.size());
  batch.max_blocks_per_seq = max_blocks;
  batch.block_tables.assign(static_cast<size_t>(max_blocks * sched.size()), 0);
  for (size_t i = 0; i < sched.size(); ++i) {
    const Sequence& seq = *sched[i].seq;
    for (int64_t j = 0; j < sched[i].n_new; ++j) {
      const int64_t pos = seq.num_computed + j;
      batch.token_ids.push_back(seq.tokens[static_cast<size_t>(pos)]);
      batch.positions.push_back(static_cast<int32_t>(pos));
      batch.slot_mapping.push_back(static_cast<int32_t>(seq.blocks[static_cast<size_t>(pos / B)] * B + pos % B));
    }
    batch.cu_seqlens.push_back(static_cast<int32_t>(batch.token_ids.size()));
    batch.context_lens.push_back(static_cast<int32_t>(seq.num_computed + sched[i].n_new));
    std::copy(seq.blocks.begin(), seq.blocks.end(), batch.block_tables.begin() + i * max_blocks);
    if (sched[i].sample) batch.logits_indices.push_back(batch.cu_seqlens.back() - 1);
  }
  // Sampling: on the device next to the logits (device models), else the host Sampler.
  std::vector<SampleResult> dev_results;
  std::vector<std::string> dev_errors;
  if (m.device_sampler != nullptr) {
    std::vector<const SamplingParams*> ps;
    std::vector<SequenceSamplingState*> ss;
    for (const ScheduledSeq& s : sched) {
      if (!s.sample) continue;
      ps.push_back(&s.seq->params);
      ss.push_back(s.seq->sampling.get());
    }
    float* d_logits = m.model->forward_on_device(batch, *m.kv);
    if (!ps.empty()) m.device_sampler->sample(d_logits, batch.n_logits(), V, ps, ss, &dev_results, &dev_errors);
  } else {
    m.logits.resize(static_cast<size_t>(batch.n_logits() * V));
    m.model->forward(batch, *m.kv, m.logits.data());
  }

  int64_t row = 0;
  for (const ScheduledSeq& s : sched) {
    Sequence* seq = s.seq;
    seq->num_computed += s.n_new;
    if (!s.sample) {
      m.scheduler->cache_full_blocks(seq);
      continue;
    }
    const int64_t r_index = row++;
    TokenOutput out;
    out.request_id = seq->id;
    try {
      SampleResult r;
      if (m.device_sampler != nullptr) {
        if (!dev_errors[static_cast<size_t>(r_index)].empty()) {
          ELI_THROW(kInvalidArgument, dev_errors[static_cast<size_t>(r_index)]);
        }
        r = std::move(dev_results[static_cast<size_t>(r_index)]);
      } else {
        r = m.sampler.sample(&m.logits[static_cast<size_t>(r_index * V)], V, seq->params, *seq->sampling);
      }
      out.token = r.token;
      out.logprob = r.logprob;
      out.top_logprobs = std::move(r.top_logprobs);
    } catch (const Error& e) {
      // A poisoned row (non-finite logits) fails this request only.
      out.error = e.what();
      m.finish(seq, FinishReason::kError, &out);
      m.requests.erase(seq->id);
      outs.push_back(std::move(out));
      continue;
    }
    m.scheduler->cache_full_blocks(seq);  // after a good sample: never share a poisoned row's blocks
    seq->tokens.push_back(out.token);
    seq->sampling->append_output(out.token);
    ++m.counters.generated_tokens;
    if (m.is_stop_token(*seq, out.token)) {
      m.finish(seq, FinishReason::kStop, &out);
    } else if (seq->n_generated() >= seq->params.max_tokens || seq->n_tokens() >= m.info.max_model_len) {
      m.finish(seq, FinishReason::kLength, &out);
    }
    const int64_t id = seq->id;
    if (out.finish != FinishReason::kNone) m.requests.erase(id);
    outs.push_back(std::move(out));
  }
  return outs;
}

std::vector<float> Engine::score(const std::vector<int32_t>& ids) {
  Impl& m = *impl_;
  const int64_t V = m.info.spec.vocab_size, B = m.info.block_size;
  const int64_t n = static_cast<int64_t>(ids.size());
  ELI_CHECK(n > 0, "score needs at least one token");
  ELI_CHECK(n <= m.info.max_model_len, "cannot score ", n, " tokens: the context length is ", m.info.max_model_len);
  for (int64_t i = 0; i < n; ++i) {
    ELI_CHECK(ids[i] >= 0 && ids[i] < V, "token ", i, " has id ", ids[i], ", outside the vocabulary [0, ", V, ")");
  }
  std::vector<int32_t> blocks;
  const int64_t need = (n + B - 1) / B;
  ELI_CHECK(m.blocks->allocate(need, &blocks), "scoring ", n, " tokens needs ", need, " free KV blocks; ",
            m.blocks->n_free(), " are free");
  std::vector<float> out(static_cast<size_t>(n * V));
  try {
    // Chunks bound the logits workspace: (chunk, V) floats at a time.
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(m.config.max_num_batched_tokens, 256));
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t len = std::min(chunk, n - start);
      Batch b;
      b.max_blocks_per_seq = need;
      b.block_tables = blocks;
      for (int64_t j = 0; j < len; ++j) {
        const int64_t pos = start + j;
        b.token_ids.push_back(ids[pos]);
        b.positions.push_back(static_cast<int32_t>(pos));
        b.slot_mapping.push_back(static_cast<int32_t>(blocks[pos / B] * B + pos % B));
        b.logits_indices.push_back(static_cast<int32_t>(j));
      }
      b.cu_seqlens.push_back(static_cast<int32_t>(len));
      b.context_lens.push_back(static_cast<int32_t>(start + len));
      m.model->forward(b, *m.kv, &out[static_cast<size_t>(start * V)]);
    }
  } catch (...) {
    m.blocks->release(blocks);
    throw;
  }
  m.blocks->release(blocks);
  return out;
}

EngineStats Engine::stats() const {
  const Impl& m = *impl_;
  EngineStats s = m.counters;
  s.kv_blocks_total = m.blocks->n_blocks();
  s.kv_blocks_free = m.blocks->n_free();
  s.num_running = m.scheduler->num_running();
  s.num_waiting = m.scheduler->num_waiting();
  s.preemptions = m.scheduler->preemptions();
  s.prefix_cache_hits = m.scheduler->prefix_cache_hits();
  s.prefix_cache_queries = m.scheduler->prefix_cache_queries();
  return s;
}

MemoryStats Engine::memory_stats() const { return impl_->device->memory_stats(); }

}  // namespace eli
