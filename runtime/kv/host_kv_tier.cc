// runtime/kv/host_kv_tier.cc: see host_kv_tier.h.
#include "runtime/kv/host_kv_tier.h"

#include <algorithm>

#include "eli/error.h"
#include "runtime/device/device.h"

namespace eli {

uint64_t HostKvTier::slot_set_bytes(const KvCacheShape& shape) {
  return shape.layer_block_bytes() * static_cast<uint64_t>(shape.n_layers);  // every layer is in one group
}

int64_t HostKvTier::slots_for_bytes(const KvCacheShape& shape, uint64_t bytes) {
  const uint64_t per = slot_set_bytes(shape);
  return per == 0 ? 0 : static_cast<int64_t>(std::min<uint64_t>(bytes / per, (uint64_t{1} << 31) - 2));
}

HostKvTier::HostKvTier(Device& device, const KvCache& cache, int64_t n_slots)
    : device_(device), cache_(cache), n_slots_(n_slots) {
  const KvCacheShape& s = cache.shape();
  ELI_CHECK_ARG(n_slots > 0 && n_slots < (int64_t{1} << 31) - 1, "host KV tier slot count ", n_slots,
                " out of range");
  const int groups = static_cast<int>(s.n_groups());
  layers_.resize(static_cast<size_t>(groups));
  for (int64_t l = 0; l < s.n_layers; ++l) layers_[static_cast<size_t>(s.group_of(l))].push_back(l);
  for (int g = 0; g < groups; ++g) {
    const uint64_t sb = s.layer_block_bytes() * layers_[static_cast<size_t>(g)].size();
    slot_bytes_.push_back(sb);
    // A group with no layer here (a pipeline stage) still gets a tiny buffer: slot ids stay valid.
    buffers_.push_back(device.allocate_buffer(std::max<uint64_t>(sb, 1) * static_cast<uint64_t>(n_slots),
                                              BufferType::kPinnedHost));
    std::vector<int32_t> f(static_cast<size_t>(n_slots));
    for (int64_t i = 0; i < n_slots; ++i) f[static_cast<size_t>(i)] = static_cast<int32_t>(n_slots - 1 - i);
    free_.push_back(std::move(f));  // pops slot 0 first
    held_.emplace_back(static_cast<size_t>(n_slots), 0);
  }
}

bool HostKvTier::allocate(int g, int64_t n, std::vector<int32_t>* out) {
  std::vector<int32_t>& f = free_.at(static_cast<size_t>(g));
  if (n < 0 || n > static_cast<int64_t>(f.size())) return false;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t s = f.back();
    f.pop_back();
    held_[static_cast<size_t>(g)][static_cast<size_t>(s)] = 1;
    out->push_back(s);
  }
  return true;
}

void HostKvTier::release(int g, const std::vector<int32_t>& slots) {
  for (int32_t s : slots) {
    ELI_CHECK_KIND(kInternal, s >= 0 && s < n_slots_ && held_.at(static_cast<size_t>(g))[static_cast<size_t>(s)],
                   "release of a free or invalid host KV slot ", s);
    held_[static_cast<size_t>(g)][static_cast<size_t>(s)] = 0;
    free_[static_cast<size_t>(g)].push_back(s);
  }
}

HostKvTier::~HostKvTier() {
  try {
    device_.default_stream().synchronize();
  } catch (...) {  // a broken device context: nothing more to wait for
  }
}

const uint8_t* HostKvTier::slot_data(int g, int32_t slot) const {
  device_.default_stream().synchronize();
  return static_cast<const uint8_t*>(buffers_.at(static_cast<size_t>(g)).data()) + slot_bytes(g) * static_cast<uint64_t>(slot);
}

namespace {

// The device address of block `b` of an array whose blocks are `per_block` bytes each.
uint8_t* block_at(void* base, int32_t b, uint64_t per_block) {
  return static_cast<uint8_t*>(base) + per_block * static_cast<uint64_t>(b);
}

}  // namespace

uint64_t HostKvTier::copy_out(int g, const std::vector<int32_t>& device_blocks, const std::vector<int32_t>& slots) {
  ELI_CHECK_KIND(kInternal, device_blocks.size() == slots.size(), "host KV copy: block and slot lists differ");
  if (slots.empty()) return 0;
  // Queued behind the steps already launched (they may still write these blocks), ahead of later ones.
  void* stream = device_.default_stream().native();
  const KvCacheShape& s = cache_.shape();
  const uint64_t db = s.data_bytes_per_block(), sb = s.scale_bytes_per_block();
  uint8_t* host = static_cast<uint8_t*>(buffers_.at(static_cast<size_t>(g)).mutable_data());
  for (size_t i = 0; i < slots.size(); ++i) {
    const int32_t b = device_blocks[i];
    ELI_CHECK_KIND(kInternal, b >= 0 && b < s.blocks_of_group(g), "host KV copy: device block ", b, " out of range");
    uint8_t* dst = host + slot_bytes(g) * static_cast<uint64_t>(slots[i]);
    for (int64_t l : layers_[static_cast<size_t>(g)]) {
      device_.copy_device_to_host(dst, block_at(cache_.k(l), b, db), db, stream);
      device_.copy_device_to_host(dst + db, block_at(cache_.v(l), b, db), db, stream);
      dst += 2 * db;
      if (sb > 0) {
        device_.copy_device_to_host(dst, block_at(cache_.k_scale(l), b, sb), sb, stream);
        device_.copy_device_to_host(dst + sb, block_at(cache_.v_scale(l), b, sb), sb, stream);
        dst += 2 * sb;
      }
    }
  }
  return slot_bytes(g) * slots.size();
}

void HostKvTier::copy_block_in(int g, const uint8_t* src, int32_t b, void* stream) {
  const KvCacheShape& s = cache_.shape();
  const uint64_t db = s.data_bytes_per_block(), sb = s.scale_bytes_per_block();
  ELI_CHECK_KIND(kInternal, b >= 0 && b < s.blocks_of_group(g), "host KV copy: device block ", b, " out of range");
  for (int64_t l : layers_[static_cast<size_t>(g)]) {
    device_.copy_host_to_device(block_at(cache_.k(l), b, db), src, db, stream);
    device_.copy_host_to_device(block_at(cache_.v(l), b, db), src + db, db, stream);
    src += 2 * db;
    if (sb > 0) {
      device_.copy_host_to_device(block_at(cache_.k_scale(l), b, sb), src, sb, stream);
      device_.copy_host_to_device(block_at(cache_.v_scale(l), b, sb), src + sb, sb, stream);
      src += 2 * sb;
    }
  }
}

uint64_t HostKvTier::copy_in(int g, const std::vector<int32_t>& slots, const std::vector<int32_t>& device_blocks) {
  ELI_CHECK_KIND(kInternal, device_blocks.size() == slots.size(), "host KV copy: block and slot lists differ");
  if (slots.empty()) return 0;
  // Queued behind the steps already launched (one may still write a block freed since, a retired
  // sequence's), ahead of the step that reads these blocks.
  void* stream = device_.default_stream().native();
  const uint8_t* host = static_cast<const uint8_t*>(buffers_.at(static_cast<size_t>(g)).data());
  for (size_t i = 0; i < slots.size(); ++i) {
    copy_block_in(g, host + slot_bytes(g) * static_cast<uint64_t>(slots[i]), device_blocks[i], stream);
  }
  return slot_bytes(g) * slots.size();
}

uint64_t HostKvTier::copy_in_from(int g, const uint8_t* src, int32_t block) {
  copy_block_in(g, src, block, device_.default_stream().native());
  return slot_bytes(g);
}

void HostKvTier::wait() const { device_.default_stream().synchronize(); }

uint8_t* HostKvTier::host_slot(int g, int32_t slot) {
  ELI_CHECK_KIND(kInternal, slot >= 0 && slot < n_slots_, "host KV slot ", slot, " out of range");
  return static_cast<uint8_t*>(buffers_.at(static_cast<size_t>(g)).mutable_data()) +
         slot_bytes(g) * static_cast<uint64_t>(slot);
}

Buffer HostKvTier::allocate_pinned(uint64_t bytes) { return device_.allocate_buffer(bytes, BufferType::kPinnedHost); }

}  // namespace eli
