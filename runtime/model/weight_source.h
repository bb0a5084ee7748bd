// runtime/model/weight_source.h: named tensors read from model files (safetensors or GGUF),
// memory-mapped, before any placement on a device.
//
// Invariants: every TensorInfo was checked against its file: data + nbytes lies inside the mapped
// file, nbytes == product(shape) in dtype (block types: rows of whole blocks), no two tensors
// share a name. `data` stays valid while the WeightSource lives (it holds the MappedFiles).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "eli/dtype.h"

namespace eli {

class MappedFile;

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;   // row-major, outermost first (GGUF's reversed order is undone)
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  std::string file;             // path of the file holding it, for error messages
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // nullptr if absent.
  const TensorInfo* find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
  }
  // Throws eli::Error(kModelLoad) "missing tensor NAME in PATH".
  const TensorInfo& get(const std::string& name) const;
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::string& path() const { return path_; }
  // The mapped file holding [p, p + bytes) (and *offset, p's offset in it), or nullptr when the
  // bytes are not a view of one of this source's files.
  const MappedFile* file_of(const void* p, uint64_t bytes, uint64_t* offset) const;

 protected:
  std::string path_;                         // the directory or file the user named
  std::map<std::string, TensorInfo> tensors_;
  std::vector<std::shared_ptr<MappedFile>> files_;
};

}  // namespace eli
