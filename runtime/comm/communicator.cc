// runtime/comm/communicator.cc: the implementation-independent helpers of communicator.h.
#include "runtime/comm/communicator.h"

#include <cstdint>
#include <string>

namespace eli {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
  }
  return "unknown";
}

void run_failing_group(int rank, const std::function<void()>& f,
                       const std::function<void(ErrorKind, const std::string&)>& fail_group) {
  try {
    f();
  } catch (const CommAbortedError&) {
    throw;
  } catch (const Error& e) {
    fail_group(e.kind(), "rank " + std::to_string(rank) + ": " + e.what());
    throw;
  } catch (const std::exception& e) {
    fail_group(ErrorKind::kInternal, "rank " + std::to_string(rank) + ": " + e.what());
    throw;
  }
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
