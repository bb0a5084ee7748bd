// runtime/core/mapped_file.cc: POSIX implementation of MappedFile and read_regular_file.
#include "runtime/core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "eli/error.h"
#include "runtime/core/fault_injection.h"

namespace eli {

namespace {

// Opens `path` read-only without blocking and checks that it is a regular file; returns the
// descriptor (the caller closes it) and its size.
int open_regular(const std::string& path, const std::string& name, uint64_t* size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  ELI_CHECK_KIND(kModelLoad, fd >= 0, name, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const bool dir = S_ISDIR(st.st_mode);
    ::close(fd);
    ELI_THROW(kModelLoad, name, dir ? ": is a directory, not a file" : ": not a regular file (a FIFO, device or socket)");
  }
  *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path, const std::string& display) {
  const std::string& name = display.empty() ? path : display;
  uint64_t size = 0;
  const int fd = open_regular(path, name, &size);
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = name;
  file->size_ = size;
  if (file->size_ > 0) {
    void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    if (p == MAP_FAILED) ::close(fd);
    ELI_CHECK_KIND(kModelLoad, p != MAP_FAILED, name, ": mmap failed: ", std::strerror(err));
    file->data_ = static_cast<const uint8_t*>(p);
    file->fd_ = fd;
  } else {
    ::close(fd);
  }
  return file;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  if (fd_ >= 0) ::close(fd_);
}

bool MappedFile::contains(const void* p, uint64_t bytes, uint64_t* offset) const {
  const auto* b = static_cast<const uint8_t*>(p);
  if (data_ == nullptr || b < data_ || b > data_ + size_ || bytes > static_cast<uint64_t>(data_ + size_ - b)) {
    return false;
  }
  *offset = static_cast<uint64_t>(b - data_);
  return true;
}

void MappedFile::drop_cached(uint64_t offset, uint64_t bytes) const {
  if (fd_ >= 0) (void)::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(bytes), POSIX_FADV_DONTNEED);
}

void MappedFile::read_at(uint64_t offset, uint64_t bytes, void* dst) const {
  ELI_CHECK_KIND(kInternal, offset <= size_ && bytes <= size_ - offset, path_, ": read of ", bytes, " bytes at ",
                 offset, " outside the file's ", size_);
  ELI_CHECK_KIND(kIO, !fault_fires(FaultPoint::kDiskRead), path_, ": read of ", bytes, " bytes at offset ", offset,
                 " failed: injected fault (disk_read)");
  auto* out = static_cast<uint8_t*>(dst);
  while (bytes > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(bytes, uint64_t{1} << 30));
    const ssize_t n = ::pread(fd_, out, chunk, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    const int err = errno;
    ELI_CHECK_KIND(kIO, n > 0, path_, ": read of ", bytes, " bytes at offset ", offset, " failed: ",
                   n == 0 ? "unexpected end of file (was it truncated?)" : std::strerror(err));
    out += n;
    offset += static_cast<uint64_t>(n);
    bytes -= static_cast<uint64_t>(n);
  }
}

std::string read_regular_file(const std::string& path, uint64_t max_bytes, const std::string& display) {
  const std::string& name = display.empty() ? path : display;
  uint64_t size = 0;
  const int fd = open_regular(path, name, &size);
  if (size > max_bytes) {
    ::close(fd);
    ELI_THROW(kModelLoad, name, ": ", size, " bytes exceeds the limit of ", max_bytes);
  }
  std::string text(static_cast<size_t>(size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, &text[got], text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : 0;
      ::close(fd);
      ELI_THROW(kModelLoad, name, ": read failed after ", got, " of ", size, " bytes",
                err != 0 ? std::string(": ") + std::strerror(err) : std::string(" (file shrank)"));
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  return text;
}

}  // namespace eli
