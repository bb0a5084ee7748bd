// runtime/device/pooled_device.cc: see pooled_device.h.
#include "runtime/device/pooled_device.h"

#include "eli/error.h"
#include "runtime/core/thread_pool.h"

namespace eli {
namespace {

// Buffer::ReleaseFn for pool blocks; context is the SizeClassPool.
void release_to_pool(void* context, void* data) noexcept {
  try {
    static_cast<SizeClassPool*>(context)->free(data);
  } catch (...) {
    // Only a foreign pointer throws, which a Buffer never holds: nothing to do in a destructor.
  }
}

}  // namespace

PooledDevice::PooledDevice(const DeviceOptions& options)
    : options_(options), host_pinned_pool_(std::make_unique<SizeClassPool>(&host_pinned_backend_)) {}

PooledDevice::~PooledDevice() = default;

void* PooledDevice::allocate(size_t bytes) { return pool().allocate(bytes, default_stream().native()); }

void PooledDevice::free(void* ptr) { pool().free(ptr); }

SizeClassPool& PooledDevice::pool_of(BufferType type) const {
  PooledDevice* self = const_cast<PooledDevice*>(this);
  return type == BufferType::kPinnedHost ? self->pinned_pool() : self->pool();
}

Buffer PooledDevice::allocate_buffer(uint64_t bytes, BufferType type) {
  ELI_CHECK(type == BufferType::kDevice || type == BufferType::kPinnedHost, "a ", buffer_type_name(type),
            " buffer is not allocated (map_file_buffer makes one)");
  ELI_CHECK_KIND(kOutOfMemory, bytes <= (uint64_t{1} << 56), "a buffer of ", bytes, " bytes on ", device_name(id()));
  const bool pinned = type == BufferType::kPinnedHost;
  SizeClassPool& p = pool_of(type);
  void* data = pinned ? p.allocate(static_cast<size_t>(bytes), nullptr) : allocate(static_cast<size_t>(bytes));
  // allocate() may be overridden (the tests' fakes) but always comes from pool().
  return Buffer(data, bytes, id(), type, pinned || properties_.host_memory, &release_to_pool, &p);
}

MemoryStats PooledDevice::memory_stats() const { return pool_of(BufferType::kDevice).stats().to_memory_stats(); }

MemoryStats PooledDevice::pinned_memory_stats() const {
  return pool_of(BufferType::kPinnedHost).stats().to_memory_stats();
}

void PooledDevice::set_memory_budget(uint64_t bytes) { pool().set_budget(bytes); }

uint64_t PooledDevice::release_cached(BufferType type) {
  ELI_CHECK(type != BufferType::kMappedFile, "mapped-file buffers have no cache");
  return pool_of(type).release_cached();
}

uint64_t PooledDevice::allocation_size(uint64_t bytes) const {
  if (bytes > (uint64_t{1} << 60)) return bytes;  // beyond any device: no rounding (no overflow)
  return pool_of(BufferType::kDevice).round_size(static_cast<size_t>(bytes));
}

std::unique_ptr<Stream> PooledDevice::create_stream(int) const { return std::make_unique<ImmediateStream>(this); }

std::unique_ptr<Event> PooledDevice::create_event(bool timing) const { return std::make_unique<HostEvent>(this, timing); }

ThreadPool& PooledDevice::thread_pool() const {
  std::call_once(threads_once_, [this] { threads_ = std::make_unique<ThreadPool>(options_.n_threads); });
  return *threads_;
}

}  // namespace eli
