// runtime/core/allocator.h: the one thing core's owning Tensor needs of a device: memory with an
// identity. Device (runtime/device/device.h) implements it, so Tensor::empty() can allocate on any
// device while the core layer includes nothing above it.
//
// Invariants: allocate() never returns null (it throws eli::Error(kOutOfMemory)); memory is freed
// by the allocator that gave it.
#pragma once

#include <cstddef>

#include "eli/device.h"

namespace eli {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual DeviceId id() const = 0;
  virtual void* allocate(size_t bytes) = 0;
  virtual void free(void* ptr) = 0;
};

}  // namespace eli
