// runtime/device/buffer.h: Buffer, one owned region of memory of a known type (ggml's buffer /
// buffer-type split, as a plain move-only value).
//
// Buffer types:
//   kDevice      the device's own memory, from its caching pool (host RAM on the CPU).
//   kPinnedHost  page-locked host memory that the device copies to and from asynchronously
//                (cudaHostAlloc; plain 64-byte aligned RAM on the CPU). The staging type.
//   kMappedFile  a read-only view of a region of a memory-mapped file, without a copy: weights
//                that a host-memory device (the CPU) uses in place, or the source of an upload.
// Device::allocate_buffer(bytes, type) makes the first two; map_file_buffer() the third.
//
// Invariants: a Buffer owns its memory exclusively and returns it when destroyed or reset (to the
// pool it came from; a mapped buffer drops its reference to the file, which stays mapped while
// any view of it lives). A Buffer from a Device must be destroyed before that Device. A mapped
// buffer is read-only: mutable_data() throws kInvalidArgument. Freeing device or pinned memory
// that queued work still uses is the caller's error, as with raw pointers: synchronize first.
#pragma once

#include <cstdint>
#include <memory>

#include "eli/device.h"

namespace eli {

class MappedFile;

enum class BufferType : int {
  kDevice = 0,
  kPinnedHost = 1,
  kMappedFile = 2,
};
const char* buffer_type_name(BufferType type);  // "device", "pinned host", "mapped file"

class Buffer {
 public:
  // Returns `data` to whatever gave it (a pool); `context` is that owner.
  using ReleaseFn = void (*)(void* context, void* data) noexcept;

  Buffer() = default;
  // For implementers (devices, map_file_buffer): takes ownership of `data`. `release` may be null
  // (nothing to return, e.g. a view kept alive by `keep_alive` alone).
  Buffer(void* data, uint64_t size, DeviceId device, BufferType type, bool host_accessible, ReleaseFn release,
         void* context, std::shared_ptr<const void> keep_alive = nullptr);
  ~Buffer() { reset(); }
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  const void* data() const { return data_; }
  // Writable memory; throws kInvalidArgument for a read-only (mapped-file) buffer.
  void* mutable_data() const;
  uint64_t size() const { return size_; }
  // The device whose allocator made it; cpu:0 for mapped-file buffers. A pinned buffer belongs to
  // the device it was pinned for (its copies are the fast ones).
  DeviceId device() const { return device_; }
  BufferType type() const { return type_; }
  // The host may dereference data(): pinned and mapped buffers, and kDevice buffers of a device
  // whose memory is host memory (the CPU).
  bool host_accessible() const { return host_accessible_; }
  bool read_only() const { return type_ == BufferType::kMappedFile; }
  // Holds memory (a default-constructed or moved-from Buffer does not).
  bool valid() const { return valid_; }
  // Returns the memory now; the Buffer is then empty.
  void reset() noexcept;

 private:
  void* data_ = nullptr;
  uint64_t size_ = 0;
  DeviceId device_{};
  BufferType type_ = BufferType::kDevice;
  bool host_accessible_ = false;
  bool valid_ = false;
  ReleaseFn release_ = nullptr;
  void* context_ = nullptr;
  std::shared_ptr<const void> keep_alive_;
};

// A read-only view of bytes [offset, offset + bytes) of `file` (type kMappedFile, device cpu:0,
// host accessible); keeps the file mapped while it lives. Throws kInvalidArgument when the range
// is not inside the file or `file` is null.
Buffer map_file_buffer(std::shared_ptr<const MappedFile> file, uint64_t offset, uint64_t bytes);

}  // namespace eli
