// runtime/core/direct_reader.h: reads of a MappedFile's bytes that bypass the page cache (O_DIRECT),
// for the disk tier of weight offloading (docs/offloading.md): a layer streamed from the file at each
// step is read once per step, so caching it only evicts what the host needs, and a model larger
// than RAM would thrash the cache anyway.
//
// O_DIRECT reads must start at a multiple of the logical block size, ask for a multiple of it, and
// land in a buffer aligned to it (4096 is safe on every Linux filesystem and device). A wanted range
// [offset, offset + bytes) is read as aligned extents (aligned_extent) into an aligned bounce
// buffer and the wanted sub-range copied out; when the destination and the file offset are
// congruent modulo the block, the whole blocks in the middle are read straight into the
// destination and only the partial head and tail go through the bounce buffer.
//
// Invariants: a DirectReader has its own descriptor (the file reopened through /proc/self/fd with
// O_DIRECT, so it is the same inode as the mapping even if the path changed since); open() probes
// one aligned read and returns nullptr (with the reason) where the filesystem refuses O_DIRECT,
// so callers fall back to MappedFile::read_at; read() never writes outside [dst, dst + bytes);
// the fault point disk_read is checked once per read(), as in MappedFile::read_at, and I/O errors
// are kIO naming the file. Not thread-safe (one bounce buffer): one caller at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace eli {

class MappedFile;

// The aligned read that covers [offset, offset + bytes): `offset` rounded down and the end rounded
// up to multiples of `block` (a power of two). Past the file's end the read simply returns short.
struct AlignedExtent {
  uint64_t offset = 0;  // where the read starts (a multiple of block)
  uint64_t length = 0;  // bytes to ask for (a multiple of block; 0 when bytes == 0)
  uint64_t skip = 0;    // where the wanted bytes start in what is read (< block)
};
AlignedExtent aligned_extent(uint64_t offset, uint64_t bytes, uint64_t block);

// ELI_OFFLOAD_DIRECT_IO: auto (default; O_DIRECT where the filesystem allows it), on (the same, but
// a refusal is also written to stderr once) or off (buffered pread). Another value: kInvalidArgument.
enum class DirectIoMode { kAuto, kOn, kOff };
DirectIoMode direct_io_mode_from_env();

class DirectReader {
 public:
  static constexpr uint64_t kBlock = 4096;
  static constexpr uint64_t kDefaultBounceBytes = uint64_t{8} << 20;

  // nullptr and *why (e.g. "O_DIRECT open failed: Invalid argument") where it cannot be used.
  // bounce_bytes: the bounce buffer (rounded up to a multiple of block, at least 2 blocks); block:
  // the alignment (a power of two; tests pass other values to drive the refusal path).
  static std::unique_ptr<DirectReader> open(const MappedFile& file, std::string* why,
                                            uint64_t bounce_bytes = kDefaultBounceBytes, uint64_t block = kBlock);
  ~DirectReader();
  DirectReader(const DirectReader&) = delete;
  DirectReader& operator=(const DirectReader&) = delete;

  // Reads [offset, offset + bytes) of the file (inside it) into dst. False when the filesystem
  // refused an O_DIRECT read (EINVAL) on the way: dst's contents are then unspecified and the
  // caller reads the range again with MappedFile::read_at. Other errors throw kIO.
  bool read(uint64_t offset, uint64_t bytes, void* dst);
  uint64_t bytes_through_bounce() const { return bounced_; }  // head / tail / non-congruent bytes
  uint64_t bytes_direct() const { return direct_; }           // read straight into destinations

 private:
  DirectReader() = default;
  // Reads want bytes at the aligned position pos into buf (aligned) with O_DIRECT, asking for
  // `length` bytes (a multiple of block). 0 when refused (EINVAL); else the bytes read (>= want).
  uint64_t read_aligned(uint64_t pos, uint64_t length, uint64_t want, uint8_t* buf);

  const MappedFile* file_ = nullptr;
  int fd_ = -1;
  uint64_t block_ = kBlock;
  uint8_t* bounce_ = nullptr;  // (bounce_bytes_) aligned to block_
  uint64_t bounce_bytes_ = 0;
  uint64_t bounced_ = 0, direct_ = 0;
};

}  // namespace eli
