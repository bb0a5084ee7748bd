// tests/cpp/test_direct_reader.cc: the O_DIRECT reads of the disk tier (runtime/core/direct_reader.h):
// the aligned-extent arithmetic on odd offsets and lengths, reads of every kind of range (inside a
// block, across blocks, congruent and not with the destination, larger than the bounce buffer, up
// to the file's end) against the file's bytes without touching a byte outside the destination, the
// refusal path (a block size the filesystem rejects), the fault point disk_read, and the
// ELI_OFFLOAD_DIRECT_IO values.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "temp_file.h"
#include "eli/error.h"
#include "runtime/core/direct_reader.h"
#include "runtime/core/fault_injection.h"
#include "runtime/core/mapped_file.h"

namespace eli {
namespace {

// Temporary files go next to the test data's build folder (a real disk filesystem where O_DIRECT
// usually works; /tmp may be tmpfs), else to /tmp.
const std::string kDiskDir = std::string(ELI_TEST_DATA_DIR) + "/../../build";

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

TEST(DirectReader, AlignedExtentArithmetic) {
  const uint64_t B = 4096;
  struct Case {
    uint64_t offset, bytes, want_offset, want_length, want_skip;
  };
  const Case cases[] = {
      {0, 0, 0, 0, 0},                    // nothing
      {0, 1, 0, B, 0},                    // one byte at the start
      {0, B, 0, B, 0},                    // exactly one block
      {0, B + 1, 0, 2 * B, 0},            // one byte into the next block
      {1, B - 1, 0, B, 1},                // the rest of the first block
      {1, B, 0, 2 * B, 1},                // straddles a boundary
      {B - 1, 2, 0, 2 * B, B - 1},        // two bytes across a boundary
      {B, 7, B, B, 0},                    // aligned start, short
      {3 * B + 123, 5 * B + 7, 3 * B, 6 * B, 123},
      {12345, 0, 3 * B, 0, 57},           // empty but offset
  };
  for (const Case& c : cases) {
    const AlignedExtent e = aligned_extent(c.offset, c.bytes, B);
    EXPECT_EQ(e.offset, c.want_offset) << c.offset << "+" << c.bytes;
    EXPECT_EQ(e.length, c.want_length) << c.offset << "+" << c.bytes;
    EXPECT_EQ(e.skip, c.want_skip) << c.offset << "+" << c.bytes;
  }
  // Properties on odd values and block sizes: covers the range, aligned, less than one block extra
  // on each side.
  std::mt19937_64 rng(7);
  for (uint64_t block : {512u, 4096u, 65536u}) {
    for (int i = 0; i < 2000; ++i) {
      const uint64_t off = rng() % (uint64_t{1} << 40), n = 1 + rng() % (uint64_t{1} << 24);
      const AlignedExtent e = aligned_extent(off, n, block);
      ASSERT_EQ(e.offset % block, 0u);
      ASSERT_EQ(e.length % block, 0u);
      ASSERT_EQ(e.offset + e.skip, off);
      ASSERT_LT(e.skip, block);
      ASSERT_GE(e.offset + e.length, off + n);
      ASSERT_LT(e.offset + e.length - (off + n), block);
    }
  }
  EXPECT_THROW(aligned_extent(0, 1, 3000), Error);
}

// Reads [off, off + n) into a guarded destination at `misalign` bytes past a 4096-aligned address.
void check_read(DirectReader& r, const std::vector<uint8_t>& bytes, uint64_t off, uint64_t n, uint64_t misalign) {
  constexpr uint64_t kGuard = 64;
  void* raw = nullptr;
  ASSERT_EQ(posix_memalign(&raw, 4096, static_cast<size_t>(n + misalign + 2 * kGuard + 4096)), 0);
  auto* base = static_cast<uint8_t*>(raw) + 4096 - kGuard;  // the guard before dst ends at an aligned address
  std::memset(base, 0xA5, static_cast<size_t>(n + misalign + 2 * kGuard));
  uint8_t* dst = base + kGuard + misalign;
  ASSERT_TRUE(r.read(off, n, dst)) << off << "+" << n;
  EXPECT_EQ(std::memcmp(dst, bytes.data() + off, static_cast<size_t>(n)), 0) << off << "+" << n << " @" << misalign;
  for (uint64_t i = 0; i < kGuard + misalign; ++i) ASSERT_EQ(base[i], 0xA5) << "wrote before dst: " << off << "+" << n;
  for (uint64_t i = 0; i < kGuard; ++i) ASSERT_EQ(dst[n + i], 0xA5) << "wrote past dst: " << off << "+" << n;
  std::free(raw);
}

TEST(DirectReader, ReadsEveryKindOfRange) {
  const uint64_t B = 4096;
  const std::vector<uint8_t> bytes = random_bytes(9 * B + 1234, 11);  // ends off a block boundary
  TempFile f(bytes, kDiskDir);
  auto file = MappedFile::open(f.path());
  std::string why;
  // A small bounce buffer (4 blocks) so that long unaligned ranges take several rounds.
  std::unique_ptr<DirectReader> r = DirectReader::open(*file, &why, 4 * B);
  if (r == nullptr) GTEST_SKIP() << "this filesystem refuses O_DIRECT: " << why;
  const uint64_t size = bytes.size();
  const uint64_t offsets[] = {0, 1, 100, B - 1, B, B + 17, 3 * B, 5 * B + 4000};
  const uint64_t lengths[] = {1, 7, B - 1, B, B + 1, 2 * B, 5 * B + 3, 8 * B};
  for (uint64_t off : offsets) {
    for (uint64_t n : lengths) {
      if (off + n > size) continue;
      for (uint64_t mis : {uint64_t{0}, uint64_t{1}, uint64_t{256}, off % B, B - 1}) check_read(*r, bytes, off, n, mis);
    }
  }
  // Up to the file's end (the last block is partial), from aligned and unaligned starts.
  for (uint64_t off : {uint64_t{0}, uint64_t{1}, 8 * B, 9 * B, 9 * B + 1000, size - 1}) {
    check_read(*r, bytes, off, size - off, 0);
    check_read(*r, bytes, off, size - off, off % B);  // congruent
  }
  EXPECT_GT(r->bytes_direct(), 0u);            // congruent ranges landed in place
  EXPECT_GT(r->bytes_through_bounce(), 0u);    // the rest went through the bounce buffer
  // Outside the file: an internal error, not a read.
  std::vector<uint8_t> buf(16);
  EXPECT_THROW(r->read(size - 8, 16, buf.data()), Error);
}

TEST(DirectReader, RefusalIsReportedNotThrown) {
  const std::vector<uint8_t> bytes = random_bytes(10000, 3);
  TempFile f(bytes, kDiskDir);
  auto file = MappedFile::open(f.path());
  std::string why;
  // One-byte reads: block filesystems refuse them under O_DIRECT (EINVAL); a filesystem that takes
  // them (tmpfs on recent kernels) has nothing to refuse.
  std::unique_ptr<DirectReader> r = DirectReader::open(*file, &why, 2, 1);
  if (r != nullptr) GTEST_SKIP() << "this filesystem accepts unaligned O_DIRECT reads";
  EXPECT_NE(why.find("O_DIRECT"), std::string::npos) << why;
}

TEST(DirectReader, FaultPointFiresAsForBufferedReads) {
  const std::vector<uint8_t> bytes = random_bytes(20000, 5);
  TempFile f(bytes, kDiskDir);
  auto file = MappedFile::open(f.path());
  std::string why;
  std::unique_ptr<DirectReader> r = DirectReader::open(*file, &why);
  if (r == nullptr) GTEST_SKIP() << "this filesystem refuses O_DIRECT: " << why;
  std::vector<uint8_t> buf(5000);
  {
    ScopedFault fault(FaultPoint::kDiskRead, FaultSpec{});
    try {
      r->read(100, 5000, buf.data());
      FAIL() << "the armed disk_read did not fire";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kIO);
      EXPECT_NE(std::string(e.what()).find("disk_read"), std::string::npos);
    }
  }
  ASSERT_TRUE(r->read(100, 5000, buf.data()));
  EXPECT_EQ(std::memcmp(buf.data(), bytes.data() + 100, 5000), 0);
}

TEST(DirectReader, ModeFromEnvironment) {
  const char* old = std::getenv("ELI_OFFLOAD_DIRECT_IO");
  const std::string keep = old != nullptr ? old : "";
  unsetenv("ELI_OFFLOAD_DIRECT_IO");
  EXPECT_EQ(direct_io_mode_from_env(), DirectIoMode::kAuto);
  setenv("ELI_OFFLOAD_DIRECT_IO", "on", 1);
  EXPECT_EQ(direct_io_mode_from_env(), DirectIoMode::kOn);
  setenv("ELI_OFFLOAD_DIRECT_IO", "off", 1);
  EXPECT_EQ(direct_io_mode_from_env(), DirectIoMode::kOff);
  setenv("ELI_OFFLOAD_DIRECT_IO", "yes", 1);
  try {
    direct_io_mode_from_env();
    FAIL() << "a bad value was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("ELI_OFFLOAD_DIRECT_IO"), std::string::npos);
  }
  if (old != nullptr) setenv("ELI_OFFLOAD_DIRECT_IO", keep.c_str(), 1);
  else unsetenv("ELI_OFFLOAD_DIRECT_IO");
}

}  // namespace
}  // namespace eli
