// runtime/runner/offload_plan.h: which layers' weights stay on the device and which live in
// pinned host memory or in the model file (weight offloading; docs/offloading.md has the rules and
// how to pick the options).
//
// Rule (plan_offload):
//   - Embedding, lm_head and norm vectors always stay on the device.
//   - explicit map (option offload_map; runtime/runner/offload_map.h): exactly the layers and tiers
//     it names, anywhere in the model (not only the last ones); exclusive with the two rules below.
//     A host layer beyond host_budget, or a disk layer whose remainder (below) does not fit it, is
//     kOutOfMemory naming the layer.
//   - Otherwise offloaded layers are the last ones: the resident layers run first, so the copies of
//     the first offloaded layers overlap their compute.
//   - cpu_offload_bytes > 0 (option cpu_offload_gb): the last layers whose images add up to at
//     least that many bytes are offloaded (vLLM's meaning).
//   - automatic (offload="auto"): as few last layers as needed so that the resident weights plus the
//     ring (ring_depth slots of the largest offloaded image) fit device_weight_budget.
//   - Tiers (automatic and cpu_offload_bytes): offloaded layers take pinned host memory while
//     host_budget lasts (lowest layers first); the rest stay in the model file (the disk tier):
//     what of a disk-tier layer is a view of the file is read from it at each step, the rest
//     (layer_unmapped_bytes: converted data, biases, scales) takes host memory too. A layer whose
//     remainder does not fit either is kOutOfMemory with the numbers and what to change.
// Invariants: tier_of_layer names only kHost / kMappedFile layers; resident + ring fit the budget
// in automatic mode (else kOutOfMemory); ring_depth <= the number of offloaded layers.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/model/weight_store.h"
#include "runtime/runner/offload_map.h"

namespace eli {

struct OffloadRequest {
  uint64_t cpu_offload_bytes = 0;     // explicit amount (0: none)
  bool automatic = false;             // fit the device budget
  uint64_t device_weight_budget = 0;  // automatic: bytes the device may give weights + ring
  uint64_t host_budget = 0;           // pinned host bytes for images (beyond: the disk tier)
  int ring_depth = 2;                 // device slots (>= 1)
  bool explicit_map = false;          // offload_map given: map is the whole answer
  std::vector<OffloadMapEntry> map;   // parsed offload_map (resolved against the store's layers)
  bool active() const { return cpu_offload_bytes > 0 || automatic || explicit_map; }
};

struct OffloadPlan {
  std::map<int64_t, MemoryTier> tier_of_layer;  // offloaded layers (model layer index)
  int ring_depth = 0;
  uint64_t slot_bytes = 0;       // each ring slot: the largest offloaded image
  uint64_t resident_bytes = 0;   // weights on the device (ring excluded)
  uint64_t host_bytes = 0;       // images in pinned host memory
  uint64_t disk_bytes = 0;       // images of disk-tier layers (their file-backed part is read at each step)
  int64_t n_layers = 0;          // this rank's layers: first_layer .. first_layer + n_layers - 1
  int64_t first_layer = 0;
  bool active() const { return !tier_of_layer.empty(); }
  uint64_t ring_bytes() const { return slot_bytes * static_cast<uint64_t>(ring_depth); }
  // "layers 0-15 on cuda:0 (7.48 GiB), 16-27 in pinned host memory (5.61 GiB), 28-31 read from the
  // file (1.87 GiB); ring 2 x 436.0 MiB".
  std::string describe(const std::string& device_name) const;
};

// "3", "0-15": the run of layers a .. b for placement texts.
std::string layer_range(int64_t a, int64_t b);

OffloadPlan plan_offload(const WeightStore& store, const OffloadRequest& request);

}  // namespace eli
