// runtime/device/staged_upload.h: bulk host -> device copies through a small ring of pinned
// staging buffers (what model loading uses to move gigabytes of weights quickly).
//
// A piece is (device destination, host source, bytes); the source may be pageable or memory-mapped
// (a kMappedFile buffer's data()). plan_staging() packs the pieces, in order, into fills of one
// staging buffer each (a piece larger than a buffer is split over several fills; small pieces
// share a fill). run_staged_upload() then, per fill: waits for the buffer's previous copy (one
// Event per buffer), fills the buffer from the sources with the thread pool (a parallel memcpy,
// which also pages a mapped file in on many cores), and queues the async copies on the stream; it
// ends with one synchronize. The buffers are kPinnedHost Buffers of the device (its pinned pool),
// whose cache is returned to the OS when the upload ends.
//
// Invariants: the plan covers every byte of every piece exactly once, in piece order; a segment
// never crosses a buffer's end; staging offsets are multiples of `align`. upload_pieces() returns
// only when every copy is complete (sources may be dropped then). Devices without asynchronous
// execution (the CPU) and uploads that get no pinned memory take one synchronous copy per piece
// (same result).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace eli {

class Device;
class Stream;
class ThreadPool;

struct UploadPiece {
  void* dst = nullptr;        // device memory, `bytes` long
  const void* src = nullptr;  // host memory, `bytes` long
  uint64_t bytes = 0;
};

// `bytes` of piece `piece`, from byte `piece_offset` of it, at `staging_offset` of the buffer.
struct StagingSegment {
  size_t piece = 0;
  uint64_t piece_offset = 0;
  uint64_t staging_offset = 0;
  uint64_t bytes = 0;
};

// What one staging buffer holds between its fill and its copy.
struct StagingFill {
  std::vector<StagingSegment> segments;
  uint64_t bytes = 0;  // end of the last segment (<= buffer_bytes)
};

// Pure: packs `pieces` (empty ones are skipped) into fills of at most `buffer_bytes`.
// buffer_bytes must be a positive multiple of align, align a power of two.
std::vector<StagingFill> plan_staging(const std::vector<UploadPiece>& pieces, uint64_t buffer_bytes,
                                      uint64_t align = 256);

struct StagedUploadOptions {
  int n_buffers = 4;
  uint64_t buffer_bytes = 16ull << 20;  // 4 x 16 MiB: fastest on an H200 host (pinning more costs more)
};

struct UploadResult {
  bool staged = false;  // went through pinned staging (false: the synchronous fallback)
  uint64_t bytes = 0;
};

// Copies every piece to the device on `stream` and waits for all of them. `pool` may be null
// (fills then run on the calling thread). Staged when the device executes asynchronously.
UploadResult upload_pieces(Device& device, ThreadPool* pool, const std::vector<UploadPiece>& pieces,
                           const Stream& stream, const StagedUploadOptions& options = {});
// As above with a native stream handle: nullptr (or the default stream's handle) is the device's
// default stream; another handle takes the synchronous path on it (pass a Stream to stage).
UploadResult upload_pieces(Device& device, ThreadPool* pool, const std::vector<UploadPiece>& pieces,
                           void* stream = nullptr, const StagedUploadOptions& options = {});

// The pinned, pipelined path behind upload_pieces(), on any device (on the CPU it is a correct
// but pointless extra copy; tests use it there). False (having copied nothing) when no pinned
// buffer could be had; otherwise every piece is on the device when it returns.
bool run_staged_upload(Device& device, ThreadPool* pool, const std::vector<UploadPiece>& pieces,
                       const std::vector<StagingFill>& plan, const Stream& stream, const StagedUploadOptions& options);

// Fills `buffer` for `fill` from the pieces' sources (parallel over ~2 MiB ranges on `pool`).
void fill_staging(ThreadPool* pool, const std::vector<UploadPiece>& pieces, const StagingFill& fill, void* buffer);

}  // namespace eli
