// runtime/model/weight_offload.cc: the offloaded half of WeightStore::place (weight_store.h): layer
// images of the layers held off the device, the views their weights take of the device ring, and
// the placement-map entries of those layers.
//
// Invariants: an image's layout (tensor order, kImageAlignment-aligned offsets) is computed by one
// function (for_each_tensor) for the size query, the pinned copy and the slot views, so the bytes
// the streamer copies are exactly where the kernels read them; an offloaded weight's tensors are
// views of its ring slot from place() on (never read before the streamer filled the slot).
#include <algorithm>
#include <cctype>
#include <cstring>
#include <utility>
#include <vector>

#include "eli/error.h"
#include "runtime/core/mapped_file.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/model/weight_source.h"
#include "runtime/model/weight_store.h"

namespace eli {

int64_t weight_layer(const std::string& name) {
  static const std::string kPrefix = "model.layers.";
  if (name.compare(0, kPrefix.size(), kPrefix) != 0) return -1;
  size_t i = kPrefix.size();
  int64_t n = 0;
  const size_t first = i;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])) != 0 && i - first < 9) {
    n = n * 10 + (name[i] - '0');
    ++i;
  }
  if (i == first || i >= name.size() || name[i] != '.') return -1;
  return n;
}

namespace {

uint64_t align_image(uint64_t v) { return (v + kImageAlignment - 1) / kImageAlignment * kImageAlignment; }

// Bytes of w's matrix: a deferred weight is (rows, cols) of its dtype; otherwise the host tensor's
// own bytes (a packed layout or GGUF segments keep their stored shape).
uint64_t matrix_bytes(const LinearWeight& w) {
  if (!w.deferred()) return w.data.nbytes();
  return Tensor(make_view_2d(nullptr, w.dtype, DeviceId{}, w.rows, w.cols), nullptr).nbytes();
}

// Calls fn(w, field, offset, bytes) for every tensor of `layer`'s image in layout order (field:
// the member of w holding it: data, bias, scales, zeros, perm); returns the image's bytes. One
// function for the size query and the placement, so both see the same layout.
template <typename Linears, typename Fn>
uint64_t for_each_tensor(Linears& linears, int64_t layer, Fn&& fn) {
  uint64_t off = 0;
  for (auto& w : linears) {
    if (w.alias_of != nullptr || weight_layer(w.name) != layer) continue;
    off = align_image(off);
    const uint64_t mb = matrix_bytes(w);
    fn(w, &w.data, off, mb);
    off += mb;
    for (auto* t : {&w.bias, &w.scales, &w.zeros, &w.perm}) {
      if (!t->defined()) continue;
      off = align_image(off);
      fn(w, t, off, t->nbytes());
      off += t->nbytes();
    }
  }
  return align_image(off);
}

// The contiguous runs of host bytes w's matrix is made of, in row order: one per deferred part,
// else the whole data.
std::vector<std::pair<const void*, uint64_t>> matrix_runs(const LinearWeight& w) {
  if (!w.deferred()) return {{w.ptr(), w.data.nbytes()}};
  const uint64_t row_bytes = w.rows > 0 ? matrix_bytes(w) / static_cast<uint64_t>(w.rows) : 0;
  std::vector<std::pair<const void*, uint64_t>> runs;
  int64_t rows = 0;
  for (const WeightPart& p : w.parts) {
    runs.emplace_back(p.data, static_cast<uint64_t>(p.rows) * row_bytes);
    rows += p.rows;
  }
  ELI_CHECK_KIND(kInternal, rows == w.rows, w.name, ": deferred parts hold ", rows, " rows of ", w.rows);
  return runs;
}

// The same view as `like` (dtype, shape, strides) of `data` on `device`, kept alive by `owner`.
Tensor rebase(const Tensor& like, void* data, DeviceId device, const std::shared_ptr<void>& owner) {
  TensorView v = like.view();
  v.data = data;
  v.device = device;
  return Tensor(v, owner);
}

}  // namespace

std::map<int64_t, uint64_t> WeightStore::layer_image_bytes() const {
  std::map<int64_t, uint64_t> out;
  for (const LinearWeight& w : linears_) {
    const int64_t l = weight_layer(w.name);
    if (l >= 0 && out.count(l) == 0) out[l] = for_each_tensor(linears_, l, [](const auto&...) {});
  }
  return out;
}

uint64_t WeightStore::layer_unmapped_bytes(int64_t layer) const {
  uint64_t n = 0, offset = 0;
  for_each_tensor(linears_, layer, [&](const LinearWeight& w, const Tensor* field, uint64_t, uint64_t bytes) {
    if (field != &w.data) {  // biases, scales, zeros, perm: converted at load
      n += bytes;
      return;
    }
    for (const auto& [p, b] : matrix_runs(w)) {
      const bool mapped = (w.deferred() || w.file_view) && source_ != nullptr && source_->file_of(p, b, &offset);
      if (!mapped) n += b;
    }
  });
  return n;
}

void WeightStore::place_offloaded_layers(Device& device, const OffloadTarget& target, ThreadPool* pool) {
  ELI_CHECK_KIND(kInternal, !target.slots.empty(), "weight offloading needs at least one ring slot");
  const DeviceId id = device.id();
  size_t j = 0;
  for (const auto& [layer, tier] : target.tier_of_layer) {
    ELI_CHECK_KIND(kInternal, tier == MemoryTier::kHost || tier == MemoryTier::kMappedFile,
                   "layer ", layer, " offloaded to the device tier");
    uint8_t* slot = static_cast<uint8_t*>(target.slots[j % target.slots.size()]);
    ++j;
    LayerImage im;
    im.layer = layer;
    im.tier = tier;
    im.bytes = for_each_tensor(linears_, layer, [](const auto&...) {});
    ELI_CHECK_KIND(kInternal, im.bytes > 0, "offloaded layer ", layer, " has no matrices");
    if (tier == MemoryTier::kHost) im.pinned = device.allocate_buffer(im.bytes, BufferType::kPinnedHost);
    uint8_t* pinned = tier == MemoryTier::kHost ? static_cast<uint8_t*>(im.pinned.mutable_data()) : nullptr;
    // One piece per contiguous run of source bytes (a deferred weight has one per part); the host
    // tier's copies into the pinned image run on the pool below, before any source is dropped.
    std::vector<ImagePiece> to_copy;
    std::vector<Tensor> sources;  // the host tensors behind to_copy, alive until the copies are done
    auto add_piece = [&](uint64_t offset, uint64_t bytes, const void* src, const Tensor* owner) {
      if (bytes == 0) return;
      ImagePiece p{offset, bytes, src, nullptr, 0};
      if (pinned != nullptr) {
        to_copy.push_back(p);
        if (owner != nullptr) sources.push_back(*owner);
      } else {
        if (source_ != nullptr) p.file = source_->file_of(src, bytes, &p.file_offset);
        if (p.file == nullptr && owner != nullptr) im.keep.push_back(*owner);  // host data read each step
      }
      im.pieces.push_back(p);
    };
    for_each_tensor(linears_, layer, [&](LinearWeight& w, Tensor* field, uint64_t offset, uint64_t bytes) {
      if (field == &w.data) {
        uint64_t off = offset;
        for (const auto& [p, b] : matrix_runs(w)) {
          add_piece(off, b, p, w.deferred() ? nullptr : field);
          off += b;
        }
        ELI_CHECK_KIND(kInternal, off == offset + bytes, w.name, ": the matrix's runs do not fill its image bytes");
        w.data = w.deferred() ? Tensor(make_view_2d(slot + offset, w.dtype, id, w.rows, w.cols), target.slots_owner)
                              : rebase(w.data, slot + offset, id, target.slots_owner);
        w.parts.clear();
      } else {
        add_piece(offset, bytes, field->view().data, field);
        *field = rebase(*field, slot + offset, id, target.slots_owner);
      }
      w.file_view = false;
    });
    // Host tier: the image in 16 MiB chunks over the pool (a layer of an 8B model is ~0.4 GiB).
    constexpr uint64_t kChunk = uint64_t{16} << 20;
    std::vector<ImagePiece> chunks;
    for (const ImagePiece& p : to_copy) {
      for (uint64_t o = 0; o < p.bytes; o += kChunk) {
        chunks.push_back(ImagePiece{p.offset + o, std::min(kChunk, p.bytes - o),
                                    static_cast<const uint8_t*>(p.host) + o, nullptr, 0});
      }
    }
    parallel_for(pool, static_cast<int64_t>(chunks.size()), [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) std::memcpy(pinned + chunks[i].offset, chunks[i].host, chunks[i].bytes);
    });
    sources.clear();
    images_.push_back(std::move(im));
  }
}

void WeightStore::add_image_placements() {
  // The host (cpu:0) holds both tiers: pinned memory, or the file it reads from.
  for (const LayerImage& im : images_) {
    placements_.push_back(Placement{"model.layers." + std::to_string(im.layer), DeviceId{}, im.tier, im.bytes});
  }
}

std::vector<LayerImage> WeightStore::take_layer_images() { return std::move(images_); }

}  // namespace eli
