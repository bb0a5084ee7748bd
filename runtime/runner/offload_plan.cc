// runtime/runner/offload_plan.cc: see offload_plan.h.
#include "runtime/runner/offload_plan.h"

#include <algorithm>
#include <vector>

#include "eli/error.h"
#include "runtime/core/format_bytes.h"

namespace eli {

std::string layer_range(int64_t a, int64_t b) { return a == b ? std::to_string(a) : std::to_string(a) + "-" + std::to_string(b); }

namespace {

// cpu_offload_bytes / automatic: the last layers, one at a time, until the rule is met.
std::vector<int64_t> last_layers(const std::map<int64_t, uint64_t>& layers, const std::vector<int64_t>& order,
                                 uint64_t fixed, uint64_t layer_total, const OffloadRequest& r) {
  uint64_t offloaded = 0, max_image = 0;
  size_t n_off = 0;
  auto ring = [&](size_t n, uint64_t max_img) {
    return max_img * static_cast<uint64_t>(std::min<size_t>(static_cast<size_t>(r.ring_depth), n));
  };
  auto satisfied = [&]() {
    if (r.automatic) {
      const uint64_t resident = fixed + (layer_total - offloaded);
      if (resident + ring(n_off, max_image) > r.device_weight_budget) return false;
    }
    return offloaded >= r.cpu_offload_bytes;
  };
  while (!satisfied()) {
    if (n_off == order.size()) {
      ELI_CHECK_KIND(kOutOfMemory, !r.automatic,
                     "weights do not fit the device even with every layer offloaded: the embedding, head and norms (",
                     format_bytes(fixed), ") plus a ring of ", std::min<int>(r.ring_depth, static_cast<int>(n_off)),
                     " x ", format_bytes(max_image), " need ", format_bytes(fixed + ring(n_off, max_image)),
                     ", the weights' share of the budget is ", format_bytes(r.device_weight_budget),
                     "; raise gpu_memory_utilization / gpu_memory_bytes");
      break;  // cpu_offload_gb beyond the model: every layer is offloaded
    }
    const int64_t l = order[order.size() - 1 - n_off];
    offloaded += layers.at(l);
    max_image = std::max(max_image, layers.at(l));
    ++n_off;
  }
  return std::vector<int64_t>(order.end() - static_cast<std::ptrdiff_t>(n_off), order.end());
}

}  // namespace

OffloadPlan plan_offload(const WeightStore& store, const OffloadRequest& r) {
  OffloadPlan plan;
  const std::map<int64_t, uint64_t> layers = store.layer_image_bytes();
  plan.n_layers = static_cast<int64_t>(layers.size());
  plan.first_layer = layers.empty() ? 0 : layers.begin()->first;
  uint64_t layer_total = 0;
  for (const auto& [l, b] : layers) layer_total += b;
  const uint64_t placed = store.placed_bytes();
  // What always stays: embedding, lm_head, norms (and any bytes outside the layer images).
  const uint64_t fixed = placed > layer_total ? placed - layer_total : 0;
  plan.resident_bytes = placed;
  if (!r.active() || layers.empty()) return plan;
  ELI_CHECK_ARG(r.ring_depth >= 1, "offload ring depth must be at least 1, got ", r.ring_depth);

  std::vector<int64_t> order;
  for (const auto& [l, b] : layers) order.push_back(l);
  std::vector<int64_t> chosen;  // offloaded layers, increasing
  std::map<int64_t, MemoryTier> wanted;  // explicit map: their tiers
  if (r.explicit_map) {
    wanted = resolve_offload_map(r.map, plan.first_layer, plan.n_layers);
    for (const auto& [l, t] : wanted) {
      ELI_CHECK_KIND(kInternal, layers.count(l) > 0, "offload map names layer ", l, ", which has no weights");
      chosen.push_back(l);
    }
  } else {
    chosen = last_layers(layers, order, fixed, layer_total, r);
  }
  if (chosen.empty()) return plan;
  uint64_t offloaded = 0, max_image = 0;
  for (int64_t l : chosen) {
    offloaded += layers.at(l);
    max_image = std::max(max_image, layers.at(l));
  }

  // Tiers. The explicit map says each layer's; otherwise pinned host memory for the lowest
  // offloaded layers while the host budget lasts, the rest from the file. What of a file-tier layer
  // is not in the file (converted data, biases, scales) takes host memory too.
  uint64_t host = 0;
  for (int64_t l : chosen) {
    const uint64_t b = layers.at(l);
    if (r.explicit_map ? wanted.at(l) == MemoryTier::kHost : host + b <= r.host_budget) {
      ELI_CHECK_KIND(kOutOfMemory, host + b <= r.host_budget, "weight offloading: layer ", l, " (", format_bytes(b),
                     ") is mapped to host memory by offload_map but does not fit the host memory budget (",
                     format_bytes(r.host_budget), ", of which ", format_bytes(host),
                     " is taken); raise cpu_memory_bytes or map it to disk");
      plan.tier_of_layer[l] = MemoryTier::kHost;
      host += b;
      plan.host_bytes += b;
      continue;
    }
    const uint64_t rest = std::min(b, store.layer_unmapped_bytes(l));
    ELI_CHECK_KIND(kOutOfMemory, host + rest <= r.host_budget, "weight offloading: layer ", l, " (",
                   format_bytes(b), ") does not fit the host memory budget (", format_bytes(r.host_budget),
                   ", of which ", format_bytes(host), " is taken) and ", format_bytes(rest),
                   " of it cannot be read from the model file at each step (converted at load: a dtype other "
                   "than the checkpoint's, reordered rows, or a repacked quantized layout); raise "
                   "cpu_memory_bytes, or load with a dtype matching the checkpoint");
    plan.tier_of_layer[l] = MemoryTier::kMappedFile;
    host += rest;
    plan.disk_bytes += b;
  }
  plan.ring_depth = std::min<int>(r.ring_depth, static_cast<int>(chosen.size()));
  plan.slot_bytes = max_image;
  plan.resident_bytes = fixed + (layer_total - offloaded);
  return plan;
}

std::string OffloadPlan::describe(const std::string& device_name) const {
  if (!active()) return "every layer on " + device_name;
  // Runs of consecutive layers with the same tier.
  std::map<int64_t, MemoryTier> all;
  for (int64_t l = first_layer; l < first_layer + n_layers; ++l) {
    auto it = tier_of_layer.find(l);
    all[l] = it == tier_of_layer.end() ? MemoryTier::kDevice : it->second;
  }
  std::string out;
  auto tier_text = [&](MemoryTier t) -> std::string {
    switch (t) {
      case MemoryTier::kDevice: return "on " + device_name;
      case MemoryTier::kHost: return "in pinned host memory";
      case MemoryTier::kMappedFile: return "read from the model file";
    }
    return "?";
  };
  int64_t start = -1;
  MemoryTier cur = MemoryTier::kDevice;
  auto flush = [&](int64_t end) {
    if (start < 0) return;
    if (!out.empty()) out += ", ";
    out += "layers " + layer_range(start, end) + " " + tier_text(cur);
  };
  for (const auto& [l, t] : all) {
    if (start < 0 || t != cur) {
      flush(l - 1);
      start = l;
      cur = t;
    }
  }
  flush(first_layer + n_layers - 1);
  out += "; device " + format_bytes(resident_bytes) + " + ring " + std::to_string(ring_depth) + " x " +
         format_bytes(slot_bytes) + ", host " + format_bytes(host_bytes) + ", file " + format_bytes(disk_bytes);
  return out;
}

}  // namespace eli
