// runtime/runner/offload_map.h: the explicit per-layer placement map of weight offloading (engine
// option offload_map; docs/offloading.md), e.g. "0-7:gpu,8-23:host,24-:disk".
//
// Syntax: comma-separated entries RANGE:TIER. RANGE is a layer index ("5"), a closed range
// ("8-23", first <= last) or an open one ("24-": to the last layer). TIER is gpu (resident on the
// device), host (pinned host memory) or disk (read from the model file at each step). Spaces
// around tokens are ignored; an empty map means "no map". Layers no entry names stay on the GPU.
// Any layer may go to any tier (the offloaded layers need not be the last ones).
//
// Invariants: parse_offload_map accepts exactly that grammar (anything else: kInvalidArgument
// quoting the offending entry); resolve_offload_map then checks the ranges against the model's
// layers (out of range: kInvalidArgument naming the entry and the layer count) and rejects a layer
// that two entries give different tiers (same tier twice is allowed); its result names only
// kHost / kMappedFile layers, in model layer indices.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/model/weight_store.h"

namespace eli {

struct OffloadMapEntry {
  int64_t first = 0;
  int64_t last = -1;  // -1: open ("24-"), up to the model's last layer
  MemoryTier tier = MemoryTier::kDevice;
  std::string text;  // the entry as written (for messages)
};

// Syntax only (no model needed): what validates the option before anything is loaded.
std::vector<OffloadMapEntry> parse_offload_map(const std::string& text);

// The offloaded layers of a model whose layers are first_layer .. first_layer + n_layers - 1.
std::map<int64_t, MemoryTier> resolve_offload_map(const std::vector<OffloadMapEntry>& entries, int64_t first_layer,
                                                  int64_t n_layers);

}  // namespace eli
