// runtime/kv/disk_kv_tier.h: the disk tier of the prefix cache (option kv_offload_disk_gb): named
// KV blocks in one preallocated file of n_slots x slot_bytes, slots reused least recently used
// first. The host-tier prefix cache (runtime/kv/host_prefix_cache.h) writes the entries it drops
// here and reads them back on a hit; this class is the file and the index, nothing else (no
// device, no KV layout: a slot is slot_bytes opaque bytes, the host slot's exact bytes).
//
// Names: like host entries, an entry keeps the hash, tokens, serial and parent serial its block
// had as a device entry, and find() verifies a hit the same way (equal hash, equal parent serial,
// equal tokens): a hash collision costs a miss, never a wrong block. At most one entry per hash.
//
// The file: created (O_EXCL, mode 0600) in `dir`, or in a fresh temporary directory (mkdtemp under
// $TMPDIR or /tmp) when dir is empty, preallocated (posix_fallocate: a full disk is an error at
// load, not at a write), then unlinked at once together with the temporary directory: only the
// open descriptor names it, so nothing is left behind at shutdown or if the process is killed
// (its space shows in df, not in ls). I/O is plain pread / pwrite through the page cache.
//
// Errors: a write that fails (pwrite error, short write, or fault point kv_disk_write) drops the
// entry and returns false; a read that fails (pread error, or kv_disk_read) drops the entry and
// returns false. Both are counted and logged once to stderr; neither throws: the caller treats a
// lost entry as a miss (recompute). Synchronous: every call does its I/O before returning.
//
// Invariants: map_ and the LRU list hold exactly the used slots; free_ holds the others, each
// once; every used slot's meta has the hash map_ names it by.
#pragma once

#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

namespace eli {

class DiskKvTier {
 public:
  // n_slots in [1, 2^31 - 2], slot_bytes > 0. Throws Error(kInvalidArgument) when `dir` is not an
  // existing writable directory or the file does not fit in it; Error(kIO) for other file errors.
  DiskKvTier(const std::string& dir, uint64_t slot_bytes, int64_t n_slots);
  ~DiskKvTier();
  DiskKvTier(const DiskKvTier&) = delete;
  DiskKvTier& operator=(const DiskKvTier&) = delete;
  // The slots of slot_bytes each that `bytes` hold (at most 2^31 - 2).
  static int64_t slots_for_bytes(uint64_t slot_bytes, uint64_t bytes);

  int64_t n_slots() const { return static_cast<int64_t>(meta_.size()); }
  int64_t n_entries() const { return static_cast<int64_t>(map_.size()); }
  uint64_t slot_bytes() const { return slot_bytes_; }
  bool contains(uint64_t hash) const { return map_.count(hash) != 0; }

  // Writes slot_bytes bytes as the entry named (hash, serial, parent_serial, tokens), the most
  // recently used; when the file is full the least recently used entry is dropped first. The hash
  // must not be held (kInternal). false: the write failed and nothing is stored.
  bool put(uint64_t hash, uint64_t serial, uint64_t parent_serial, const std::vector<int32_t>& tokens,
           const uint8_t* bytes);
  // The slot of the entry named `hash` with `parent_serial` and tokens[0, n), or -1. No side effects.
  int32_t find(uint64_t hash, uint64_t parent_serial, const int32_t* tokens, int64_t n) const;
  // The entry's original device serial (what its children's parent serial names).
  uint64_t serial(int32_t slot) const;
  // Reads an entry's slot_bytes bytes into dst and marks it most recently used. false: the read
  // failed and the entry is dropped.
  bool read(int32_t slot, uint8_t* dst);

  uint64_t bytes_written() const { return bytes_written_; }
  uint64_t bytes_read() const { return bytes_read_; }
  int64_t write_failures() const { return write_failures_; }
  int64_t read_failures() const { return read_failures_; }
  // Checks the invariants above; throws eli::Error(kInternal) when broken (tests).
  void check_invariants() const;

 private:
  struct Meta {
    uint64_t hash = 0, serial = 0, parent_serial = 0;
    std::vector<int32_t> tokens;
    bool used = false;
    std::list<int32_t>::iterator lru;
  };
  void drop(int32_t slot);
  // pwrite / pread of the whole slot; false on an error or a short transfer (errno text in *why).
  bool write_slot(int32_t slot, const uint8_t* bytes, std::string* why);
  bool read_slot(int32_t slot, uint8_t* dst, std::string* why);

  int fd_ = -1;
  std::string path_;  // where the file was created (already unlinked), for messages
  uint64_t slot_bytes_ = 0;
  std::vector<Meta> meta_;                     // per slot
  std::vector<int32_t> free_;                  // free slots (a stack)
  std::unordered_map<uint64_t, int32_t> map_;  // hash -> slot
  std::list<int32_t> lru_;                     // used slots, least recently used first
  uint64_t bytes_written_ = 0, bytes_read_ = 0;
  int64_t write_failures_ = 0, read_failures_ = 0;
  bool logged_write_ = false, logged_read_ = false;
};

}  // namespace eli
