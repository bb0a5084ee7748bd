// runtime/comm/communicator.cc: the implementation-independent helpers of communicator.h.
#include "runtime/comm/communicator.h"

#include <cstdint>

namespace eli {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
  }
  return "unknown";
}

size_t comm_bytes(size_t count, DType dtype) {
  const DTypeInfo& info = dtype_info(dtype);
  const size_t block_elems = static_cast<size_t>(info.block_elems);
  const size_t block_bytes = static_cast<size_t>(info.block_bytes);
  ELI_CHECK(count % block_elems == 0, count, " elements of ", info.name, " are not whole blocks of ", block_elems);
  const size_t blocks = count / block_elems;
  ELI_CHECK(blocks <= SIZE_MAX / block_bytes, count, " elements of ", info.name, " overflow the address space");
  return blocks * block_bytes;
}

}  // namespace eli
