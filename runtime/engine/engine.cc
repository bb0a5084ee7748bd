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
#include "eli/engine.h"

#include <algorithm>
#include <map>
#include <random>

#include "runtime/runner/batch.h"
#include "eli/error.h"
#include "runtime/core/phase_timer.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"
#include "runtime/engine/device_sampler.h"
#include "runtime/engine/memory_plan.h"
#include "runtime/engine/scheduler.h"
#include "runtime/engine/step_trace.h"
#include "runtime/kv/kv_cache.h"
#include "runtime/model/model.h"
#include "runtime/model/model_files.h"
#include "runtime/model/weight_reader.h"
#include "runtime/runner/model_runner.h"

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
  std::unique_ptr<ModelRunner> runner;
  std::unique_ptr<KvCache> kv;
  std::unique_ptr<BlockPool> blocks;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<DeviceSampler> device_sampler;  // Op::kSample next to the logits, on the model's device
  bool on_device = false;                         // the model runs on a GPU (device logits, async sampling)
  std::map<int64_t, std::unique_ptr<Sequence>> requests;
  std::vector<TokenOutput> pending;  // ends reported by abort_request(), delivered by the next step()
  std::vector<float> logits;         // (n_logits, V)
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
    bool lookahead = false;             // placeholders appended: the next step may launch first
    bool pending_on_device = false;     // results still to collect from the DeviceSampler
    std::vector<SampleResult> results;  // per sampled row, once collected
    std::vector<std::string> errors;
  };
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
  validate_memory_config(config);
  m.seed_rng.seed(config.seed != 0 ? config.seed : std::random_device{}());
  DeviceId dev = parse_device(resolve_device_name(config.device));  // "auto": CUDA when visible
  // create_device throws kNotCompiled for CUDA in a CPU-only build and kDevice for a missing GPU.
  m.device = create_device(dev);
  const bool on_device = dev.kind != DeviceKind::kCPU;
  m.pool = std::make_unique<ThreadPool>(config.n_threads);
  trace.mark("device + threads");

  ModelFiles files = open_model_files(config.model);
  DType wdtype = choose_weight_dtype(config.dtype, files, dev);
  DType kv_dtype = choose_kv_cache_dtype(config.kv_cache_dtype, wdtype, dev);
  // The device budget is taken before anything is uploaded: free + held now is what eli can get.
  MemoryBudget budget;
  if (on_device) budget = plan_memory_budget(config, *m.device);
  trace.mark("open files");
  ModelLoadOptions opt;
  opt.compute_dtype = wdtype;
  opt.device = dev.kind;
  opt.gguf_llama_permuted = files.gguf_llama_permuted;
  opt.defer_merges = on_device;  // merges that need no conversion happen in the upload
  opt.pool = m.pool.get();
  std::unique_ptr<Model> model = create_model(files.spec, WeightReader(files.weights, files.name_of), opt);
  if (on_device) {
    // Weights over the budget fail here, with the numbers, before any upload; the allocator's
    // budget then bounds the upload, the workspaces and the KV cache.
    check_weights_fit(budget, model->weights().placed_bytes());
    apply_pool_budget(*m.device, budget);
  }
  trace.mark("host weights");

  m.info.spec = files.spec;
  m.info.format = files.format;
  m.info.weight_dtype = dtype_name(wdtype);
  m.info.device = device_name(dev);
  m.info.n_params = model->weights().n_params();
  m.info.n_threads = m.pool->n_threads();
  m.runner = std::make_unique<ModelRunner>(*m.device, std::move(model), m.pool.get());
  if (trace.enabled()) {
    if (on_device) trace.mark("upload", trace.bytes_and_rate(m.runner->weight_bytes()));
    else trace.mark("place weights");
  }
  // Sampling on the model's device (its buffers are sized once, before the KV pool is planned): on
  // a GPU the logits never travel to the host; on the CPU the rows are sampled on the thread pool.
  m.on_device = on_device;
  m.device_sampler =
      std::make_unique<DeviceSampler>(*m.device, config.max_num_seqs, files.spec.vocab_size, 0, m.pool.get());
  trace.mark("sampler");

  KvPlan plan;
  EngineMemoryInfo& mem = m.info.memory;
  mem.total_bytes = m.device->total_bytes();
  if (on_device) {
    // Workspaces for the largest step, reserved before the KV pool takes what is left. Logits
    // rows: max_num_seqs per step, or one score() chunk (min(max_num_batched_tokens, 256) rows).
    const int64_t max_logits =
        std::max<int64_t>(config.max_num_seqs, std::min<int64_t>(config.max_num_batched_tokens, 256));
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
  }
  plan.shape.quantized_query_dtype = on_device ? wdtype : DType::kF32;  // an int8/fp8 cache's queries
  m.kv = std::make_unique<KvCache>(*m.device, plan.shape);
  mem.kv_bytes = m.kv->nbytes();
  trace.mark("kv pool");
  m.blocks = std::make_unique<BlockPool>(plan.shape.n_blocks);
  m.info.max_model_len = plan.max_model_len;
  m.info.block_size = plan.shape.block_size;
  m.info.num_kv_blocks = plan.shape.n_blocks;
  m.info.kv_cache_dtype = dtype_name(plan.shape.dtype);
  m.runner->set_graphs_enabled(config.enable_cuda_graphs);
  ELI_CHECK_ARG(config.async_scheduling >= -1 && config.async_scheduling <= 1,
                "async_scheduling must be -1 (auto), 0 or 1, got ", config.async_scheduling);
  m.async_scheduling = config.async_scheduling == 1 || (config.async_scheduling == -1 && on_device);
  SchedulerConfig sc;
  sc.block_size = plan.shape.block_size;
  sc.max_num_seqs = config.max_num_seqs;
  sc.max_num_batched_tokens = config.max_num_batched_tokens;
  sc.enable_chunked_prefill = config.enable_chunked_prefill;
  sc.enable_prefix_caching = config.enable_prefix_caching;
  m.scheduler = std::make_unique<Scheduler>(sc, *m.blocks);
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
  const int64_t n = static_cast<int64_t>(prompt.size());
  const int64_t total = n + params.max_tokens;
  ELI_CHECK_ARG(total <= m.info.max_model_len, "the prompt (", n, " tokens) plus max_tokens (", params.max_tokens,
                ") is ", total, " tokens, more than the context length of ", m.info.max_model_len);
  const int64_t need = m.scheduler->blocks_for(total);
  ELI_CHECK_ARG(need <= m.blocks->n_blocks(), "the request needs ", need, " KV blocks but the pool has only ",
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
      if (m.device_sampler) m.device_sampler->drop_pending();
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
  if (on_device) feed.src = device_sampler->device_tokens();
  int64_t max_blocks = 0;
  for (const ScheduledSeq& s : sched) max_blocks = std::max<int64_t>(max_blocks, s.seq->blocks.size());
  batch.max_blocks_per_seq = max_blocks;
  batch.block_tables.assign(static_cast<size_t>(max_blocks * sched.size()), 0);
  std::vector<const SamplingParams*> ps;
  std::vector<SequenceSamplingState*> ss;
  std::vector<int64_t> draw_offsets;
  for (size_t i = 0; i < sched.size(); ++i) {
    const Sequence& seq = *sched[i].seq;
    for (int64_t j = 0; j < sched[i].n_new; ++j) {
      const int64_t pos = seq.num_computed + j;
      int32_t token = seq.tokens[static_cast<size_t>(pos)];
      if (seq.feed_row >= 0 && pos == seq.n_tokens() - 1) {
        // A placeholder: the previous (launched, not completed) step samples this token.
        ELI_CHECK_KIND(kInternal, prev != nullptr && prev->serial == seq.feed_serial,
                       "a placeholder token without its step");
        if (on_device) {
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
    }
    batch.cu_seqlens.push_back(static_cast<int32_t>(batch.token_ids.size()));
    batch.context_lens.push_back(static_cast<int32_t>(seq.num_computed + sched[i].n_new));
    std::copy(seq.blocks.begin(), seq.blocks.end(), batch.block_tables.begin() + i * max_blocks);
    if (sched[i].sample) {
      batch.logits_indices.push_back(batch.cu_seqlens.back() - 1);
      ps.push_back(&seq.params);
      ss.push_back(seq.sampling.get());
      // The sampled token's index in the request's outputs: what precedes it, placeholders included.
      draw_offsets.push_back(seq.num_computed + sched[i].n_new - seq.prompt_len);
    }
  }
  const int64_t n_rows = static_cast<int64_t>(ps.size());
  bool no_penalties = true;
  for (const SamplingParams* p : ps) {
    no_penalties = no_penalties && p->repetition_penalty == 1.0 && p->presence_penalty == 0.0 && p->frequency_penalty == 0.0;
  }
  f->lookahead = async_scheduling && n_rows > 0 &&
                 (on_device ? device_sampler->can_launch_async(ps) : no_penalties);

  // Sampling next to the logits: asynchronously on a GPU when it can, else one synchronous call.
  if (on_device) {
    float* d_logits = runner->forward(batch, *kv, feed.dst_index.empty() ? nullptr : &feed);
    if (n_rows > 0) {
      if (f->lookahead) {
        device_sampler->launch_async(d_logits, n_rows, V, ps, ss, draw_offsets);
        f->pending_on_device = true;
      } else {
        if (prev != nullptr) collect(*prev);  // sample() needs nothing queued
        device_sampler->sample(d_logits, n_rows, V, ps, ss, &f->results, &f->errors, &draw_offsets);
      }
    }
  } else {
    logits.resize(static_cast<size_t>(batch.n_logits() * V));
    runner->forward_to_host(batch, *kv, logits.data());
    // A poisoned row (non-finite logits) fails its request only (an error string per row).
    device_sampler->sample(logits.data(), n_rows, V, ps, ss, &f->results, &f->errors, &draw_offsets);
  }

  // The step is queued: advance, and give each sequence that will go on a placeholder.
  f->computed_end.resize(sched.size());
  f->out_pos.assign(sched.size(), -1);
  int32_t row = 0;
  for (size_t i = 0; i < sched.size(); ++i) {
    Sequence* seq = sched[i].seq;
    seq->num_computed += sched[i].n_new;
    f->computed_end[i] = seq->num_computed;
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

void Engine::Impl::collect(Inflight& f) {
  if (!f.pending_on_device) return;
  f.pending_on_device = false;
  const int64_t t0 = trace.enabled() ? StepTrace::now_ns() : 0;
  device_sampler->collect(&f.results, &f.errors);
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
      continue;
    }
    TokenOutput out;
    out.request_id = seq->id;
    const size_t r = static_cast<size_t>(r_index);
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
    if (is_stop_token(*seq, out.token)) {
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
  std::vector<int32_t> blocks;
  const int64_t need = (n + B - 1) / B;
  ELI_CHECK_ARG(m.blocks->allocate(need, &blocks), "scoring ", n, " tokens needs ", need, " free KV blocks; ",
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
      m.runner->forward_to_host(b, *m.kv, &out[static_cast<size_t>(start * V)]);
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
