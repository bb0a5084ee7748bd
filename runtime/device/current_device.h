// runtime/device/current_device.h: the calling thread's current CUDA device, for
// make_device_current and DeviceScope (device_factory.cc). Internal: implemented in
// runtime/device/cuda/cuda_device.cc, and in device_factory.cc without CUDA (where getting the
// current device returns -1 and setting one throws kNotCompiled).
#pragma once

namespace eli {

// The current CUDA device of this thread (-1 in a CPU-only build).
int cuda_current_device();
// cudaSetDevice(index) when it is not current already; kDevice if the index does not exist.
void cuda_set_current_device(int index);

}  // namespace eli
