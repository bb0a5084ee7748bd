// runtime/comm/nccl_communicator.h: the NCCL Communicator (one process, one rank per GPU): the
// same interface as the CPU communicator (communicator.h), each call enqueued on the caller's
// CUDA stream (Stream::native()).
//
// NCCL is loaded at run time with dlopen (as cuBLASLt, runtime/device/cuda_library_loader.h:
// ELI_NCCL_PATH, NVIDIA's nvidia-nccl pip package, the loader's path, the toolkit), so the wheel
// imports and runs on one GPU without NCCL installed; only creating a communicator needs it.
// create_nccl_communicators() enables peer access between every pair of the devices that allows
// it, sets NCCL_NVLS_ENABLE=0 (NVLink multicast stays off), and calls ncclCommInitAll once.
//
// Reductions: f32, bf16, f16 sums (NCCL's ring order: results may differ from the CPU
// communicator's in the last bits); copies of any dtype go as bytes. abort() calls ncclCommAbort;
// later calls throw CommAbortedError. A build without CUDA throws kNotCompiled.
#pragma once

#include <memory>
#include <vector>

#include "runtime/comm/communicator.h"

namespace eli {

// The communicators of ranks 0 .. n-1 on `devices` (CUDA, distinct; rank i on devices[i]).
std::vector<std::unique_ptr<Communicator>> create_nccl_communicators(const std::vector<DeviceId>& devices);
// Whether libnccl can be loaded (never throws; false in a CPU build).
bool nccl_available();

}  // namespace eli
