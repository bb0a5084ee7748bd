// runtime/model/weight_source.cc: the out-of-line parts of WeightSource (see weight_source.h).
#include "runtime/model/weight_source.h"

#include "eli/error.h"

namespace eli {

const TensorInfo& WeightSource::get(const std::string& name) const {
  const TensorInfo* info = find(name);
  if (info == nullptr) ELI_THROW(kModelLoad, "missing tensor ", name, " in ", path_);
  return *info;
}

}  // namespace eli
