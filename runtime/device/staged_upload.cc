// runtime/device/staged_upload.cc: the staged uploader (see staged_upload.h): planning, filling a
// staging buffer, the pinned pipelined path over the device's Buffer / Stream / Event types (so
// it is the same code on every device), and the synchronous fallback.
#include "runtime/device/staged_upload.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "eli/error.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/device/stream.h"

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

bool run_staged_upload(Device& device, ThreadPool* pool, const std::vector<UploadPiece>& pieces,
                       const std::vector<StagingFill>& plan, const Stream& stream, const StagedUploadOptions& options) {
  if (plan.empty()) return false;
  ELI_CHECK(stream.device() == device.id(), "staged upload to ", device_name(device.id()), " on a stream of ",
            device_name(stream.device()));
  const size_t n_buffers = std::min<size_t>(static_cast<size_t>(std::max(options.n_buffers, 1)), plan.size());
  uint64_t buffer_bytes = 0;
  for (const StagingFill& f : plan) buffer_bytes = std::max(buffer_bytes, f.bytes);

  struct Slot {
    Buffer buffer;                // pinned staging memory
    std::unique_ptr<Event> done;  // recorded after the buffer's copies
  };
  std::vector<Slot> ring;
  // Declared after `ring`, so destroyed before it: on every exit (errors included) the stream
  // finishes before a staging buffer goes back to the pool.
  struct Drain {
    const Stream& stream;
    ~Drain() {
      try {
        stream.synchronize();
      } catch (...) {
        // The error that unwinds (or the next checked call) reports the fault.
      }
    }
  } drain{stream};
  for (size_t i = 0; i < n_buffers; ++i) {
    try {
      ring.push_back(Slot{device.allocate_buffer(buffer_bytes, BufferType::kPinnedHost), device.create_event()});
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kOutOfMemory && e.kind() != ErrorKind::kDevice) throw;
      break;  // fewer buffers (still correct); none at all: the caller falls back
    }
  }
  if (ring.empty()) return false;

  for (size_t f = 0; f < plan.size(); ++f) {
    Slot& slot = ring[f % ring.size()];
    if (f >= ring.size()) slot.done->synchronize();  // its previous copies have read it
    fill_staging(pool, pieces, plan[f], slot.buffer.mutable_data());
    const uint8_t* base = static_cast<const uint8_t*>(slot.buffer.data());
    // One copy per segment: two pieces adjacent on the device may still be two allocations, which
    // one copy must not span.
    for (const StagingSegment& s : plan[f].segments) {
      uint8_t* dst = static_cast<uint8_t*>(pieces[s.piece].dst) + s.piece_offset;
      device.copy_host_to_device(dst, base + s.staging_offset, s.bytes, stream.native());
    }
    slot.done->record(stream);
  }
  stream.synchronize();
  return true;
}

namespace {

// Checks the pieces; their total bytes.
uint64_t total_bytes(const std::vector<UploadPiece>& pieces) {
  uint64_t bytes = 0;
  for (const UploadPiece& p : pieces) {
    ELI_CHECK(p.bytes == 0 || (p.dst != nullptr && p.src != nullptr), "upload of ", p.bytes,
              " bytes with a null pointer");
    bytes += p.bytes;
  }
  return bytes;
}

// One copy per piece on `stream` (nullptr: the default stream, each copy complete on return).
void copy_each(Device& device, const std::vector<UploadPiece>& pieces, void* stream) {
  for (const UploadPiece& p : pieces) device.copy_host_to_device(p.dst, p.src, p.bytes, stream);
  if (stream != nullptr) device.synchronize();
}

}  // namespace

UploadResult upload_pieces(Device& device, ThreadPool* pool, const std::vector<UploadPiece>& pieces,
                           const Stream& stream, const StagedUploadOptions& options) {
  UploadResult r;
  r.bytes = total_bytes(pieces);
  if (r.bytes == 0) return r;
  if (device.properties().async_execution && options.n_buffers > 0) {
    StagedUploadOptions opt = options;
    opt.buffer_bytes = std::min<uint64_t>(options.buffer_bytes, align_up(r.bytes, 256));
    const bool staged = run_staged_upload(device, pool, pieces, plan_staging(pieces, opt.buffer_bytes), stream, opt);
    // The staging buffers are back in the pinned pool: return them to the OS (pinned memory is scarce).
    device.release_cached(BufferType::kPinnedHost);
    if (staged) {
      r.staged = true;
      return r;
    }
  }
  copy_each(device, pieces, stream.native());
  return r;
}

UploadResult upload_pieces(Device& device, ThreadPool* pool, const std::vector<UploadPiece>& pieces, void* stream,
                           const StagedUploadOptions& options) {
  const Stream& def = device.default_stream();
  if (stream == nullptr || stream == def.native()) return upload_pieces(device, pool, pieces, def, options);
  UploadResult r;
  r.bytes = total_bytes(pieces);
  copy_each(device, pieces, stream);
  return r;
}

}  // namespace eli
