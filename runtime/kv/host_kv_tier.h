// runtime/kv/host_kv_tier.h: a pool of KV blocks in host memory (the "host tier"), with the same
// per-block bytes as the device cache (runtime/kv/kv_cache.h), and the copies that move whole
// blocks between a KvCache and the tier. Swap preemption (runtime/engine/scheduler.h) keeps a
// preempted sequence's KV here instead of recomputing it.
//
// Layout: one buffer per KV group (pinned host memory from the Device: cudaHostAlloc on CUDA,
// plain aligned RAM on the CPU), n_slots slots each. A slot of group g holds, for every layer of
// that group in layer order, k data, v data, then (int8 / fp8 caches) k scales, v scales of one
// block: layers_in_group(g) * KvCacheShape::layer_block_bytes() bytes. Slot ids are per group and
// mean nothing on the device.
//
// Copies are synchronous in this first version: both directions first wait for all queued device
// work (a launched step may still be writing the blocks copied out, or blocks freed since and now
// copied into), then copy on the default stream, and are complete on return. One copy per (block, layer, array): fine on the CPU, many
// small transfers on a GPU (batching them, or a gather kernel, is the next step).
//
// Invariants: every slot id in [0, n_slots) is either free (in the free list exactly once) or
// held; n_free() + held == n_slots; running out is a normal outcome (allocate returns false).
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/device/buffer.h"
#include "runtime/kv/kv_cache.h"

namespace eli {

class Device;

class HostKvTier {
 public:
  // `device` and `cache` must outlive the tier. n_slots > 0 per group (the same count for each).
  HostKvTier(Device& device, const KvCache& cache, int64_t n_slots);
  // Bytes of one slot of every group together, and the slots per group that `bytes` hold.
  static uint64_t slot_set_bytes(const KvCacheShape& shape);
  static int64_t slots_for_bytes(const KvCacheShape& shape, uint64_t bytes);

  int n_groups() const { return static_cast<int>(buffers_.size()); }
  int64_t n_slots() const { return n_slots_; }
  int64_t n_free(int g) const { return static_cast<int64_t>(free_[static_cast<size_t>(g)].size()); }
  // Bytes of one slot of group g.
  uint64_t slot_bytes(int g) const { return slot_bytes_[static_cast<size_t>(g)]; }

  // Takes n free slots of group g (appended to *out); false (nothing changes) when too few are free.
  bool allocate(int g, int64_t n, std::vector<int32_t>* out);
  void release(int g, const std::vector<int32_t>& slots);
  // Copies device blocks -> host slots (same length, pairwise) of group g; returns the bytes moved.
  uint64_t copy_out(int g, const std::vector<int32_t>& device_blocks, const std::vector<int32_t>& slots);
  // Copies host slots -> device blocks (same length, pairwise) of group g; returns the bytes moved.
  uint64_t copy_in(int g, const std::vector<int32_t>& slots, const std::vector<int32_t>& device_blocks);
  // Raw slot bytes (tests).
  const uint8_t* slot_data(int g, int32_t slot) const;

 private:
  Device& device_;
  const KvCache& cache_;
  int64_t n_slots_ = 0;
  std::vector<Buffer> buffers_;               // per group
  std::vector<uint64_t> slot_bytes_;          // per group
  std::vector<std::vector<int64_t>> layers_;  // per group: its layers, in order
  std::vector<std::vector<int32_t>> free_;    // per group: free slots (a stack)
  std::vector<std::vector<char>> held_;       // per group, per slot
};

}  // namespace eli
