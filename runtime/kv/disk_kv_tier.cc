// runtime/kv/disk_kv_tier.cc: see disk_kv_tier.h.
#include "runtime/kv/disk_kv_tier.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "eli/error.h"
#include "runtime/core/fault_injection.h"
#include "runtime/core/format_bytes.h"
#include "runtime/kv/prefix_cache.h"

namespace eli {

namespace {

std::atomic<uint64_t> g_file_counter{0};

// A fresh directory under $TMPDIR (or /tmp); throws kIO when none can be made.
std::string make_temp_dir() {
  const char* env = std::getenv("TMPDIR");
  std::string base = env != nullptr && env[0] != '\0' ? env : "/tmp";
  std::string templ = base + "/eli-kv-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  const char* made = ::mkdtemp(buf.data());
  const int err = errno;
  ELI_CHECK_KIND(kIO, made != nullptr, "kv_offload_disk_path: cannot create a temporary directory under ", base,
                 ": ", std::strerror(err), " (set kv_offload_disk_path to a writable directory)");
  return std::string(made);
}

}  // namespace

int64_t DiskKvTier::slots_for_bytes(uint64_t slot_bytes, uint64_t bytes) {
  return slot_bytes == 0 ? 0 : static_cast<int64_t>(std::min<uint64_t>(bytes / slot_bytes, (uint64_t{1} << 31) - 2));
}

DiskKvTier::DiskKvTier(const std::string& dir, uint64_t slot_bytes, int64_t n_slots) : slot_bytes_(slot_bytes) {
  ELI_CHECK_ARG(n_slots > 0 && n_slots < (int64_t{1} << 31) - 1, "disk KV tier slot count ", n_slots,
                " out of range");
  ELI_CHECK_ARG(slot_bytes > 0, "disk KV tier slots must not be empty");
  const uint64_t total = slot_bytes * static_cast<uint64_t>(n_slots);
  ELI_CHECK_ARG(total / static_cast<uint64_t>(n_slots) == slot_bytes, "disk KV tier size overflows");
  const bool temp = dir.empty();
  std::string where = dir;
  if (temp) {
    where = make_temp_dir();
  } else {
    struct stat st{};
    ELI_CHECK_ARG(::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode), "kv_offload_disk_path = '", dir,
                  "' is not an existing directory");
    ELI_CHECK_ARG(::access(dir.c_str(), W_OK | X_OK) == 0, "kv_offload_disk_path = '", dir,
                  "' is not writable by this process");
  }
  path_ = where + "/eli-kv-" + std::to_string(::getpid()) + "-" + std::to_string(g_file_counter.fetch_add(1)) + ".bin";
  auto remove_temp = [&] {
    if (temp) (void)::rmdir(where.c_str());
  };
  // Room for the whole file (statvfs first, for a clear message; fallocate below is the real test).
  struct statvfs vfs{};
  if (::statvfs(where.c_str(), &vfs) == 0) {
    const uint64_t avail = static_cast<uint64_t>(vfs.f_bavail) * static_cast<uint64_t>(vfs.f_frsize);
    if (total > avail) {
      remove_temp();
      ELI_THROW(kInvalidArgument, "kv_offload_disk_gb: the disk tier needs ", format_bytes(total), " but ", where,
                " has only ", format_bytes(avail), " free; lower kv_offload_disk_gb or choose another "
                "kv_offload_disk_path");
    }
  }
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd_ < 0) {
    const int err = errno;
    remove_temp();
    detail::throw_error(err == EACCES || err == EROFS ? ErrorKind::kInvalidArgument : ErrorKind::kIO, __FILE__,
                        __LINE__, nullptr,
                        detail::concat("kv_offload_disk_path: cannot create ", path_, ": ", std::strerror(err)));
  }
  // Unlinked at once: the descriptor is the only name, so nothing outlives the process.
  (void)::unlink(path_.c_str());
  remove_temp();
  int rc = ::posix_fallocate(fd_, 0, static_cast<off_t>(total));
  if (rc == EOPNOTSUPP || rc == EINVAL) rc = ::ftruncate(fd_, static_cast<off_t>(total)) == 0 ? 0 : errno;
  if (rc != 0) {
    ::close(fd_);
    fd_ = -1;
    detail::throw_error(rc == ENOSPC || rc == EFBIG ? ErrorKind::kInvalidArgument : ErrorKind::kIO, __FILE__,
                        __LINE__, nullptr,
                        detail::concat("kv_offload_disk_gb: cannot allocate ", format_bytes(total),
                                       " for the disk KV tier in ", where, ": ", std::strerror(rc)));
  }
  meta_.resize(static_cast<size_t>(n_slots));
  free_.resize(static_cast<size_t>(n_slots));
  for (int64_t i = 0; i < n_slots; ++i) free_[static_cast<size_t>(i)] = static_cast<int32_t>(n_slots - 1 - i);
}

DiskKvTier::~DiskKvTier() {
  if (fd_ >= 0) ::close(fd_);
}

void DiskKvTier::drop(int32_t slot) {
  Meta& m = meta_[static_cast<size_t>(slot)];
  map_.erase(m.hash);
  lru_.erase(m.lru);
  m = Meta();
  free_.push_back(slot);
}

bool DiskKvTier::write_slot(int32_t slot, const uint8_t* bytes, std::string* why) {
  if (fault_fires(FaultPoint::kKvDiskWrite)) {
    *why = "injected fault (kv_disk_write)";
    return false;
  }
  uint64_t off = slot_bytes_ * static_cast<uint64_t>(slot), left = slot_bytes_;
  while (left > 0) {
    const ssize_t n = ::pwrite(fd_, bytes, static_cast<size_t>(std::min<uint64_t>(left, uint64_t{1} << 30)),
                               static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *why = n == 0 ? std::string("nothing written") : std::string(std::strerror(errno));
      return false;
    }
    bytes += n;
    off += static_cast<uint64_t>(n);
    left -= static_cast<uint64_t>(n);
  }
  return true;
}

bool DiskKvTier::read_slot(int32_t slot, uint8_t* dst, std::string* why) {
  if (fault_fires(FaultPoint::kKvDiskRead)) {
    *why = "injected fault (kv_disk_read)";
    return false;
  }
  uint64_t off = slot_bytes_ * static_cast<uint64_t>(slot), left = slot_bytes_;
  while (left > 0) {
    const ssize_t n = ::pread(fd_, dst, static_cast<size_t>(std::min<uint64_t>(left, uint64_t{1} << 30)),
                              static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *why = n == 0 ? std::string("unexpected end of file") : std::string(std::strerror(errno));
      return false;
    }
    dst += n;
    off += static_cast<uint64_t>(n);
    left -= static_cast<uint64_t>(n);
  }
  return true;
}

bool DiskKvTier::put(uint64_t hash, uint64_t serial, uint64_t parent_serial, const std::vector<int32_t>& tokens,
                     const uint8_t* bytes) {
  ELI_CHECK_KIND(kInternal, map_.count(hash) == 0, "disk KV tier: hash already held");
  if (free_.empty()) drop(lru_.front());
  const int32_t s = free_.back();
  free_.pop_back();
  std::string why;
  if (!write_slot(s, bytes, &why)) {
    free_.push_back(s);
    ++write_failures_;
    if (!logged_write_) {
      logged_write_ = true;
      std::fprintf(stderr, "eli: disk KV tier: a write to %s failed (%s); the block is dropped (logged once)\n",
                   path_.c_str(), why.c_str());
    }
    return false;
  }
  bytes_written_ += slot_bytes_;
  Meta& m = meta_[static_cast<size_t>(s)];
  m.hash = hash;
  m.serial = serial;
  m.parent_serial = parent_serial;
  m.tokens = tokens;
  m.used = true;
  m.lru = lru_.insert(lru_.end(), s);
  map_.emplace(hash, s);
  return true;
}

int32_t DiskKvTier::find(uint64_t hash, uint64_t parent_serial, const int32_t* tokens, int64_t n) const {
  auto it = map_.find(hash);
  if (it == map_.end()) return -1;
  const Meta& m = meta_[static_cast<size_t>(it->second)];
  return cached_entry_matches(m.parent_serial, m.tokens, parent_serial, tokens, n) ? it->second : -1;
}

uint64_t DiskKvTier::serial(int32_t slot) const {
  const Meta& m = meta_.at(static_cast<size_t>(slot));
  ELI_CHECK_KIND(kInternal, m.used, "disk KV tier: serial of an empty slot ", slot);
  return m.serial;
}

bool DiskKvTier::read(int32_t slot, uint8_t* dst) {
  Meta& m = meta_.at(static_cast<size_t>(slot));
  ELI_CHECK_KIND(kInternal, m.used, "disk KV tier: read of an empty slot ", slot);
  std::string why;
  if (!read_slot(slot, dst, &why)) {
    drop(slot);  // its bytes are suspect: never offered again
    ++read_failures_;
    if (!logged_read_) {
      logged_read_ = true;
      std::fprintf(stderr, "eli: disk KV tier: a read from %s failed (%s); the block is recomputed (logged once)\n",
                   path_.c_str(), why.c_str());
    }
    return false;
  }
  bytes_read_ += slot_bytes_;
  lru_.splice(lru_.end(), lru_, m.lru);  // most recently used
  return true;
}

void DiskKvTier::check_invariants() const {
  ELI_CHECK_KIND(kInternal, map_.size() == lru_.size(), "disk KV tier: map and LRU list differ");
  ELI_CHECK_KIND(kInternal, map_.size() + free_.size() == meta_.size(), "disk KV tier: entries and free slots do not add up");
  std::vector<char> seen(meta_.size(), 0);
  for (int32_t s : free_) {
    ELI_CHECK_KIND(kInternal, s >= 0 && static_cast<size_t>(s) < meta_.size() && !seen[static_cast<size_t>(s)] &&
                                  !meta_[static_cast<size_t>(s)].used,
                   "disk KV tier: free slot ", s, " is inconsistent");
    seen[static_cast<size_t>(s)] = 1;
  }
  for (const auto& [hash, s] : map_) {
    const Meta& m = meta_.at(static_cast<size_t>(s));
    ELI_CHECK_KIND(kInternal, m.used && m.hash == hash && !m.tokens.empty() && !seen[static_cast<size_t>(s)],
                   "disk KV tier: slot ", s, " is inconsistent");
    seen[static_cast<size_t>(s)] = 1;
  }
}

}  // namespace eli
