// runtime/core/mapped_file.cc: POSIX implementation of MappedFile and read_regular_file.
#include "runtime/core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "eli/error.h"

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
    ::close(fd);
    ELI_CHECK_KIND(kModelLoad, p != MAP_FAILED, name, ": mmap failed: ", std::strerror(err));
    file->data_ = static_cast<const uint8_t*>(p);
  } else {
    ::close(fd);
  }
  return file;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
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
