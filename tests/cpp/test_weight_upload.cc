// tests/cpp/test_weight_upload.cc: fast model loading without a GPU: the staged uploader's
// planning and fill (runtime/device/staged_upload.h). The weights' own loading and placement are
// tested in test_weight_store.cc.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "eli/error.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/device/staged_upload.h"

namespace eli {
namespace {

// ---- staged upload planning -------------------------------------------------------------------

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 2654435761u + seed) >> 13);
  return v;
}

// Checks the invariants of a plan and replays it on the host (fill, then "copy" each segment),
// returning what each destination received.
std::vector<std::vector<uint8_t>> replay(const std::vector<std::vector<uint8_t>>& srcs, uint64_t buffer_bytes,
                                         uint64_t align, ThreadPool* pool, size_t* n_fills = nullptr) {
  std::vector<std::vector<uint8_t>> dsts(srcs.size());
  std::vector<UploadPiece> pieces;
  for (size_t i = 0; i < srcs.size(); ++i) {
    dsts[i].assign(srcs[i].size(), 0xEE);
    pieces.push_back(UploadPiece{dsts[i].data(), srcs[i].data(), srcs[i].size()});
  }
  std::vector<StagingFill> plan = plan_staging(pieces, buffer_bytes, align);
  if (n_fills != nullptr) *n_fills = plan.size();
  std::vector<uint64_t> covered(srcs.size(), 0);
  size_t last_piece = 0;
  std::vector<uint8_t> buffer(buffer_bytes);
  for (const StagingFill& f : plan) {
    EXPECT_FALSE(f.segments.empty());
    EXPECT_LE(f.bytes, buffer_bytes);
    uint64_t end = 0;
    for (const StagingSegment& s : f.segments) {
      EXPECT_GT(s.bytes, 0u) << "empty segment";
      EXPECT_EQ(s.staging_offset % align, 0u);
      EXPECT_GE(s.staging_offset, end) << "segments overlap";
      EXPECT_LE(s.staging_offset + s.bytes, buffer_bytes);
      EXPECT_GE(s.piece, last_piece) << "pieces out of order";
      EXPECT_EQ(s.piece_offset, covered[s.piece]) << "piece " << s.piece << " not covered in order";
      covered[s.piece] += s.bytes;
      last_piece = s.piece;
      end = s.staging_offset + s.bytes;
    }
    EXPECT_EQ(f.bytes, end);
    std::fill(buffer.begin(), buffer.end(), 0xAB);
    fill_staging(pool, pieces, f, buffer.data());
    for (const StagingSegment& s : f.segments) {
      std::memcpy(static_cast<uint8_t*>(pieces[s.piece].dst) + s.piece_offset, buffer.data() + s.staging_offset, s.bytes);
    }
  }
  for (size_t i = 0; i < srcs.size(); ++i) EXPECT_EQ(covered[i], srcs[i].size()) << "piece " << i;
  return dsts;
}

TEST(StagedUploadPlan, OddSizesLargeAndEmptyPieces) {
  const uint64_t B = 1024;
  std::vector<size_t> sizes = {0, 1, 7, 111, 1024, 1025, 3 * 1024 + 5, 769, 0, 64, 5125, 0};
  std::vector<std::vector<uint8_t>> srcs;
  for (size_t i = 0; i < sizes.size(); ++i) srcs.push_back(pattern(sizes[i], static_cast<uint32_t>(i)));
  size_t n_fills = 0;
  auto dsts = replay(srcs, B, 64, nullptr, &n_fills);
  for (size_t i = 0; i < srcs.size(); ++i) EXPECT_EQ(dsts[i], srcs[i]) << "piece " << i;
  const size_t total = std::accumulate(sizes.begin(), sizes.end(), size_t{0});
  EXPECT_GE(n_fills, (total + B - 1) / B);
  EXPECT_LE(n_fills, total / B + sizes.size());
}

TEST(StagedUploadPlan, SmallPiecesShareAFillAndBigOnesSplit) {
  std::vector<UploadPiece> pieces;
  uint8_t dummy[1];
  for (uint64_t n : {10, 20, 30}) pieces.push_back(UploadPiece{dummy, dummy, n});
  auto plan = plan_staging(pieces, 256, 64);
  ASSERT_EQ(plan.size(), 1u);
  ASSERT_EQ(plan[0].segments.size(), 3u);
  EXPECT_EQ(plan[0].segments[1].staging_offset, 64u);
  EXPECT_EQ(plan[0].segments[2].staging_offset, 128u);
  EXPECT_EQ(plan[0].bytes, 158u);

  pieces = {UploadPiece{dummy, dummy, 600}};
  plan = plan_staging(pieces, 256, 64);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].segments[0].bytes, 256u);
  EXPECT_EQ(plan[1].segments[0].piece_offset, 256u);
  EXPECT_EQ(plan[2].segments[0].bytes, 88u);

  EXPECT_TRUE(plan_staging({}, 256, 64).empty());
  EXPECT_TRUE(plan_staging({UploadPiece{dummy, dummy, 0}}, 256, 64).empty());
  EXPECT_THROW(plan_staging(pieces, 100, 64), Error);  // not a multiple of the alignment
  EXPECT_THROW(plan_staging(pieces, 256, 48), Error);  // not a power of two
}

TEST(StagedUploadPlan, ParallelFillOfMultiMegabytePieces) {
  ThreadPool pool(3);
  std::vector<std::vector<uint8_t>> srcs = {pattern((5u << 20) + 3, 1), pattern(100, 2), pattern((2u << 20) - 1, 3)};
  auto dsts = replay(srcs, 4u << 20, 256, &pool);
  for (size_t i = 0; i < srcs.size(); ++i) EXPECT_EQ(dsts[i], srcs[i]) << "piece " << i;
}

TEST(StagedUploadPlan, UploadPiecesOnTheCpuDeviceFallsBack) {
  auto dev = create_cpu_device();
  ThreadPool pool(2);
  std::vector<std::vector<uint8_t>> srcs = {pattern(1000, 5), {}, pattern(3, 6)};
  std::vector<std::vector<uint8_t>> dsts = {std::vector<uint8_t>(1000), {}, std::vector<uint8_t>(3)};
  std::vector<UploadPiece> pieces;
  for (size_t i = 0; i < srcs.size(); ++i) pieces.push_back(UploadPiece{dsts[i].data(), srcs[i].data(), srcs[i].size()});
  UploadResult r = upload_pieces(*dev, &pool, pieces);
  EXPECT_FALSE(r.staged);
  EXPECT_EQ(r.bytes, 1003u);
  EXPECT_EQ(dsts, srcs);
}

}  // namespace
}  // namespace eli
