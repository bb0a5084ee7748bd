// runtime/engine/memory_plan.cc: see memory_plan.h.
#include "runtime/engine/memory_plan.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "eli/error.h"
#include "runtime/device/device.h"
#include "runtime/device/host_memory.h"
#include "runtime/kv/kv_groups.h"
#include "runtime/model/model.h"
#include "runtime/model/model_files.h"

namespace eli {

namespace {

DType embedding_dtype(const ModelFiles& files) {
  auto it = files.weights->tensors().find(files.name_of("model.embed_tokens.weight"));
  return it == files.weights->tensors().end() ? DType::kF32 : it->second.dtype;
}

// Whether any 2-D tensor (a matrix) is stored block-quantized (a GGUF Q* type).
bool has_quantized_matrix(const ModelFiles& files) {
  for (const auto& [name, t] : files.weights->tensors()) {
    if (t.shape.size() == 2 && dtype_info(t.dtype).is_quantized) return true;
  }
  return false;
}

}  // namespace

DType choose_weight_dtype(const std::string& requested, const ModelFiles& files, DeviceId device) {
  if (device.kind == DeviceKind::kCUDA) {
    if (requested.empty() || requested == "auto") {
      // CUDA: the checkpoint's own precision when it is f32 or f16 (as vLLM's "auto"); bf16 for
      // bf16 and for block-quantized GGUF tensors (dequantized at load). f32 activations always.
      const DType e = embedding_dtype(files);
      return e == DType::kF32 || e == DType::kF16 ? e : DType::kBF16;
    }
    DType d = parse_dtype(requested);
    ELI_CHECK_KIND(kUnsupported, d == DType::kF32 || d == DType::kBF16 || d == DType::kF16, "dtype ", requested,
                   " is not supported on the CUDA backend; use bfloat16, float16 or float32");
    return d;
  }
  if (requested.empty() || requested == "auto") {
    // CPU: bf16 checkpoints stay bf16 (half the bytes per token). Block-quantized GGUF matrices are
    // dequantized at load (until native quantized kernels exist): bf16 holds them in half the
    // memory of f32 and decodes faster; its 8-bit mantissa rounds the dequantized values by at most
    // 2^-8 relative, far below the quantization error itself. f32 and f16 checkpoints run in f32,
    // exact with respect to the stored values (the CPU has no f16 matrices).
    return has_quantized_matrix(files) || embedding_dtype(files) == DType::kBF16 ? DType::kBF16 : DType::kF32;
  }
  DType d = parse_dtype(requested);
  if (device.kind == DeviceKind::kCPU && d == DType::kF16) {
    ELI_THROW(kUnsupported, "dtype float16 is not supported on the CPU backend; use bfloat16 or float32");
  }
  return d;
}

int64_t model_context_length(const ModelSpec& spec) {
  // Dynamic NTK scaling exists to run past max_position_embeddings (by `factor`, as vLLM does);
  // the other scalings already state their extended length in max_position_embeddings.
  if (spec.rope.scaling == RopeScaling::kDynamic && spec.rope.factor > 1.0) {
    return static_cast<int64_t>(static_cast<double>(spec.max_position) * spec.rope.factor);
  }
  return spec.max_position;
}


DType choose_kv_cache_dtype(const std::string& requested, DType weight_dtype, DeviceId device) {
  const bool cuda = device.kind == DeviceKind::kCUDA;
  if (requested.empty() || requested == "auto") {
    // A 16-bit KV cache (the weights' type) halves the bytes every decode step reads; the f32
    // paths (CPU, f32 weights on CUDA) keep f32 so that they stay exact references.
    return cuda && (weight_dtype == DType::kBF16 || weight_dtype == DType::kF16) ? weight_dtype : DType::kF32;
  }
  // The compressed caches (runtime/kv/kv_cache.h): one byte per value plus a scale per (token, kv
  // head), on every backend; the queries stay in the activations' dtype, so any weight dtype goes.
  std::string lower = requested;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower == "int8" || lower == "i8") return DType::kI8;
  if (lower == "fp8" || lower == "fp8_e4m3" || lower == "f8_e4m3") return DType::kF8E4M3;
  DType d = DType::kF32;
  try {
    d = parse_dtype(requested);
  } catch (const Error&) {
    ELI_THROW(kInvalidArgument, "unknown kv_cache_dtype '", requested,
              "' (expected auto, float32, bfloat16, float16, int8 or fp8)");
  }
  ELI_CHECK_KIND(kUnsupported, d == DType::kF32 || (cuda && (d == DType::kBF16 || d == DType::kF16)), "kv_cache_dtype ",
                 requested, " is not supported on the ", cuda ? "CUDA" : "CPU", " backend; use ",
                 cuda ? "auto, bfloat16, float16, float32, int8 or fp8" : "auto, float32, int8 or fp8");
  // f16 weights run only on the 16-bit device path, whose KV cache is f16 too; an f16 cache is
  // only written by that path.
  ELI_CHECK_KIND(kUnsupported, !cuda || ((weight_dtype == DType::kF16) == (d == DType::kF16)), "kv_cache_dtype ",
                 requested, " with ", dtype_name(weight_dtype), " weights is not supported on the CUDA backend; ",
                 weight_dtype == DType::kF16 ? "use auto or float16 (or int8 / fp8)" : "float16 needs float16 weights (dtype=float16)");
  return d;
}

void validate_memory_config(const EngineConfig& config) {
  // The Engine's first check: every option against its row of eli/engine_options.def.
  validate_engine_config(config);
  const double f = config.gpu_memory_utilization;
  // Written so that NaN fails too.
  ELI_CHECK_ARG(f > 0.0 && f <= 1.0, "gpu_memory_utilization must be in (0, 1], got ", f,
                " (the fraction of the GPU's total memory eli may hold; for an absolute budget set gpu_memory_bytes)");
  const double swap = config.swap_space_gb, offload = config.kv_offload_gb;
  ELI_CHECK_ARG(swap >= 0.0 && swap <= 1048576.0, "swap_space_gb must be in [0, 1048576] GiB, got ", swap);
  ELI_CHECK_ARG(offload >= 0.0 && offload <= 1048576.0, "kv_offload_gb must be in [0, 1048576] GiB, got ", offload);
  // The disk tier sits behind the host tier of the prefix cache (runtime/kv/disk_kv_tier.h).
  ELI_CHECK_ARG(!(config.kv_offload_disk_gb > 0.0) || (offload > 0.0 && config.enable_prefix_caching),
                "kv_offload_disk_gb needs kv_offload_gb > 0 and enable_prefix_caching (the disk tier keeps "
                "the blocks the host tier drops)");
  ELI_CHECK_ARG(config.kv_offload_disk_path.empty() || config.kv_offload_disk_gb > 0.0,
                "kv_offload_disk_path is set but kv_offload_disk_gb is 0: set both, or neither");
  if (swap > 0.0 || offload > 0.0) {
    // The host tiers are pinned (page-locked on CUDA): together they must leave the host room.
    const uint64_t avail = host_available_bytes();
    const uint64_t want = gib_bytes(swap) + gib_bytes(offload);
    ELI_CHECK_ARG(avail == 0 || want <= avail / 2, "swap_space_gb + kv_offload_gb = ", swap + offload, " GiB (",
                  format_bytes(want), ") is more than half of the host's available RAM (", format_bytes(avail),
                  "); lower them");
  }
}

uint64_t gib_bytes(double gib) { return static_cast<uint64_t>(gib * static_cast<double>(uint64_t{1} << 30)); }


namespace {

uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }
uint64_t sat_mul(uint64_t a, uint64_t b) { return (b != 0 && a > UINT64_MAX / b) ? UINT64_MAX : a * b; }

// "0.90"; tiny fractions in two significant digits ("1e-06") rather than "0.00".
std::string format_fraction(double f) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), f >= 0.01 ? "%.2f" : "%.2g", f);
  return buf;
}

// The checks every plan shares; fills everything of the shape but dtype and n_blocks.
KvCacheShape base_kv_shape(const EngineConfig& config, const ModelSpec& spec) {
  ELI_CHECK_ARG(config.block_size >= 1 && config.block_size <= 1024, "block_size ", config.block_size,
                " out of range [1, 1024]");
  ELI_CHECK_ARG(config.max_num_seqs >= 1, "max_num_seqs must be >= 1");
  ELI_CHECK_ARG(config.max_num_batched_tokens >= 1, "max_num_batched_tokens must be >= 1");
  ELI_CHECK_ARG(config.num_kv_blocks >= 0 && config.max_model_len >= 0, "KV sizes must be >= 0");
  KvCacheShape s;
  s.n_layers = spec.n_layers;
  s.block_size = config.block_size;
  s.n_kv_heads = spec.n_kv_heads;
  s.head_dim = spec.head_dim;
  s.dtype = DType::kF32;
  const KvGroups groups = kv_groups_for(spec);
  if (groups.n_groups() == 2) s.layer_group = groups.layer_group;
  for (int g = 0; g < groups.n_groups(); ++g) s.group_window[g] = groups.window[static_cast<size_t>(g)];
  return s;
}

// Group 1 (sliding-window layers beside full-attention ones, kv_groups.h) needs at most
// window_group_blocks() blocks however large group 0 is: n0 blocks of group 0 come with
// min(n0, that) of group 1. One group: none.
int64_t group1_blocks(const EngineConfig& config, const ModelSpec& spec, const KvCacheShape& s, int64_t n0) {
  if (s.layer_group.empty()) return 0;
  const KvGroups groups = kv_groups_for(spec);
  return std::min(n0, window_group_blocks(groups.window[1], s.block_size, config.max_num_seqs,
                                          config.max_num_batched_tokens));
}

// Bytes of the KV tensors for n0 blocks of group 0 (and group 1's share).
uint64_t kv_bytes_for(const EngineConfig& config, const ModelSpec& spec, const KvCacheShape& s, int64_t n0) {
  const uint64_t lb = s.layer_block_bytes();
  const uint64_t g0 = sat_mul(sat_mul(lb, static_cast<uint64_t>(s.layers_in_group(0))), static_cast<uint64_t>(n0));
  const uint64_t g1 = sat_mul(sat_mul(lb, static_cast<uint64_t>(s.layers_in_group(1))),
                              static_cast<uint64_t>(group1_blocks(config, spec, s, n0)));
  return sat_add(g0, g1);
}

// The most group-0 blocks (<= max_blocks) whose cost(n) is within limit; cost is nondecreasing.
template <typename Cost>
int64_t fit_blocks(uint64_t limit, int64_t max_blocks, Cost cost) {
  int64_t lo = 0, hi = max_blocks;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (cost(mid) <= limit) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Sets plan.max_model_len (checked against the model's context) and checks the block count.
void finish_kv_plan(const EngineConfig& config, const ModelSpec& spec, KvPlan* plan) {
  ELI_CHECK_ARG(plan->shape.n_blocks < (int64_t{1} << 30), "num_kv_blocks ", plan->shape.n_blocks, " is absurd");
  const int64_t context = model_context_length(spec);
  ELI_CHECK_ARG(config.max_model_len <= context, "max_model_len ", config.max_model_len,
                " exceeds the model's context of ", context);
  // Not capped by the pool: a request longer than the pool is rejected at admission with the
  // block counts, which says more than a silently shorter context.
  plan->max_model_len = config.max_model_len > 0 ? config.max_model_len : context;
}

// Bytes of the KV cache of every context of max_num_seqs sequences at full length.
uint64_t full_contexts_bytes(const EngineConfig& config, const ModelSpec& spec, const KvCacheShape& s) {
  const uint64_t ctx = static_cast<uint64_t>(config.max_model_len > 0 ? config.max_model_len : model_context_length(spec));
  const uint64_t per_token = s.bytes_per_block() / static_cast<uint64_t>(s.block_size);
  return sat_mul(sat_mul(per_token, ctx), static_cast<uint64_t>(config.max_num_seqs));
}

}  // namespace

uint64_t default_kv_bytes(const EngineConfig& config, const ModelSpec& spec, const KvCacheShape& s,
                          uint64_t available_bytes) {
  // What the model needs for max_num_seqs full contexts, capped by a fraction of the memory
  // available now (never a fixed size: a 135M model gets megabytes, an 8B model gigabytes), but at
  // least one full context when that fits in half of it (one request of the whole context must run).
  const uint64_t ctx = static_cast<uint64_t>(config.max_model_len > 0 ? config.max_model_len : model_context_length(spec));
  const uint64_t per_token = s.bytes_per_block() / static_cast<uint64_t>(s.block_size);
  const uint64_t one_context = sat_mul(per_token, ctx);
  const uint64_t want = full_contexts_bytes(config, spec, s);
  const uint64_t cap = static_cast<uint64_t>(kCpuKvAvailableFraction * static_cast<double>(available_bytes));
  return std::min({want, std::max(cap, one_context), available_bytes / 2});
}

std::string MemoryBudget::describe() const {
  std::string s = format_bytes(budget_bytes);
  if (fraction > 0.0) {
    s += " (" + format_fraction(fraction) + " of " + format_bytes(total_bytes) + ")";
  } else {
    s += " (gpu_memory_bytes)";
  }
  if (shares > 1) s += ", one of " + std::to_string(shares) + " ranks' equal shares";
  return s;
}

MemoryBudget split_budget(const MemoryBudget& budget, int ways) {
  ELI_CHECK_KIND(kInternal, ways >= 1, "split_budget: ", ways, " ways");
  MemoryBudget b = budget;
  const uint64_t w = static_cast<uint64_t>(ways);
  b.budget_bytes /= w;
  b.headroom_bytes /= w;
  b.shares = budget.shares * ways;
  return b;
}

uint64_t MemoryBudget::pool_budget_bytes() const {
  const uint64_t outside = headroom_bytes > kPoolSlackBytes ? headroom_bytes - kPoolSlackBytes : 0;
  return budget_bytes > outside ? budget_bytes - outside : 1;  // 0 would mean "no budget"
}

MemoryBudget plan_memory_budget(const EngineConfig& config, const Device& device) {
  validate_memory_config(config);
  MemoryBudget b;
  b.total_bytes = device.total_bytes();
  b.free_bytes = device.available_bytes();
  b.held_bytes = device.memory_stats().reserved_bytes;
  if (config.gpu_memory_bytes > 0) {
    b.budget_bytes = config.gpu_memory_bytes;
  } else {
    b.fraction = config.gpu_memory_utilization;
    b.budget_bytes = static_cast<uint64_t>(std::floor(b.fraction * static_cast<double>(b.total_bytes)));
  }
  b.headroom_bytes = kHeadroomFixedBytes +
                     static_cast<uint64_t>(kHeadroomBudgetFraction * static_cast<double>(b.budget_bytes));
  const uint64_t obtainable = sat_add(b.free_bytes, b.held_bytes);
  if (b.budget_bytes > obtainable) {
    const uint64_t others = b.total_bytes > obtainable ? b.total_bytes - obtainable : 0;
    std::string most;
    if (b.total_bytes > 0) {
      const double f = std::floor(100.0 * static_cast<double>(obtainable) / static_cast<double>(b.total_bytes)) / 100.0;
      most = " (at most " + format_fraction(f) + " now)";
    }
    ELI_THROW(kOutOfMemory, "the memory budget of ", b.describe(), " is more than eli can get on ",
              device_name(device.id()), ": ", format_bytes(b.free_bytes), " free + ", format_bytes(b.held_bytes),
              " held by eli, of ", format_bytes(b.total_bytes), " total (", format_bytes(others),
              " used by other processes and this process's CUDA context); lower gpu_memory_utilization", most,
              " or gpu_memory_bytes, or free the device");
  }
  return b;
}

void check_weights_fit(const MemoryBudget& b, uint64_t weight_bytes) {
  if (weight_bytes > b.budget_bytes) {
    ELI_THROW(kOutOfMemory, "weights need ", format_bytes(weight_bytes), ", the budget is ", b.describe(),
              "; raise gpu_memory_utilization or gpu_memory_bytes, or hold the weights in a smaller dtype");
  }
  if (sat_add(weight_bytes, b.headroom_bytes) >= b.budget_bytes) {
    ELI_THROW(kOutOfMemory, "the weights (", format_bytes(weight_bytes), ") and the headroom (",
              format_bytes(b.headroom_bytes), ": 256 MiB + 2% of the budget, for the CUDA context, cuBLAS and ",
              "CUDA graphs) leave no room for the KV cache in the budget of ", b.describe(),
              "; raise gpu_memory_utilization or gpu_memory_bytes");
  }
}


void apply_pool_budget(Device& device, const MemoryBudget& budget) {
  device.set_memory_budget(budget.pool_budget_bytes());
}

KvPlan plan_kv_cache(const EngineConfig& config, const ModelSpec& spec, const Device& device, DType kv_dtype) {
  KvPlan plan;
  KvCacheShape& s = plan.shape;
  s = base_kv_shape(config, spec);
  ELI_CHECK_KIND(kUnsupported, kv_dtype == DType::kF32 || kv_dtype == DType::kI8 || kv_dtype == DType::kF8E4M3,
                 "the CPU KV cache holds float32, int8 or fp8, not ", dtype_name(kv_dtype));
  s.dtype = kv_dtype;
  s.quantized_query_dtype = DType::kF32;  // CPU attention takes f32 queries
  const uint64_t per_block = s.bytes_per_block();
  const uint64_t avail = device.available_bytes();
  constexpr int64_t kMaxBlocks = (int64_t{1} << 30) - 1;
  auto cost = [&](int64_t n) { return kv_bytes_for(config, spec, s, n); };
  if (config.num_kv_blocks > 0) {
    ELI_CHECK_ARG(config.num_kv_blocks <= kMaxBlocks, "num_kv_blocks ", config.num_kv_blocks, " is absurd");
    s.n_blocks = config.num_kv_blocks;
    const uint64_t need = cost(s.n_blocks);
    if (need > avail) {
      ELI_THROW(kOutOfMemory, "num_kv_blocks ", s.n_blocks, " (", format_bytes(per_block), " each) needs ",
                format_bytes(need), " but only ", format_bytes(avail), " of memory is available; ask for at most ",
                fit_blocks(avail, kMaxBlocks, cost), " blocks");
    }
  } else {
    uint64_t bytes = config.kv_cache_bytes;
    if (bytes > avail) {
      ELI_THROW(kOutOfMemory, "kv_cache_bytes ", bytes, " (", format_bytes(bytes), ") is more than the ",
                format_bytes(avail), " of memory available");
    }
    if (bytes == 0) bytes = default_kv_bytes(config, spec, s, avail);
    s.n_blocks = fit_blocks(bytes, kMaxBlocks, cost);
    ELI_CHECK_KIND(kOutOfMemory, s.n_blocks >= 1, "kv_cache_bytes (", bytes, ") is smaller than one KV block (",
                   per_block, " bytes)");
  }
  s.n_blocks1 = group1_blocks(config, spec, s, s.n_blocks);
  finish_kv_plan(config, spec, &plan);
  return plan;
}

KvPlan plan_device_kv_cache(const EngineConfig& config, const ModelSpec& spec, const MemoryBudget& b,
                            Device& device, uint64_t weight_bytes, uint64_t workspace_bytes, DType kv_dtype,
                            const KvSpec* rank) {
  KvPlan plan;
  KvCacheShape& s = plan.shape;
  s = base_kv_shape(config, spec);
  s.dtype = kv_dtype;
  if (rank != nullptr) s = slice_kv_shape(s, rank->first_layer, rank->n_layers, rank->n_kv_heads);
  const uint64_t per_block = s.bytes_per_block();
  const uint64_t n_tensors = 2 * static_cast<uint64_t>(s.n_layers);  // K and V of every layer
  const uint64_t tensor_block = s.data_bytes_per_block();             // one block of one tensor
  const uint64_t scale_block = s.scale_bytes_per_block();             // its scales (quantized only)
  constexpr int64_t kMaxBlocks = (int64_t{1} << 30) - 1;

  // What the allocator will hold for the KV cache of n blocks: KvCache allocates each tensor (and
  // each scale array of a quantized cache) separately, and the pool rounds each to its size class.
  // n blocks of group 0 come with group1_blocks(n) of group 1 for the layers of a second group.
  const uint64_t n_tensors0 = 2 * static_cast<uint64_t>(s.layers_in_group(0));
  const uint64_t n_tensors1 = n_tensors - n_tensors0;
  auto one_tensor = [&](int64_t n) -> uint64_t {
    uint64_t one = device.allocation_size(sat_mul(tensor_block, static_cast<uint64_t>(n)));
    if (scale_block > 0) one = sat_add(one, device.allocation_size(sat_mul(scale_block, static_cast<uint64_t>(n))));
    return one;
  };
  auto footprint = [&](int64_t n) -> uint64_t {
    const uint64_t t0 = sat_mul(one_tensor(n), n_tensors0);
    if (n_tensors1 == 0) return t0;
    return sat_add(t0, sat_mul(one_tensor(group1_blocks(config, spec, s, n)), n_tensors1));
  };
  // The most blocks whose footprint is within `limit` (footprint(n) >= n * the group-0 bytes per
  // block bounds it).
  auto fit = [&](uint64_t limit) -> int64_t {
    const uint64_t per_block0 = sat_mul(tensor_block + scale_block, n_tensors0);
    return fit_blocks(limit, static_cast<int64_t>(std::min<uint64_t>(limit / per_block0, kMaxBlocks)), footprint);
  };

  // What the allocator holds now (weights and workspaces, with its rounding), and what is left.
  const uint64_t held = std::max(device.memory_stats().reserved_bytes, sat_add(weight_bytes, workspace_bytes));
  const std::string parts = "the weights (" + format_bytes(weight_bytes) + ") and workspaces (" +
                            format_bytes(workspace_bytes) + "), " + format_bytes(held) +
                            " as the allocator holds them, and the headroom (" + format_bytes(b.headroom_bytes) + ")";
  if (sat_add(held, b.headroom_bytes) >= b.budget_bytes) {
    ELI_THROW(kOutOfMemory, "no room for the KV cache: the budget of ", b.describe(), " is used up by ", parts,
              "; raise gpu_memory_utilization or gpu_memory_bytes, or lower max_num_batched_tokens / max_num_seqs");
  }
  const uint64_t avail = b.budget_bytes - held - b.headroom_bytes;
  plan.available_bytes = avail;
  const std::string left = "the budget of " + b.describe() + " leaves " + format_bytes(avail) + " after " + parts;

  if (config.num_kv_blocks > 0) {
    ELI_CHECK_ARG(config.num_kv_blocks <= kMaxBlocks, "num_kv_blocks ", config.num_kv_blocks, " is absurd");
    s.n_blocks = config.num_kv_blocks;
    const uint64_t need = footprint(s.n_blocks);
    if (need > avail) {
      ELI_THROW(kOutOfMemory, "num_kv_blocks ", s.n_blocks, " (", format_bytes(per_block), " each) needs ",
                format_bytes(need), " but ", left, "; ask for at most ", fit(avail),
                " blocks or raise gpu_memory_utilization / gpu_memory_bytes");
    }
  } else if (config.kv_cache_bytes > 0) {
    if (config.kv_cache_bytes > avail) {
      ELI_THROW(kOutOfMemory, "kv_cache_bytes ", config.kv_cache_bytes, " (", format_bytes(config.kv_cache_bytes),
                ") is more than the KV cache can get: ", left,
                "; lower kv_cache_bytes or raise gpu_memory_utilization / gpu_memory_bytes");
    }
    s.n_blocks = fit(config.kv_cache_bytes);
    ELI_CHECK_KIND(kOutOfMemory, s.n_blocks >= 1, "kv_cache_bytes (", config.kv_cache_bytes,
                   ") is smaller than one KV block (", per_block, " bytes)");
  } else {
    // Everything the budget leaves, but no more than max_num_seqs full contexts need.
    const int64_t ctx = config.max_model_len > 0 ? config.max_model_len : model_context_length(spec);
    const uint64_t per_seq = static_cast<uint64_t>((ctx + s.block_size - 1) / s.block_size);
    const uint64_t want = std::min<uint64_t>(sat_mul(per_seq, static_cast<uint64_t>(config.max_num_seqs)), kMaxBlocks);
    s.n_blocks = std::min(static_cast<int64_t>(want), fit(avail));
    if (s.n_blocks < 1) {
      ELI_THROW(kOutOfMemory, "no room for the KV cache: ", left, ", less than one KV block (", format_bytes(per_block),
                " in all layers); raise gpu_memory_utilization or gpu_memory_bytes");
    }
  }
  plan.footprint_bytes = footprint(s.n_blocks);
  s.n_blocks1 = group1_blocks(config, spec, s, s.n_blocks);
  finish_kv_plan(config, spec, &plan);
  return plan;
}

bool offload_requested(const EngineConfig& config) {
  ELI_CHECK_ARG(config.offload == "none" || config.offload == "auto", "offload must be \"none\" or \"auto\", got \"",
                config.offload, "\"");
  const bool map = !parse_offload_map(config.offload_map).empty();
  ELI_CHECK_ARG(!map || (config.offload != "auto" && config.cpu_offload_gb <= 0.0),
                "offload_map places each layer itself: it cannot be combined with offload=\"auto\" or "
                "cpu_offload_gb (got offload=\"", config.offload, "\", cpu_offload_gb=", config.cpu_offload_gb, ")");
  return map || config.offload == "auto" || config.cpu_offload_gb > 0.0;
}

OffloadRequest offload_request(const EngineConfig& config, const Model& model, const MemoryBudget& budget,
                               DeviceKind device, DType kv_dtype, int64_t max_logits) {
  OffloadRequest r;
  (void)offload_requested(config);  // the option checks
  r.cpu_offload_bytes = gib_bytes(config.cpu_offload_gb);
  r.map = parse_offload_map(config.offload_map);
  r.explicit_map = !r.map.empty();
  r.host_budget = config.cpu_memory_bytes > 0
                      ? config.cpu_memory_bytes
                      : static_cast<uint64_t>(kOffloadHostFraction * static_cast<double>(host_available_bytes()));
  if (const char* e = std::getenv("ELI_OFFLOAD_RING_DEPTH")) {
    const int d = std::atoi(e);
    ELI_CHECK_ARG(d >= 1 && d <= 8, "ELI_OFFLOAD_RING_DEPTH must be 1..8, got \"", e, "\"");
    r.ring_depth = d;
  }
  if (config.offload != "auto") return r;
  if (device == DeviceKind::kCPU) {
    r.automatic = config.gpu_memory_bytes > 0;
    r.device_weight_budget = config.gpu_memory_bytes;
    return r;
  }
  r.automatic = true;
  const ModelSpec& s = model.spec();
  const WorkspaceSizes ws = model.workspace(config.max_num_batched_tokens, max_logits, device);
  uint64_t step = 0;
  for (size_t b : ws.bytes) step += b;
  step += static_cast<uint64_t>(max_logits) * static_cast<uint64_t>(s.vocab_size + s.hidden_size) * sizeof(float);
  const int64_t context = config.max_model_len > 0 ? config.max_model_len : model_context_length(s);
  const uint64_t kv_elem = static_cast<uint64_t>(dtype_info(kv_dtype).block_bytes);
  const uint64_t kv_token = 2 * static_cast<uint64_t>(s.n_layers * s.n_kv_heads) *
                            (static_cast<uint64_t>(s.head_dim) * kv_elem + (kv_elem == 1 ? 4 : 0));
  const uint64_t kv = kv_token * static_cast<uint64_t>(std::min<int64_t>(context, kOffloadKvReserveTokens));
  const uint64_t reserved = budget.headroom_bytes + step + kv;
  ELI_CHECK_KIND(kOutOfMemory, budget.budget_bytes > reserved, "offload=\"auto\": the budget ", budget.describe(),
                 " leaves no room for weights after the headroom (", format_bytes(budget.headroom_bytes),
                 "), the step buffers (", format_bytes(step), ") and KV for ",
                 std::min<int64_t>(context, kOffloadKvReserveTokens), " tokens (", format_bytes(kv), ")");
  r.device_weight_budget = budget.budget_bytes - reserved;
  return r;
}

KvPlan plan_parallel_device_kv_cache(const EngineConfig& config, const ModelSpec& spec, DType kv_dtype,
                                     const std::vector<RankKvInput>& ranks) {
  ELI_CHECK_KIND(kInternal, !ranks.empty(), "plan_parallel_device_kv_cache: no ranks");
  KvPlan plan;
  int64_t n_blocks = -1;
  for (size_t r = 0; r < ranks.size(); ++r) {
    const RankKvInput& k = ranks[r];
    KvPlan p;
    try {
      p = plan_device_kv_cache(config, spec, *k.budget, *k.device, k.weight_bytes, k.workspace_bytes, kv_dtype, &k.kv);
    } catch (const Error& e) {
      throw Error(e.kind(), "rank " + std::to_string(r) + " (" + device_name(k.device->id()) + "): " + e.message());
    }
    if (n_blocks < 0 || p.shape.n_blocks < n_blocks) {
      n_blocks = p.shape.n_blocks;
      plan.available_bytes = p.available_bytes;
    }
    plan.footprint_bytes += p.footprint_bytes;
  }
  plan.shape = base_kv_shape(config, spec);
  plan.shape.dtype = kv_dtype;
  plan.shape.n_blocks = n_blocks;
  plan.shape.n_blocks1 = group1_blocks(config, spec, plan.shape, n_blocks);
  finish_kv_plan(config, spec, &plan);
  return plan;
}

}  // namespace eli
