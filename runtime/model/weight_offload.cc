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
#include <functional>

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

// One tensor of an image: where it goes and where its bytes are now.
struct ImageTensor {
  LinearWeight* w = nullptr;
  Tensor* field = nullptr;  // the LinearWeight member that will view the slot (data, bias, ...)
  uint64_t offset = 0, bytes = 0;
};

// Calls fn for every tensor of `layer`'s image in layout order; returns the image's bytes.
uint64_t for_each_tensor(std::deque<LinearWeight>& linears, int64_t layer, const std::function<void(ImageTensor)>& fn) {
  uint64_t off = 0;
  for (LinearWeight& w : linears) {
    if (w.alias_of != nullptr || weight_layer(w.name) != layer) continue;
    off = align_image(off);
    const uint64_t mb = matrix_bytes(w);
    fn(ImageTensor{&w, &w.data, off, mb});
    off += mb;
    for (Tensor* t : {&w.bias, &w.scales, &w.zeros, &w.perm}) {
      if (!t->defined()) continue;
      off = align_image(off);
      fn(ImageTensor{&w, t, off, t->nbytes()});
      off += t->nbytes();
    }
  }
  return align_image(off);
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
  // for_each_tensor only reads through its pointers here.
  auto& linears = const_cast<std::deque<LinearWeight>&>(linears_);
  for (const LinearWeight& w : linears_) {
    const int64_t l = weight_layer(w.name);
    if (l >= 0 && out.count(l) == 0) out[l] = for_each_tensor(linears, l, [](ImageTensor) {});
  }
  return out;
}

uint64_t WeightStore::layer_unmapped_bytes(int64_t layer) const {
  uint64_t n = 0, offset = 0;
  auto mapped = [&](const void* p, uint64_t bytes) {
    return source_ != nullptr && source_->file_of(p, bytes, &offset) != nullptr;
  };
  for (const LinearWeight& w : linears_) {
    if (w.alias_of != nullptr || weight_layer(w.name) != layer) continue;
    if (w.deferred()) {
      const uint64_t row_bytes = w.rows > 0 ? matrix_bytes(w) / static_cast<uint64_t>(w.rows) : 0;
      for (const WeightPart& p : w.parts) {
        const uint64_t bytes = static_cast<uint64_t>(p.rows) * row_bytes;
        if (!mapped(p.data, bytes)) n += bytes;
      }
    } else if (!w.file_view || !mapped(w.ptr(), w.data.nbytes())) {
      n += w.data.nbytes();
    }
    for (const Tensor* t : {&w.bias, &w.scales, &w.zeros, &w.perm}) n += t->defined() ? t->nbytes() : 0;
  }
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
    im.bytes = for_each_tensor(linears_, layer, [](ImageTensor) {});
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
    for_each_tensor(linears_, layer, [&](ImageTensor t) {
      LinearWeight& w = *t.w;
      if (t.field == &w.data && w.deferred()) {
        const uint64_t row_bytes = w.rows > 0 ? t.bytes / static_cast<uint64_t>(w.rows) : 0;
        uint64_t off = t.offset;
        for (const WeightPart& p : w.parts) {
          add_piece(off, static_cast<uint64_t>(p.rows) * row_bytes, p.data, nullptr);
          off += static_cast<uint64_t>(p.rows) * row_bytes;
        }
        ELI_CHECK_KIND(kInternal, off == t.offset + t.bytes, w.name, ": deferred parts do not fill the matrix");
        w.data = Tensor(make_view_2d(slot + t.offset, w.dtype, id, w.rows, w.cols), target.slots_owner);
        w.parts.clear();
      } else {
        add_piece(t.offset, t.bytes, t.field->view().data, t.field);
        *t.field = rebase(*t.field, slot + t.offset, id, target.slots_owner);
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
    ELI_CHECK_KIND(kInternal, tier == MemoryTier::kHost || source_ != nullptr || !im.keep.empty() || im.pieces.empty(),
                   "layer ", layer, " streams from the disk without its files");
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
