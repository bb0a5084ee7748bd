// kernels/device_queries.cc: the two Device members that need the kernels layer: supports()
// (answered by the kernel registry, the same lookup dispatch does) and exec_context() (ExecContext
// is a kernels type). They are declared in runtime/device/device.h and defined here so that the
// device layer never includes a kernels header: the dependency points from kernels to devices.
#include "kernels/ops.h"
#include "kernels/registry.h"
#include "runtime/device/device.h"

#include "eli/error.h"

namespace eli {

bool Device::supports(Op op, KernelFormat format) const {
  return find_kernel(op, id().kind, format.format, format.dtype) != nullptr;
}

ExecContext Device::exec_context(const Stream& stream) const {
  ELI_CHECK(stream.device() == id(), "a stream of ", device_name(stream.device()), " used with ", device_name(id()));
  ExecContext ctx;
  ctx.pool = &thread_pool();
  ctx.stream = stream.native();
  return ctx;
}

ExecContext Device::exec_context() const { return exec_context(default_stream()); }

}  // namespace eli
