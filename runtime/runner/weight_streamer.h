// runtime/runner/weight_streamer.h: runs the layers held off the device (weight offloading,
// docs/offloading.md) by copying each one's image into a ring of device slots just before it runs.
//
// Ring: K slots (K = ring depth, 2 by default), each as large as the largest image. Offloaded
// layer j (in forward order) always runs from slot j % K, so its weights' device views are fixed at
// placement (WeightStore::place) and a captured CUDA graph replays the same addresses. Per step:
//   begin_step   the copy stream forks from the compute stream (so it is ordered after the previous
//                step, whose layers last used the slots) and starts copies of layers 0 .. K-1;
//   before_layer the compute stream waits for the layer's copy (event);
//   after_layer  the compute stream records that the slot is free; the copy of layer j + K into
//                it is queued behind that event;
//   end_step     the compute stream joins the copy stream.
// The copy of a host-tier layer is one host-to-device copy from its pinned image; a disk-tier layer
// is first read from the model file into one of two pinned staging buffers on the host thread,
// then copied (the staging buffer is reused only after its last copy completed). Disk reads are
// host work, so steps with a disk-tier layer are never captured in a graph. The reads bypass the
// page cache (O_DIRECT, runtime/core/direct_reader.h) where the filesystem allows it and
// ELI_OFFLOAD_DIRECT_IO (auto|on|off) does not say off; elsewhere they are buffered pread, and
// with ELI_OFFLOAD_DROP_CACHE=1 each buffered range is dropped from the page cache afterwards (a
// host that must not cache the file; benchmarks of the disk itself). A file whose O_DIRECT reads
// are refused (at the construction's probe or later, EINVAL) is read buffered from then on.
// Offloaded layers may be any layers (offload_map): layer j of the offloaded ones in forward order
// uses slot j % K whatever resident layers run between them.
//
// Invariants: no allocation after construction; every event wait is on the device's own streams;
// on a host-memory device (the CPU) streams are immediate and the same sequence of copies runs as
// plain memcpy, which is how the CPU tests prove the ring and the tiers. A failed disk read throws
// (kIO, naming the file) from the step; the engine fails the running requests and goes on.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/direct_reader.h"
#include "runtime/device/buffer.h"
#include "runtime/device/stream.h"
#include "runtime/model/forward.h"
#include "runtime/model/weight_store.h"

namespace eli {

class Device;

class WeightStreamer final : public LayerHooks {
 public:
  // images: from WeightStore::take_layer_images() (increasing layer order); slots: the ring the
  // store placed them against; first_layer: the model's index of the forward's layer 0.
  WeightStreamer(Device& device, std::vector<LayerImage> images, std::vector<Buffer> slots, int64_t first_layer,
                 std::shared_ptr<WeightSource> source);
  ~WeightStreamer() override;

  // Around Model::forward, on the device's default stream (inside a graph capture too).
  void begin_step() const;
  void end_step() const;
  void before_layer(int64_t layer, const ExecContext& exec) const override;
  void after_layer(int64_t layer, const ExecContext& exec) const override;

  // False when a layer streams from the disk (host reads cannot be replayed by a graph).
  bool graphable() const { return !has_disk_; }
  // How disk-tier layers are read: "" without any; else "; file tier: direct I/O (O_DIRECT)" or
  // "; file tier: buffered reads (...why...)" (appended to the placement the engine reports).
  std::string file_reads() const;
  int64_t n_layers() const { return static_cast<int64_t>(images_.size()); }
  struct Stats {
    int64_t layer_copies = 0, disk_reads = 0;
    uint64_t bytes_copied = 0, bytes_read = 0;
    uint64_t bytes_read_direct = 0;  // of bytes_read: through O_DIRECT
  };
  // Counted when copies are queued (a replayed graph's copies are not counted).
  Stats stats() const { return stats_; }

 private:
  void issue(int64_t j) const;  // queues the copy of offloaded layer j into its slot
  void read_piece(const ImagePiece& p, uint8_t* dst) const;  // a file piece, direct or buffered
  void open_direct_readers();                           // per file of the disk tier (constructor)
  void note_buffered(const std::string& why, bool log) const;  // why; stderr once per process if log
  int64_t index_of(int64_t local_layer) const;

  Device& device_;
  std::vector<LayerImage> images_;
  std::vector<Buffer> slots_;
  int64_t first_layer_ = 0;
  std::shared_ptr<WeightSource> source_;  // the files disk-tier pieces are read from
  std::map<int64_t, int64_t> index_;      // model layer -> j
  bool has_disk_ = false;
  bool drop_cache_ = false;               // ELI_OFFLOAD_DROP_CACHE=1
  // Disk tier: each file's O_DIRECT reader (nullptr: buffered pread), and why some are buffered.
  mutable std::map<const MappedFile*, std::unique_ptr<DirectReader>> direct_;
  mutable std::string buffered_why_;
  std::unique_ptr<Stream> copy_stream_;
  std::unique_ptr<Event> fork_, join_;
  std::vector<std::unique_ptr<Event>> copied_, freed_;  // per slot
  std::vector<Buffer> staging_;                         // disk tier: two pinned buffers
  std::vector<std::unique_ptr<Event>> staged_;          // per staging buffer: its last copy
  mutable int64_t next_staging_ = 0;
  mutable Stats stats_;
};

}  // namespace eli
