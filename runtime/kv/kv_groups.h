// runtime/kv/kv_groups.h: KV groups, how a model's layers share block tables when some of them
// attend to a sliding window only (Mistral, Phi-3 mini, Gemma 2/3's interleaved local layers).
//
// A group is a set of layers with one block table per sequence and a pool of its own. Group 0
// holds the full-attention layers (or, when every layer has a window, all layers); a second group
// holds the sliding-window layers beside full-attention ones. A group with a window keeps only
// the blocks some future query can still see: a query at position p reads positions
// (p - window, p], and a sequence's next query is at num_computed, so blocks wholly before
// num_computed - window + 1 are released as the sequence advances (their table entries are kept
// as placeholders, never read). Windows of different sizes in one group use the largest, which
// keeps every block any of its layers can read.
//
// Invariants: at most kMaxKvGroups groups; layer_group.size() == n_layers; window[0] > 0 only when
// no layer attends to the full context.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "eli/model_spec.h"

namespace eli {

constexpr int kMaxKvGroups = 2;

struct KvGroups {
  std::vector<int64_t> window{0};  // per group: 0 = full attention, else the window in tokens
  std::vector<int32_t> layer_group;  // per layer

  int n_groups() const { return static_cast<int>(window.size()); }
  int64_t n_layers_in(int g) const {
    return std::count(layer_group.begin(), layer_group.end(), static_cast<int32_t>(g));
  }
  // Blocks [0, dead_blocks) of group g can no longer be read once the sequence's next query is at
  // position next_pos.
  int64_t dead_blocks(int g, int64_t next_pos, int64_t block_size) const {
    const int64_t w = window[static_cast<size_t>(g)];
    if (w <= 0) return 0;
    const int64_t first_live = next_pos - w + 1;
    return first_live > 0 ? first_live / block_size : 0;
  }
};

// The per-layer windows of a spec: layer_sliding_windows when given, else sliding_window for all.
inline std::vector<int64_t> layer_windows(const ModelSpec& spec) {
  if (!spec.layer_sliding_windows.empty()) return spec.layer_sliding_windows;
  return std::vector<int64_t>(static_cast<size_t>(std::max<int64_t>(spec.n_layers, 0)), spec.sliding_window);
}

// Groups for per-layer windows (0 = full attention).
inline KvGroups kv_groups_for_windows(const std::vector<int64_t>& windows) {
  KvGroups g;
  int64_t max_window = 0;
  bool any_full = false;
  for (int64_t w : windows) {
    if (w > 0) max_window = std::max(max_window, w);
    else any_full = true;
  }
  g.layer_group.assign(windows.size(), 0);
  if (max_window == 0) return g;  // every layer full: one group
  if (!any_full) {                // every layer windowed: one windowed group
    g.window[0] = max_window;
    return g;
  }
  g.window.push_back(max_window);
  for (size_t l = 0; l < windows.size(); ++l) g.layer_group[l] = windows[l] > 0 ? 1 : 0;
  return g;
}

inline KvGroups kv_groups_for(const ModelSpec& spec) { return kv_groups_for_windows(layer_windows(spec)); }

// Blocks a windowed group needs so that no running sequence ever waits for one: per sequence the
// window's blocks plus a partial block at each end, and the blocks of two steps' new tokens (a
// block leaves only once offered to the prefix cache, which happens when its step completes).
inline int64_t window_group_blocks(int64_t window, int64_t block_size, int64_t max_num_seqs,
                                   int64_t max_num_batched_tokens) {
  const int64_t per_seq = (window - 1 + block_size - 1) / block_size + 2;
  return max_num_seqs * per_seq + 2 * ((max_num_batched_tokens + block_size - 1) / block_size);
}

}  // namespace eli
