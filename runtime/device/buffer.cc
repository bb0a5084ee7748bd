// runtime/device/buffer.cc: Buffer ownership and map_file_buffer (see buffer.h).
#include "runtime/device/buffer.h"

#include <utility>

#include "eli/error.h"
#include "runtime/core/mapped_file.h"

namespace eli {

const char* buffer_type_name(BufferType type) {
  switch (type) {
    case BufferType::kDevice: return "device";
    case BufferType::kPinnedHost: return "pinned host";
    case BufferType::kMappedFile: return "mapped file";
  }
  return "unknown";
}

Buffer::Buffer(void* data, uint64_t size, DeviceId device, BufferType type, bool host_accessible, ReleaseFn release,
               void* context, std::shared_ptr<const void> keep_alive)
    : data_(data),
      size_(size),
      device_(device),
      type_(type),
      host_accessible_(host_accessible),
      valid_(true),
      release_(release),
      context_(context),
      keep_alive_(std::move(keep_alive)) {}

Buffer::Buffer(Buffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      device_(o.device_),
      type_(o.type_),
      host_accessible_(o.host_accessible_),
      valid_(std::exchange(o.valid_, false)),
      release_(std::exchange(o.release_, nullptr)),
      context_(std::exchange(o.context_, nullptr)),
      keep_alive_(std::move(o.keep_alive_)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    device_ = o.device_;
    type_ = o.type_;
    host_accessible_ = o.host_accessible_;
    valid_ = std::exchange(o.valid_, false);
    release_ = std::exchange(o.release_, nullptr);
    context_ = std::exchange(o.context_, nullptr);
    keep_alive_ = std::move(o.keep_alive_);
  }
  return *this;
}

void* Buffer::mutable_data() const {
  ELI_CHECK(!read_only(), "a ", buffer_type_name(type_), " buffer is read-only");
  return data_;
}

void Buffer::reset() noexcept {
  if (release_ != nullptr && data_ != nullptr) release_(context_, data_);
  data_ = nullptr;
  size_ = 0;
  valid_ = false;
  release_ = nullptr;
  context_ = nullptr;
  keep_alive_.reset();
}

Buffer map_file_buffer(std::shared_ptr<const MappedFile> file, uint64_t offset, uint64_t bytes) {
  ELI_CHECK(file != nullptr, "map_file_buffer of a null file");
  const uint64_t size = file->size();
  ELI_CHECK(offset <= size && bytes <= size - offset, "bytes [", offset, ", ", offset, " + ", bytes,
            ") are not inside ", file->path(), " (", size, " bytes)");
  void* data = bytes == 0 ? nullptr : const_cast<uint8_t*>(file->data() + offset);
  return Buffer(data, bytes, DeviceId{DeviceKind::kCPU, 0}, BufferType::kMappedFile, true, nullptr, nullptr,
                std::move(file));
}

}  // namespace eli
