// runtime/core/direct_reader.cc: see direct_reader.h (Linux O_DIRECT; elsewhere open() refuses).
#include "runtime/core/direct_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "eli/error.h"
#include "runtime/core/fault_injection.h"
#include "runtime/core/mapped_file.h"

namespace eli {

namespace {

constexpr uint64_t kMaxDirectChunk = uint64_t{1} << 30;  // per pread straight into a destination

uint64_t round_down(uint64_t v, uint64_t block) { return v & ~(block - 1); }
uint64_t round_up(uint64_t v, uint64_t block) { return (v + block - 1) & ~(block - 1); }

}  // namespace

AlignedExtent aligned_extent(uint64_t offset, uint64_t bytes, uint64_t block) {
  ELI_CHECK(block > 0 && (block & (block - 1)) == 0, "aligned_extent: block ", block, " is not a power of two");
  AlignedExtent e;
  e.offset = round_down(offset, block);
  e.skip = offset - e.offset;
  e.length = bytes == 0 ? 0 : round_up(e.skip + bytes, block);
  return e;
}

DirectIoMode direct_io_mode_from_env() {
  const char* v = std::getenv("ELI_OFFLOAD_DIRECT_IO");
  if (v == nullptr || *v == 0 || std::strcmp(v, "auto") == 0) return DirectIoMode::kAuto;
  if (std::strcmp(v, "on") == 0) return DirectIoMode::kOn;
  if (std::strcmp(v, "off") == 0) return DirectIoMode::kOff;
  ELI_THROW(kInvalidArgument, "ELI_OFFLOAD_DIRECT_IO must be auto, on or off, got \"", v, "\"");
}

std::unique_ptr<DirectReader> DirectReader::open(const MappedFile& file, std::string* why, uint64_t bounce_bytes,
                                                 uint64_t block) {
  ELI_CHECK(block > 0 && (block & (block - 1)) == 0, "DirectReader: block ", block, " is not a power of two");
#ifndef O_DIRECT
  (void)file;
  (void)bounce_bytes;
  *why = "O_DIRECT is not available on this platform";
  return nullptr;
#else
  if (file.descriptor() < 0) {
    *why = "the file is empty";
    return nullptr;
  }
  std::unique_ptr<DirectReader> r(new DirectReader());
  r->file_ = &file;
  r->block_ = block;
  r->bounce_bytes_ = std::max(round_up(bounce_bytes, block), 2 * block);
  void* p = nullptr;
  const size_t align = static_cast<size_t>(std::max<uint64_t>(block, sizeof(void*)));
  if (::posix_memalign(&p, align, static_cast<size_t>(r->bounce_bytes_)) != 0) {
    *why = "no memory for the bounce buffer";
    return nullptr;
  }
  r->bounce_ = static_cast<uint8_t*>(p);
  // A new open file description of the same inode (dup would share the buffered one's flags).
  const std::string self = "/proc/self/fd/" + std::to_string(file.descriptor());
  r->fd_ = ::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
  if (r->fd_ < 0) {
    *why = std::string("O_DIRECT open failed: ") + std::strerror(errno);
    return nullptr;
  }
  // The probe: one aligned block at the start (a short read at a small file's end is fine).
  ssize_t n = -1;
  do {
    n = ::pread(r->fd_, r->bounce_, static_cast<size_t>(block), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    *why = std::string("O_DIRECT read failed: ") + std::strerror(errno);
    return nullptr;
  }
  return r;
#endif
}

DirectReader::~DirectReader() {
  if (fd_ >= 0) ::close(fd_);
  std::free(bounce_);
}

uint64_t DirectReader::read_aligned(uint64_t pos, uint64_t length, uint64_t want, uint8_t* buf) {
  uint64_t got = 0;
  while (got < want) {
    const ssize_t n = ::pread(fd_, buf + got, static_cast<size_t>(length - got), static_cast<off_t>(pos + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EINVAL) return 0;
    const int err = errno;
    ELI_CHECK_KIND(kIO, n > 0, file_->path(), ": direct read of ", length - got, " bytes at offset ", pos + got,
                   " failed: ", n == 0 ? "unexpected end of file (was it truncated?)" : std::strerror(err));
    got += static_cast<uint64_t>(n);
    // A read that stopped off a block boundary (the file's end) cannot continue with O_DIRECT.
    if (got < want && got % block_ != 0) return 0;
  }
  return got;
}

bool DirectReader::read(uint64_t offset, uint64_t bytes, void* dst) {
  ELI_CHECK_KIND(kInternal, offset <= file_->size() && bytes <= file_->size() - offset, file_->path(), ": read of ",
                 bytes, " bytes at ", offset, " outside the file's ", file_->size());
  ELI_CHECK_KIND(kIO, !fault_fires(FaultPoint::kDiskRead), file_->path(), ": read of ", bytes, " bytes at offset ",
                 offset, " failed: injected fault (disk_read)");
  auto* out = static_cast<uint8_t*>(dst);
  const uint64_t B = block_;
  // Congruent: the destination and the file offset have the same position within a block, so
  // whole blocks can land in place.
  const bool congruent = (reinterpret_cast<uintptr_t>(out) - offset) % B == 0;
  uint64_t pos = offset, left = bytes;
  while (left > 0) {
    if (congruent && pos % B == 0 && left >= B) {
      const uint64_t n = std::min(round_down(left, B), kMaxDirectChunk);
      if (read_aligned(pos, n, n, out) == 0) return false;
      direct_ += n;
      out += n;
      pos += n;
      left -= n;
      continue;
    }
    // Through the bounce buffer: a congruent head only up to the next block boundary.
    uint64_t want = std::min(left, bounce_bytes_ - B);
    if (congruent && pos % B != 0) want = std::min(want, B - pos % B);
    const AlignedExtent e = aligned_extent(pos, want, B);
    if (read_aligned(e.offset, e.length, e.skip + want, bounce_) == 0) return false;
    std::memcpy(out, bounce_ + e.skip, static_cast<size_t>(want));
    bounced_ += want;
    out += want;
    pos += want;
    left -= want;
  }
  return true;
}

}  // namespace eli
