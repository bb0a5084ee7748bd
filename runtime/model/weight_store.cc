// runtime/model/weight_store.cc: ownership, placement and the placement map of a model's weights
// (see weight_store.h).
#include "runtime/model/weight_store.h"

#include <cstring>
#include <map>
#include <utility>

#include "eli/error.h"
#include "runtime/device/device.h"
#include "runtime/device/staged_upload.h"

namespace eli {

const char* memory_tier_name(MemoryTier tier) {
  switch (tier) {
    case MemoryTier::kDevice: return "device";
    case MemoryTier::kHost: return "host";
    case MemoryTier::kMappedFile: return "mapped file";
  }
  return "unknown";
}

uint64_t LinearWeight::nbytes() const {
  uint64_t n = data.defined() ? data.nbytes() : 0;
  for (const Tensor* t : {&bias, &scales, &zeros, &perm}) n += t->defined() ? t->nbytes() : 0;
  return n;
}

Tensor LinearWeight::contiguous_host() const {
  Tensor out = Tensor::host(dtype, {rows, cols});
  if (!deferred()) {
    if (data.nbytes() > 0) std::memcpy(out.ptr<void>(), ptr(), data.nbytes());
    return out;
  }
  const uint64_t row_bytes = rows > 0 ? data.nbytes() / static_cast<uint64_t>(rows) : 0;
  uint8_t* dst = out.ptr<uint8_t>();
  int64_t n = 0;
  for (const WeightPart& p : parts) {
    std::memcpy(dst, p.data, static_cast<size_t>(p.rows) * row_bytes);
    dst += static_cast<size_t>(p.rows) * row_bytes;
    n += p.rows;
  }
  ELI_CHECK_KIND(kInternal, n == rows, name, ": deferred parts hold ", n, " rows of ", rows);
  return out;
}

LinearWeight* WeightStore::add(LinearWeight w) {
  ELI_CHECK_KIND(kInternal, !placed_, "weight ", w.name, " added after placement");
  linears_.push_back(std::move(w));
  return &linears_.back();
}

VectorWeight* WeightStore::add(VectorWeight v) {
  ELI_CHECK_KIND(kInternal, !placed_, "weight ", v.name, " added after placement");
  vectors_.push_back(std::move(v));
  return &vectors_.back();
}

VectorWeight* WeightStore::add_vector(std::string name, std::vector<float> values) {
  VectorWeight v;
  v.name = std::move(name);
  v.data = Tensor::host(DType::kF32, {static_cast<int64_t>(values.size())});
  if (!values.empty()) std::memcpy(v.data.ptr<float>(), values.data(), values.size() * sizeof(float));
  return add(std::move(v));
}

uint64_t WeightStore::placed_bytes() const {
  uint64_t n = 0;
  for (const LinearWeight& w : linears_) {
    if (w.alias_of != nullptr) {
      n += w.bias.defined() ? w.bias.nbytes() : 0;
      continue;
    }
    n += w.nbytes();
  }
  for (const VectorWeight& v : vectors_) n += v.data.defined() ? v.data.nbytes() : 0;
  return n;
}

namespace {

// The device copy of one host tensor, queued as an upload piece; the host tensor is kept in
// `keep` until the upload is complete.
Tensor device_copy(Device& device, Tensor host, std::vector<UploadPiece>& pieces, std::vector<Tensor>& keep) {
  std::vector<int64_t> shape(host.view().shape, host.view().shape + host.view().ndim);
  Tensor t = Tensor::empty(device, host.view().dtype, shape);
  pieces.push_back(UploadPiece{t.ptr<void>(), host.view().data, host.nbytes()});
  keep.push_back(std::move(host));
  return t;
}

}  // namespace

void WeightStore::place(Device& device, void* stream, ThreadPool* pool, const OffloadTarget* offload) {
  ELI_CHECK_KIND(kInternal, !placed_, "weights placed twice");
  const DeviceId id = device.id();
  placements_.clear();
  auto offloaded = [&](const LinearWeight& w) {
    return offload != nullptr && w.alias_of == nullptr && offload->tier_of_layer.count(weight_layer(w.name)) > 0;
  };
  if (offload != nullptr && !offload->tier_of_layer.empty()) place_offloaded_layers(device, *offload, pool);
  if (device.properties().host_memory) {
    // The host is the device: data stays where it is (a mapped-file view or a host tensor).
    for (LinearWeight& w : linears_) {
      if (offloaded(w)) continue;
      if (w.deferred()) {
        w.data = w.contiguous_host();
        w.parts.clear();
      }
      const bool mapped = w.file_view && w.alias_of == nullptr;
      placements_.push_back(Placement{w.name, id, mapped ? MemoryTier::kMappedFile : MemoryTier::kHost,
                                      w.alias_of != nullptr ? 0 : w.nbytes()});
    }
    for (LinearWeight& w : linears_) {
      if (w.alias_of != nullptr) w.data = w.alias_of->data;
    }
    for (const VectorWeight& v : vectors_) placements_.push_back(Placement{v.name, id, MemoryTier::kHost, v.data.nbytes()});
    add_image_placements();
    placed_ = true;
    return;
  }
  std::vector<UploadPiece> pieces;
  std::vector<Tensor> keep;  // host data of every piece, until the upload is complete
  for (LinearWeight& w : linears_) {
    if (offloaded(w)) continue;
    if (w.bias.defined()) w.bias = device_copy(device, w.bias, pieces, keep);
    if (w.scales.defined()) w.scales = device_copy(device, w.scales, pieces, keep);
    if (w.zeros.defined()) w.zeros = device_copy(device, w.zeros, pieces, keep);
    if (w.perm.defined()) w.perm = device_copy(device, w.perm, pieces, keep);
    if (w.alias_of != nullptr) continue;
    // Deferred parts: (rows, cols) of w.dtype. Otherwise the host tensor's own dtype and shape, so
    // every byte goes up: a packed layout (two int4 per byte) keeps its stored shape, and GGUF
    // segments of several block types (w.dtype names only the first) are one run of bytes.
    const TensorView& hv = w.data.view();
    Tensor t = w.deferred() ? Tensor::empty(device, w.dtype, {w.rows, w.cols})
                            : Tensor::empty(device, hv.dtype, std::vector<int64_t>(hv.shape, hv.shape + hv.ndim));
    if (!w.deferred()) {
      pieces.push_back(UploadPiece{t.ptr<void>(), w.ptr(), t.nbytes()});
    } else {
      const uint64_t row_bytes = w.rows > 0 ? t.nbytes() / static_cast<uint64_t>(w.rows) : 0;
      uint8_t* dst = t.ptr<uint8_t>();
      int64_t rows = 0;
      for (const WeightPart& p : w.parts) {
        const uint64_t bytes = static_cast<uint64_t>(p.rows) * row_bytes;
        pieces.push_back(UploadPiece{dst, p.data, bytes});
        dst += bytes;
        rows += p.rows;
      }
      ELI_CHECK_KIND(kInternal, rows == w.rows, w.name, ": deferred parts hold ", rows, " rows of ", w.rows);
    }
    keep.push_back(std::move(w.data));
    w.data = std::move(t);
  }
  for (VectorWeight& v : vectors_) {
    if (v.data.defined()) v.data = device_copy(device, v.data, pieces, keep);
  }
  upload_pieces(device, pool, pieces, stream);
  // Every copy is complete: the host data (and the mapped file behind zero-copy views) can go.
  keep.clear();
  for (LinearWeight& w : linears_) {
    if (offloaded(w)) continue;
    w.parts.clear();
    w.file_view = false;
    if (w.alias_of != nullptr) w.data = w.alias_of->data;
    placements_.push_back(Placement{w.name, id, MemoryTier::kDevice, w.alias_of != nullptr ? 0 : w.nbytes()});
  }
  for (const VectorWeight& v : vectors_) placements_.push_back(Placement{v.name, id, MemoryTier::kDevice, v.data.nbytes()});
  add_image_placements();
  // The disk tier reads its layers from the checkpoint's files at every step: keep them then.
  bool disk = false;
  for (const LayerImage& im : images_) disk = disk || im.tier == MemoryTier::kMappedFile;
  if (!disk) source_.reset();
  placed_ = true;
}

}  // namespace eli
