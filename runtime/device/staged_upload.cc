// runtime/device/staged_upload.cc: the device-independent half of the staged uploader (see
// staged_upload.h): planning, filling a staging buffer, and the synchronous fallback. The pinned,
// pipelined path is runtime/device/cuda/cuda_staged_upload.cc (stubbed here without CUDA).
#include "runtime/device/staged_upload.h"

#include <algorithm>
#include <cstring>

#include "eli/error.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"

namespace eli {
namespace {

constexpr uint64_t kFillTaskBytes = 512ull << 10;  // one memcpy task of a parallel fill

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

}  // namespace

std::vector<StagingFill> plan_staging(const std::vector<UploadPiece>& pieces, uint64_t buffer_bytes, uint64_t align) {
  ELI_CHECK(align > 0 && (align & (align - 1)) == 0, "staging alignment ", align, " is not a power of two");
  ELI_CHECK(buffer_bytes > 0 && buffer_bytes % align == 0, "staging buffer of ", buffer_bytes,
            " bytes is not a positive multiple of ", align);
  std::vector<StagingFill> fills;
  StagingFill cur;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const uint64_t n = pieces[i].bytes;
    uint64_t done = 0;
    while (done < n) {
      uint64_t start = cur.segments.empty() ? 0 : align_up(cur.bytes, align);
      if (start >= buffer_bytes) {
        fills.push_back(std::move(cur));
        cur = StagingFill();
        start = 0;
      }
      const uint64_t take = std::min(n - done, buffer_bytes - start);
      cur.segments.push_back(StagingSegment{i, done, start, take});
      cur.bytes = start + take;
      done += take;
    }
  }
  if (!cur.segments.empty()) fills.push_back(std::move(cur));
  return fills;
}

void fill_staging(ThreadPool* pool, const std::vector<UploadPiece>& pieces, const StagingFill& fill, void* buffer) {
  struct Task {
    uint8_t* dst;
    const uint8_t* src;
    uint64_t bytes;
  };
  std::vector<Task> tasks;
  uint8_t* base = static_cast<uint8_t*>(buffer);
  for (const StagingSegment& s : fill.segments) {
    const uint8_t* src = static_cast<const uint8_t*>(pieces[s.piece].src) + s.piece_offset;
    for (uint64_t off = 0; off < s.bytes; off += kFillTaskBytes) {
      tasks.push_back(Task{base + s.staging_offset + off, src + off, std::min(kFillTaskBytes, s.bytes - off)});
    }
  }
  parallel_for(pool, static_cast<int64_t>(tasks.size()), [&](int64_t a, int64_t b) {
    for (int64_t t = a; t < b; ++t) std::memcpy(tasks[t].dst, tasks[t].src, tasks[t].bytes);
  });
}

UploadResult upload_pieces(Device& device, ThreadPool* pool, const std::vector<UploadPiece>& pieces, void* stream,
                           const StagedUploadOptions& options) {
  UploadResult r;
  for (const UploadPiece& p : pieces) {
    ELI_CHECK(p.bytes == 0 || (p.dst != nullptr && p.src != nullptr), "upload of ", p.bytes,
              " bytes with a null pointer");
    r.bytes += p.bytes;
  }
  if (r.bytes == 0) return r;
  if (device.id().kind != DeviceKind::kCPU && options.n_buffers > 0) {
    const uint64_t buffer_bytes = std::min<uint64_t>(options.buffer_bytes, align_up(r.bytes, 256));
    StagedUploadOptions opt = options;
    opt.buffer_bytes = buffer_bytes;
    if (run_staged_upload(device, pool, pieces, plan_staging(pieces, buffer_bytes), stream, opt)) {
      r.staged = true;
      return r;
    }
  }
  for (const UploadPiece& p : pieces) device.copy_host_to_device(p.dst, p.src, p.bytes, stream);
  if (stream != nullptr) device.synchronize();
  return r;
}

#ifndef ELI_WITH_CUDA
bool run_staged_upload(Device&, ThreadPool*, const std::vector<UploadPiece>&, const std::vector<StagingFill>&, void*,
                       const StagedUploadOptions&) {
  return false;
}
#endif

}  // namespace eli
