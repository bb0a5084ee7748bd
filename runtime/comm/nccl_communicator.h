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
// communicator's in the last bits); copies of any dtype go as bytes. abort() calls ncclCommAbort
// (and aborts the peer all-reduce below); later calls throw CommAbortedError. A build without CUDA
// throws kNotCompiled.
//
// The all-reduce picker: with two or more ranks whose every pair of devices has peer access (at
// most kMaxPeers = 8 ranks), create_nccl_communicators also creates a peer communicator
// (runtime/comm/peer_communicator.h: 32 MB staging + 32 MB scratch per rank, allocated once,
// pointers shared at creation). all_reduce then goes through eli's kernel
// (kernels/cuda/peer_all_reduce.h: one-shot / two-shot, f32 sums in rank order, bit-equal on every
// rank) when peer_all_reduce_fits(bytes, world) (up to 32 MB), else through ncclAllReduce. The
// environment variable ELI_ALLREDUCE=nccl|peer|auto (read at creation; default auto) forces one:
// `nccl` never creates the peer communicator, `peer` sends every all-reduce through it (messages
// over 32 MB in chunks) and fails with kUnsupported where a pair has no peer access.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "runtime/comm/communicator.h"

namespace eli {

enum class AllReduceMode : int { kAuto, kNccl, kPeer };
// ELI_ALLREDUCE's value (nullptr or empty: auto); kInvalidArgument for anything else.
AllReduceMode parse_all_reduce_mode(const char* value);
// Whether an all-reduce of `bytes` over `world` ranks goes through eli's peer kernel (the rule above;
// `peer_ready`: the peer communicator exists). Host-only.
bool nccl_uses_peer_all_reduce(AllReduceMode mode, size_t bytes, int world, bool peer_ready);

// The communicators of ranks 0 .. n-1 on `devices` (CUDA, distinct; rank i on devices[i]).
std::vector<std::unique_ptr<Communicator>> create_nccl_communicators(const std::vector<DeviceId>& devices);
// Whether libnccl can be loaded (never throws; false in a CPU build).
bool nccl_available();

}  // namespace eli
