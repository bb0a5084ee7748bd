// runtime/device/size_class_pool.cc: the caching allocator's bookkeeping (see size_class_pool.h).
// Fault point "device_alloc" (runtime/core/fault_injection.h): allocate() throws the same
// Error(kOutOfMemory) a failed backend allocation throws, before touching any state.
#include "runtime/device/size_class_pool.h"

#include <algorithm>

#include "eli/error.h"
#include "runtime/core/checked_math.h"
#include "runtime/core/fault_injection.h"

namespace eli {

MemoryStats PoolStats::to_memory_stats() const {
  MemoryStats m;
  m.reserved_bytes = reserved_bytes;
  m.in_use_bytes = in_use_bytes;
  m.peak_in_use_bytes = peak_in_use_bytes;
  m.n_driver_allocs = n_driver_allocs;
  m.n_allocs = n_allocs;
  return m;
}

SizeClassPool::SizeClassPool(PoolBackend* backend, SizeClassPoolOptions options)
    : backend_(backend), options_(options) {
  ELI_CHECK(backend_ != nullptr, "SizeClassPool needs a backend");
  ELI_CHECK(options_.small_granularity > 0 && options_.large_granularity > 0,
            "pool granularities must be positive");
  ELI_CHECK(options_.large_reuse_slack_percent >= 100, "large_reuse_slack_percent must be >= 100");
  stats_.budget_bytes = options_.budget_bytes;
  load_faults_from_env();
}

SizeClassPool::~SizeClassPool() {
  // The owner (a Device) must outlive every allocation; whatever is left goes back now.
  std::lock_guard<std::mutex> lock(mu_);
  release_cached_locked();
  for (auto& kv : live_) backend_->free(kv.first, kv.second.size);
  live_.clear();
}

size_t SizeClassPool::round_size(size_t bytes) const {
  if (bytes == 0) bytes = 1;
  const size_t g = bytes < options_.large_threshold ? options_.small_granularity : options_.large_granularity;
  uint64_t padded = 0;
  if (!checked_add_u64(bytes, g - 1, &padded) || padded > static_cast<uint64_t>(SIZE_MAX)) {
    ELI_THROW(kOutOfMemory, backend_->name(), ": request of ", bytes, " bytes is too large");
  }
  return static_cast<size_t>(padded / g * g);
}

void* SizeClassPool::take_cached_locked(size_t rounded, void* stream, size_t* size) {
  auto it = free_.lower_bound(FreeKey{stream, rounded});
  if (it == free_.end() || it->first.first != stream) return nullptr;
  const size_t found = it->first.second;
  if (found != rounded) {
    // Small classes are exact; a large block may be somewhat bigger than asked.
    if (rounded < options_.large_threshold) return nullptr;
    uint64_t limit = 0;
    if (!checked_mul_u64(rounded, options_.large_reuse_slack_percent, &limit) ||
        static_cast<uint64_t>(found) * 100 > limit) {
      return nullptr;
    }
  }
  void* p = it->second.back();
  it->second.pop_back();
  if (it->second.empty()) free_.erase(it);
  --stats_.n_cached_blocks;
  *size = found;
  return p;
}

void SizeClassPool::throw_oom_locked(size_t requested, size_t rounded, const char* why) const {
  ELI_THROW(kOutOfMemory, backend_->name(), " out of memory (", why, "): requested ", requested,
            " bytes (rounded ", rounded, "), in use ", stats_.in_use_bytes, ", reserved ",
            stats_.reserved_bytes, ", budget ",
            (stats_.budget_bytes ? std::to_string(stats_.budget_bytes) : std::string("none")),
            ", device free ", backend_->free_bytes());
}

void* SizeClassPool::backend_alloc_locked(size_t rounded, size_t requested) {
  auto over_budget = [&]() {
    return stats_.budget_bytes != 0 && (stats_.reserved_bytes > stats_.budget_bytes ||
                                        rounded > stats_.budget_bytes - stats_.reserved_bytes);
  };
  if (over_budget()) {
    release_cached_locked();
    if (over_budget()) throw_oom_locked(requested, rounded, "over budget");
  }
  void* p = backend_->alloc(rounded);
  if (p == nullptr && stats_.n_cached_blocks > 0) {
    // Cached blocks of other classes may be what stands in the way: give them back and retry.
    release_cached_locked();
    p = backend_->alloc(rounded);
  }
  if (p == nullptr) throw_oom_locked(requested, rounded, "backend allocation failed");
  ++stats_.n_driver_allocs;
  stats_.reserved_bytes += rounded;
  stats_.peak_reserved_bytes = std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  return p;
}

void* SizeClassPool::allocate(size_t bytes, void* stream) {
  const size_t rounded = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  if (fault_fires(FaultPoint::kDeviceAlloc)) throw_oom_locked(bytes, rounded, "injected fault device_alloc");
  size_t size = rounded;
  void* p = take_cached_locked(rounded, stream, &size);
  if (p != nullptr) {
    ++stats_.n_cache_hits;
  } else {
    p = backend_alloc_locked(rounded, bytes);
  }
  const size_t requested = bytes == 0 ? 1 : bytes;
  live_.emplace(p, Block{size, requested, stream});
  stats_.in_use_bytes += size;
  stats_.requested_bytes += requested;
  stats_.peak_in_use_bytes = std::max(stats_.peak_in_use_bytes, stats_.in_use_bytes);
  ++stats_.n_allocs;
  ++stats_.n_live_blocks;
  return p;
}

void SizeClassPool::free(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  ELI_CHECK(it != live_.end(), backend_->name(), ": free of a pointer this pool did not allocate");
  const Block b = it->second;
  live_.erase(it);
  stats_.in_use_bytes -= b.size;
  stats_.requested_bytes -= b.requested;
  --stats_.n_live_blocks;
  free_[FreeKey{b.stream, b.size}].push_back(ptr);
  ++stats_.n_cached_blocks;
}

void SizeClassPool::reserve(size_t bytes, size_t count, void* stream) {
  const size_t rounded = round_size(bytes);
  if (count == 0) return;
  uint64_t total = 0;
  if (!checked_mul_u64(rounded, count, &total)) {
    ELI_THROW(kOutOfMemory, backend_->name(), ": reserve of ", count, " x ", bytes, " bytes overflows");
  }
  std::lock_guard<std::mutex> lock(mu_);
  // All or nothing: check the budget for the whole request first (releasing cache if that helps),
  // and give back what was taken if the backend fails part way.
  auto over_budget = [&]() {
    return stats_.budget_bytes != 0 &&
           (stats_.reserved_bytes > stats_.budget_bytes || total > stats_.budget_bytes - stats_.reserved_bytes);
  };
  if (over_budget()) {
    release_cached_locked();
    if (over_budget()) throw_oom_locked(total, total, "reserve over budget");
  }
  std::vector<void*> taken;
  taken.reserve(count);
  try {
    for (size_t i = 0; i < count; ++i) taken.push_back(backend_alloc_locked(rounded, bytes));
  } catch (...) {
    for (void* p : taken) {
      backend_->free(p, rounded);
      ++stats_.n_driver_frees;
      stats_.reserved_bytes -= rounded;
    }
    throw;
  }
  auto& list = free_[FreeKey{stream, rounded}];
  list.insert(list.end(), taken.begin(), taken.end());
  stats_.n_cached_blocks += count;
}

uint64_t SizeClassPool::release_cached_locked() {
  uint64_t released = 0;
  for (auto& kv : free_) {
    for (void* p : kv.second) {
      backend_->free(p, kv.first.second);
      released += kv.first.second;
      ++stats_.n_driver_frees;
    }
  }
  free_.clear();
  stats_.n_cached_blocks = 0;
  stats_.reserved_bytes -= released;
  return released;
}

uint64_t SizeClassPool::release_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  return release_cached_locked();
}

void SizeClassPool::set_budget(uint64_t budget_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.budget_bytes = budget_bytes;
  options_.budget_bytes = budget_bytes;
  if (budget_bytes != 0 && stats_.reserved_bytes > budget_bytes) release_cached_locked();
}

PoolStats SizeClassPool::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void SizeClassPool::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_in_use_bytes = stats_.in_use_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

bool SizeClassPool::owns(const void* ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_.count(const_cast<void*>(ptr)) != 0;
}

size_t SizeClassPool::block_size(const void* ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(const_cast<void*>(ptr));
  return it == live_.end() ? 0 : it->second.size;
}

}  // namespace eli
