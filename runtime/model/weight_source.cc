// runtime/model/weight_source.cc: the out-of-line parts of WeightSource (see weight_source.h).
#include "runtime/model/weight_source.h"

#include "eli/error.h"

#include "runtime/core/mapped_file.h"

namespace eli {

const TensorInfo& WeightSource::get(const std::string& name) const {
  const TensorInfo* info = find(name);
  if (info == nullptr) ELI_THROW(kModelLoad, "missing tensor ", name, " in ", path_);
  return *info;
}

const MappedFile* WeightSource::file_of(const void* p, uint64_t bytes, uint64_t* offset) const {
  for (const std::shared_ptr<MappedFile>& f : files_) {
    if (f != nullptr && f->contains(p, bytes, offset)) return f.get();
  }
  return nullptr;
}

}  // namespace eli
