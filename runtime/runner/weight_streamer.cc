// runtime/runner/weight_streamer.cc: see weight_streamer.h.
#include "runtime/runner/weight_streamer.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "eli/error.h"
#include "kernels/ops.h"
#include "runtime/core/mapped_file.h"
#include "runtime/device/device.h"

namespace eli {

WeightStreamer::WeightStreamer(Device& device, std::vector<LayerImage> images, std::vector<Buffer> slots,
                               int64_t first_layer, std::shared_ptr<WeightSource> source)
    : device_(device),
      images_(std::move(images)),
      slots_(std::move(slots)),
      first_layer_(first_layer),
      source_(std::move(source)) {
  ELI_CHECK_KIND(kInternal, !images_.empty() && !slots_.empty(), "a weight streamer needs layers and ring slots");
  uint64_t max_disk = 0;
  for (size_t j = 0; j < images_.size(); ++j) {
    const LayerImage& im = images_[j];
    ELI_CHECK_KIND(kInternal, j == 0 || im.layer > images_[j - 1].layer, "offloaded layers out of order");
    ELI_CHECK_KIND(kInternal, im.bytes <= slots_[j % slots_.size()].size(), "layer ", im.layer, "'s image (",
                   im.bytes, " bytes) exceeds its ring slot");
    index_[im.layer] = static_cast<int64_t>(j);
    if (im.tier == MemoryTier::kMappedFile) {
      has_disk_ = true;
      max_disk = std::max(max_disk, im.bytes);
    }
  }
  const char* drop = std::getenv("ELI_OFFLOAD_DROP_CACHE");
  drop_cache_ = drop != nullptr && std::string(drop) == "1";
  copy_stream_ = device_.create_stream();
  fork_ = device_.create_event();
  join_ = device_.create_event();
  for (size_t s = 0; s < slots_.size(); ++s) {
    copied_.push_back(device_.create_event());
    freed_.push_back(device_.create_event());
  }
  if (has_disk_) {
    open_direct_readers();
    for (int i = 0; i < 2; ++i) {
      staging_.push_back(device_.allocate_buffer(max_disk, BufferType::kPinnedHost));
      staged_.push_back(device_.create_event());
    }
  }
}

WeightStreamer::~WeightStreamer() {
  // Queued copies read the images and staging buffers: let them finish before those are freed.
  try {
    if (copy_stream_ != nullptr) copy_stream_->synchronize();
  } catch (...) {  // a broken device context: nothing more to wait for
  }
}

int64_t WeightStreamer::index_of(int64_t local_layer) const {
  auto it = index_.find(first_layer_ + local_layer);
  return it == index_.end() ? -1 : it->second;
}

void WeightStreamer::open_direct_readers() {
  const DirectIoMode mode = direct_io_mode_from_env();
  if (mode == DirectIoMode::kOff) {
    buffered_why_ = "ELI_OFFLOAD_DIRECT_IO=off";
    return;
  }
  for (const LayerImage& im : images_) {
    if (im.tier != MemoryTier::kMappedFile) continue;
    for (const ImagePiece& p : im.pieces) {
      if (p.file == nullptr || direct_.count(p.file) > 0) continue;
      std::string why;
      direct_[p.file] = DirectReader::open(*p.file, &why);
      if (direct_[p.file] == nullptr) note_buffered(p.file->path() + ": " + why, mode == DirectIoMode::kOn);
    }
  }
}

void WeightStreamer::note_buffered(const std::string& why, bool log) const {
  if (buffered_why_.empty()) buffered_why_ = why;
  static std::atomic<bool> logged{false};
  if (log && !logged.exchange(true)) {
    std::fprintf(stderr, "eli: weight offloading reads %s with buffered pread (%s)\n",
                 direct_.size() > 1 ? "some model files" : "the model file", why.c_str());
  }
}

void WeightStreamer::read_piece(const ImagePiece& p, uint8_t* dst) const {
  auto it = direct_.find(p.file);
  if (it != direct_.end() && it->second != nullptr) {
    if (it->second->read(p.file_offset, p.bytes, dst)) {
      stats_.bytes_read += p.bytes;
      stats_.bytes_read_direct += p.bytes;
      return;
    }
    // Refused after the probe passed (EINVAL): this file is read buffered from now on.
    it->second.reset();
    note_buffered(p.file->path() + ": O_DIRECT read refused (Invalid argument)", true);
  }
  p.file->read_at(p.file_offset, p.bytes, dst);
  if (drop_cache_) p.file->drop_cached(p.file_offset, p.bytes);
  stats_.bytes_read += p.bytes;
}

std::string WeightStreamer::file_reads() const {
  if (!has_disk_) return "";
  if (direct_.empty() && buffered_why_.empty()) return "; file tier: nothing read from the file (converted at load)";
  size_t n_direct = 0;
  for (const auto& [f, r] : direct_) n_direct += r != nullptr ? 1 : 0;
  if (n_direct > 0 && n_direct == direct_.size()) return "; file tier: direct I/O (O_DIRECT)";
  std::string out = "; file tier: buffered reads (" + buffered_why_ + ")";
  if (n_direct > 0) {
    out = "; file tier: direct I/O (O_DIRECT) for " + std::to_string(n_direct) + " of " +
          std::to_string(direct_.size()) + " files, buffered reads for the rest (" + buffered_why_ + ")";
  }
  return out;
}

void WeightStreamer::issue(int64_t j) const {
  const LayerImage& im = images_[static_cast<size_t>(j)];
  const size_t s = static_cast<size_t>(j) % slots_.size();
  void* dst = slots_[s].mutable_data();
  // The slot's previous user (offloaded layer j - K of this step) must have run; at the start of a
  // step the fork already ordered the copy stream after the previous step.
  if (j >= static_cast<int64_t>(slots_.size())) copy_stream_->wait(*freed_[s]);
  const void* src = im.pinned.data();
  Event* staged = nullptr;
  if (im.tier == MemoryTier::kMappedFile) {
    // Disk tier: read into a staging buffer whose last copy has completed, on this thread.
    const size_t t = static_cast<size_t>(next_staging_++ % 2);
    staged = staged_[t].get();
    staged->synchronize();
    auto* buf = static_cast<uint8_t*>(staging_[t].mutable_data());
    for (const ImagePiece& p : im.pieces) {
      if (p.file != nullptr) {
        read_piece(p, buf + p.offset);
      } else {
        std::memcpy(buf + p.offset, p.host, p.bytes);
      }
    }
    ++stats_.disk_reads;
    src = buf;
  }
  device_.copy_host_to_device(dst, src, im.bytes, copy_stream_->native());
  if (staged != nullptr) staged->record(*copy_stream_);
  copied_[s]->record(*copy_stream_);
  ++stats_.layer_copies;
  stats_.bytes_copied += im.bytes;
}

void WeightStreamer::begin_step() const {
  fork_->record(device_.default_stream());
  copy_stream_->wait(*fork_);
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(slots_.size()), n_layers());
  for (int64_t j = 0; j < n; ++j) issue(j);
}

void WeightStreamer::before_layer(int64_t layer, const ExecContext&) const {
  const int64_t j = index_of(layer);
  if (j < 0) return;
  device_.default_stream().wait(*copied_[static_cast<size_t>(j) % slots_.size()]);
}

void WeightStreamer::after_layer(int64_t layer, const ExecContext&) const {
  const int64_t j = index_of(layer);
  if (j < 0) return;
  freed_[static_cast<size_t>(j) % slots_.size()]->record(device_.default_stream());
  const int64_t next = j + static_cast<int64_t>(slots_.size());
  if (next < n_layers()) issue(next);
}

void WeightStreamer::end_step() const {
  join_->record(*copy_stream_);
  device_.default_stream().wait(*join_);
}

}  // namespace eli
