// runtime/core/tensor.cc: owning tensors and view helpers.
#include "runtime/core/tensor.h"

#include <cstdlib>

#include "eli/error.h"
#include "runtime/core/checked_math.h"
#include "runtime/core/allocator.h"

namespace eli {

TensorView make_view(void* data, DType dtype, DeviceId device, int ndim, const int64_t* shape) {
  ELI_CHECK(ndim >= 0 && ndim <= kMaxDims, "tensor rank ", ndim, " out of range");
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.device = device;
  v.ndim = ndim;
  int64_t stride = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    v.shape[i] = shape[i];
    v.strides[i] = stride;
    stride *= shape[i];
  }
  return v;
}

static uint64_t bytes_for(DType dtype, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) ELI_CHECK(checked_mul(n, d, &n), "tensor size overflows");
  const DTypeInfo& info = dtype_info(dtype);
  ELI_CHECK(n % info.block_elems == 0, "element count ", n, " not a multiple of the ", info.name, " block");
  int64_t bytes = 0;
  ELI_CHECK(checked_mul(n / info.block_elems, info.block_bytes, &bytes), "tensor size overflows");
  return static_cast<uint64_t>(bytes);
}

uint64_t Tensor::nbytes() const {
  std::vector<int64_t> shape(view_.shape, view_.shape + view_.ndim);
  return bytes_for(view_.dtype, shape);
}

Tensor Tensor::empty(Allocator& device, DType dtype, std::vector<int64_t> shape) {
  uint64_t bytes = bytes_for(dtype, shape);
  void* p = device.allocate(bytes == 0 ? 1 : bytes);
  Allocator* dev = &device;
  std::shared_ptr<void> owner(p, [dev](void* q) { dev->free(q); });
  return Tensor(make_view(p, dtype, device.id(), static_cast<int>(shape.size()), shape.data()), owner);
}

Tensor Tensor::host(DType dtype, std::vector<int64_t> shape) {
  uint64_t bytes = bytes_for(dtype, shape);
  size_t rounded = ((bytes == 0 ? 1 : bytes) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (p == nullptr) ELI_THROW(kOutOfMemory, "host allocation of ", bytes, " bytes failed");
  std::shared_ptr<void> owner(p, [](void* q) { std::free(q); });
  return Tensor(make_view(p, dtype, DeviceId{}, static_cast<int>(shape.size()), shape.data()), owner);
}

}  // namespace eli
