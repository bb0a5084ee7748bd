// runtime/core/mapped_file.h: a read-only memory map of a whole file, and a bounded whole-file
// read, both of regular files only.
//
// Invariants: size() is the size observed by fstat at open time, and the mapping covers exactly
// that; data() stays valid and the descriptor open (read_at) for the object's lifetime. Files are
// opened O_NONBLOCK and checked with fstat on the descriptor: a FIFO, device, socket or directory
// is refused without blocking (a FIFO opened for reading would otherwise wait forever for a
// writer). Failures throw
// eli::Error(kModelLoad) naming the path (`display` when given, e.g. the name the user sees rather
// than a resolved blob path) and never quoting the file's content. An empty file maps to
// data() == nullptr, size() == 0.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace eli {

class MappedFile {
 public:
  // path: what to open; display: the name used in messages and path() (default: path).
  static std::shared_ptr<MappedFile> open(const std::string& path, const std::string& display = "");
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Whether [p, p + bytes) lies inside the mapping (then *offset is p's offset in the file).
  bool contains(const void* p, uint64_t bytes, uint64_t* offset) const;
  // Reads bytes [offset, offset + bytes) of the file into dst with pread (no page of the mapping
  // is touched): the disk tier of weight offloading streams layers this way, so an I/O error is an
  // error to report (kIO, naming the file) rather than a SIGBUS on a mapped page. Thread-safe.
  void read_at(uint64_t offset, uint64_t bytes, void* dst) const;
  // Asks the kernel to drop its cached pages of that range (posix_fadvise DONTNEED; best effort):
  // a disk tier that must not grow the page cache, and benchmarks that measure the disk.
  void drop_cached(uint64_t offset, uint64_t bytes) const;
  // The open descriptor (-1 for an empty file): DirectReader reopens it with O_DIRECT.
  int descriptor() const { return fd_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  int fd_ = -1;  // kept open for read_at()
};

// Reads a whole regular file of at most max_bytes (more: kModelLoad "... exceeds the limit").
std::string read_regular_file(const std::string& path, uint64_t max_bytes, const std::string& display = "");

}  // namespace eli
