// runtime/engine/model_load.cc: see model_load.h.
#include "runtime/engine/model_load.h"

#include <algorithm>
#include <utility>

#include "eli/error.h"
#include "runtime/model/weight_reader.h"
#include "runtime/runner/model_runner.h"
#include "runtime/runner/offload_compute.h"

namespace eli {

namespace {

// Each GPU rank's budget: its device's (plan_memory_budget, taken on a Device of that GPU before
// any rank uploads), split evenly among the ranks that share the GPU.
std::vector<MemoryBudget> rank_memory_budgets(const EngineConfig& config, const std::vector<DeviceId>& devices,
                                              DeviceId engine_dev, const MemoryBudget& engine_budget) {
  std::vector<std::pair<DeviceId, MemoryBudget>> share;  // one probe per distinct GPU
  auto find = [&](DeviceId d) {
    return std::find_if(share.begin(), share.end(), [&](const auto& e) { return e.first == d; });
  };
  for (const DeviceId& d : devices) {
    if (find(d) != share.end()) continue;
    MemoryBudget b = engine_budget;
    if (!(d == engine_dev)) {
      const DeviceScope keep(engine_dev);  // creating a CUDA device makes it current: undone after
      const std::unique_ptr<Device> probe = create_device(d);
      b = plan_memory_budget(config, *probe);
    }
    share.emplace_back(d, split_budget(b, static_cast<int>(std::count(devices.begin(), devices.end(), d))));
  }
  std::vector<MemoryBudget> out;
  for (const DeviceId& d : devices) out.push_back(find(d)->second);
  return out;
}

// The CPU stage of weight offloading: a two-stage pipeline, the first L.compute.cpu_layers layers
// (and the embedding) on the CPU in host memory, the rest and the logits on the engine's device
// with its whole budget. The CPU rank holds 16-bit matrices as the CPU backend does (f16 as f32)
// and takes all threads but one (the GPU rank's host work is launches).
void build_cpu_stage(const ModelLoadOptions& opt, LoadedModel& L) {
  const DeviceId cpu{DeviceKind::kCPU, 0};
  StageLayout layout;
  layout.stage_layers = {L.compute.cpu_layers, L.files.spec.n_layers - L.compute.cpu_layers};
  layout.compute_dtypes = {L.weight_dtype == DType::kF16 ? DType::kF32 : L.weight_dtype, L.weight_dtype};
  const int threads = L.pool->n_threads();
  if (L.on_device) layout.rank_threads = {std::max(1, threads - 1), 1};
  std::vector<uint64_t> pool_budgets;
  if (L.on_device) {
    L.rank_budgets = {L.budget, L.budget};  // the CPU rank's is not used (host ranks plan no device KV)
    pool_budgets = {0, L.budget.pool_budget_bytes()};
  }
  L.parallel = std::make_unique<ParallelRunner>(L.files, opt, 1, 2, threads, std::vector<DeviceId>{cpu, L.dev},
                                                pool_budgets, layout);
  if (L.on_device) check_weights_fit(L.budget, L.parallel->runner(1).weight_bytes());
}

}  // namespace

LoadedModel load_model_for(const EngineConfig& config, int64_t aux_rows, PhaseTimer& trace, bool build_ranks) {
  LoadedModel L;
  validate_memory_config(config);
  L.dev = parse_device(resolve_device_name(config.device));  // "auto": CUDA when visible
  L.par = plan_parallel(config, L.dev);  // ranks and their devices, checked before any is made
  // create_device throws kNotCompiled for CUDA in a CPU-only build and kDevice for a missing GPU.
  L.device = create_device(L.dev);
  L.on_device = L.dev.kind != DeviceKind::kCPU;
  L.pool = std::make_unique<ThreadPool>(config.n_threads);
  trace.mark("device + threads");

  L.files = open_model_files(config.model);
  L.weight_dtype = choose_weight_dtype(config.dtype, L.files, L.dev);
  L.kv_dtype = choose_kv_cache_dtype(config.kv_cache_dtype, L.weight_dtype, L.dev);
  // The device budget is taken before anything is uploaded: free + held now is what eli can get.
  if (L.on_device) L.budget = plan_memory_budget(config, *L.device);
  trace.mark("open files");
  ModelLoadOptions opt;
  opt.compute_dtype = L.weight_dtype;
  opt.device = L.dev.kind;
  opt.gguf_llama_permuted = L.files.gguf_llama_permuted;
  // Merges that need no conversion happen in the upload; with offloading also on the CPU, so that
  // an offloaded layer's image can be read from the file (the disk tier).
  const bool offload_asked = offload_requested(config);
  opt.defer_merges = L.on_device || offload_asked;
  opt.pool = L.pool.get();
  WeightReader reader(L.files.weights, L.files.name_of);
  reader.set_quant(
      resolve_quantization(config.quantization, L.files.quant, L.files.format == "safetensors", config.model));
  // Parallelism: tp x pp ranks, each loading only its shard (runtime/parallel).
  check_shardable(L.files.spec, L.par.tp, L.par.pp);
  if (L.par.world() > 1) {
    ELI_CHECK_KIND(kUnsupported, !reader.quant().quantized(),
                   "tensor / pipeline parallelism does not shard Hugging Face quantized checkpoints (AWQ, GPTQ, "
                   "compressed-tensors, fp8) yet; run them with tensor_parallel_size = pipeline_parallel_size = 1");
    ELI_CHECK_KIND(kUnsupported, !offload_asked,
                   "weight offloading (offload / cpu_offload_gb / offload_map) does not combine with tensor / "
                   "pipeline parallelism yet");
    std::vector<uint64_t> pool_budgets;
    if (L.on_device) {
      L.rank_budgets = rank_memory_budgets(config, L.par.devices, L.dev, L.budget);
      for (const MemoryBudget& b : L.rank_budgets) pool_budgets.push_back(b.pool_budget_bytes());
    }
    L.parallel = std::make_unique<ParallelRunner>(L.files, opt, L.par.tp, L.par.pp, L.pool->n_threads(),
                                                  L.par.devices, pool_budgets);
    for (size_t r = 0; r < L.rank_budgets.size(); ++r) {
      check_weights_fit(L.rank_budgets[r], L.parallel->runner(static_cast<int>(r)).weight_bytes());
    }
  } else {
    L.model = create_model(L.files.spec, reader, opt);
  }
  // Logits rows a step may want: max_num_seqs, or one score() chunk (min(max_num_batched_tokens,
  // 256) rows), plus the aux rows.
  L.max_logits = std::max<int64_t>(config.max_num_seqs, std::min<int64_t>(config.max_num_batched_tokens, 256)) +
                 aux_rows;
  // Weight offloading: which layers stay on the device (runtime/runner/offload_plan.h), and
  // whether the CPU computes the offloaded ones (runtime/runner/offload_compute.h).
  const OffloadComputeMode compute_mode = parse_offload_compute(config.offload_compute);
  if (offload_asked) {
    L.offload = plan_offload(L.model->weights(),
                             offload_request(config, *L.model, L.budget, L.dev.kind, L.kv_dtype, L.max_logits));
  }
  if (L.offload.active()) {
    OffloadRates rates;
    if (compute_mode == OffloadComputeMode::kAuto && L.on_device) rates = measure_offload_rates(*L.device, *L.pool);
    L.compute = choose_offload_compute(compute_mode, L.offload, L.files.spec, L.dev.kind, rates, config.max_num_seqs,
                                       !config.offload_map.empty());
    trace.mark("offload compute choice");
  }
  if (L.compute.cpu_layers > 0) {
    ELI_CHECK_KIND(kUnsupported, !reader.quant().quantized(),
                   "offload_compute=cpu does not run Hugging Face quantized checkpoints (AWQ, GPTQ, "
                   "compressed-tensors, fp8) yet; use offload_compute=stream");
    L.model.reset();
    if (build_ranks) build_cpu_stage(opt, L);
  }
  if (L.on_device && L.model != nullptr) {
    // Weights over the budget fail here, with the numbers, before any upload; the allocator's
    // budget then bounds the upload, the workspaces and the KV cache.
    check_weights_fit(L.budget, L.offload.active() ? L.offload.resident_bytes + L.offload.ring_bytes()
                                                   : L.model->weights().placed_bytes());
  }
  trace.mark("host weights");
  return L;
}

WeightPlacementReport plan_weight_placement(const EngineConfig& config) {
  PhaseTimer trace("ELI_LOAD_TRACE", "plan");
  const LoadedModel L = load_model_for(config, /*aux_rows=*/0, trace, /*build_ranks=*/false);
  WeightPlacementReport r;
  r.device = device_name(L.dev);
  r.budget_bytes = L.budget.budget_bytes;
  const OffloadPlan& p = L.offload;
  if (L.compute.cpu_layers > 0) {  // the CPU stage: as the streaming plan sized it, without a ring
    r.placement = describe_cpu_stage(L.compute, L.files.spec.n_layers, r.device);
    r.resident_bytes = p.resident_bytes;
    r.host_bytes = L.compute.cpu_bytes;
    r.n_layers = L.files.spec.n_layers;
    r.offloaded_layers = r.cpu_layers = L.compute.cpu_layers;
    return r;
  }
  ELI_CHECK_KIND(kUnsupported, L.model != nullptr, "the placement plan of tensor / pipeline-parallel ranks is not reported yet");
  r.placement = p.describe(r.device) + (L.compute.reason.empty() ? "" : "; " + L.compute.reason);
  r.resident_bytes = p.active() ? p.resident_bytes : L.model->weights().placed_bytes();
  r.ring_bytes = p.ring_bytes();
  r.host_bytes = p.host_bytes;
  r.disk_bytes = p.disk_bytes;
  r.n_layers = static_cast<int64_t>(L.model->weights().layer_image_bytes().size());
  r.offloaded_layers = static_cast<int64_t>(p.tier_of_layer.size());
  return r;
}

}  // namespace eli
