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
// Copies are asynchronous on the device's default stream, the stream every step runs on: a copy
// out is ordered after the steps already launched (which may still write its blocks) and before
// any later step that reuses them; a copy in before the step that reads its blocks. Swapping and
// the host prefix cache never touch a slot's bytes on the host, so they never wait; only the
// prefix cache's disk tier does (wait() first, see host_prefix_cache.h). One copy per (block, layer, array):
// many small transfers on a GPU (a gather kernel over mapped pinned memory is the next step).
// The buffers are pinned, so the copies are truly asynchronous; the destructor waits for them.
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
  ~HostKvTier();  // waits for queued copies (they read or write the slots)
  HostKvTier(const HostKvTier&) = delete;
  HostKvTier& operator=(const HostKvTier&) = delete;
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
  // Raw slot bytes (tests; waits for the queued copies first).
  const uint8_t* slot_data(int g, int32_t slot) const;

  // For the prefix cache's disk tier (runtime/kv/host_prefix_cache.h), which reads and writes slot
  // bytes on the host: wait() waits for every queued copy; host_slot() is the slot's address with
  // no wait (call wait() before touching bytes a queued copy may read or write).
  void wait() const;
  uint8_t* host_slot(int g, int32_t slot);
  // Queues a copy of one slot's worth of host bytes at `src` (pinned, left untouched until the
  // copies are done: wait()) into device block `block` of group g; returns the bytes moved.
  uint64_t copy_in_from(int g, const uint8_t* src, int32_t block);
  // Pinned host memory from the tier's device (staging for the disk tier).
  Buffer allocate_pinned(uint64_t bytes);

 private:
  Device& device_;
  const KvCache& cache_;
  int64_t n_slots_ = 0;
  std::vector<Buffer> buffers_;               // per group
  std::vector<uint64_t> slot_bytes_;          // per group
  std::vector<std::vector<int64_t>> layers_;  // per group: its layers, in order
  std::vector<std::vector<int32_t>> free_;    // per group: free slots (a stack)
  std::vector<std::vector<char>> held_;       // per group, per slot
  void copy_block_in(int g, const uint8_t* src, int32_t block, void* stream);
};

}  // namespace eli
