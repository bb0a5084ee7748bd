// runtime/device/device.h: the Device interface every backend implements, its properties and
// capability queries, and the factory. The CPU and CUDA are both ordinary devices: each has
// memory (buffer types, buffer.h), streams and events (stream.h), a host thread pool, and an
// ExecContext for kernels, so model code needs no "is this the CPU?" branch.
//
// Invariants: allocate() never returns null (it throws eli::Error(kOutOfMemory) with the numbers);
// memory from one device is freed by the same device; copies are ordered on the given stream
// (nullptr: the device's default stream, and the copy is complete on return) and synchronize()
// waits for all of them. A CPU-only build still knows DeviceKind::kCUDA: creating one throws
// eli::Error(kNotCompiled). Every Device method may be called from any thread (a CUDA device sets
// its own device for the call); kernels, however, launch on the calling thread's current device:
// a thread that launches work for a device calls make_current() (or holds a DeviceScope) first.
// create_cuda_device(N) makes N current on the constructing thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "eli/device.h"
#include "eli/dtype.h"
#include "runtime/core/allocator.h"
#include "runtime/core/weight_format.h"
#include "runtime/device/buffer.h"
#include "runtime/device/stream.h"

namespace eli {

// MemoryStats (the allocator's counters) is declared in eli/device.h.

enum class Op : int;  // kernels/ops.h
struct ExecContext;   // kernels/ops.h
class ThreadPool;     // runtime/core/thread_pool.h

// What the planner and the model may ask of a device instead of testing its kind. Filled once
// when the device is created.
struct DeviceProperties {
  DeviceId id;
  std::string name;                 // "cpu", or the GPU's name ("NVIDIA H100 80GB HBM3")
  uint64_t total_memory_bytes = 0;  // the device's memory (MemTotal on the CPU)
  int compute_capability = 0;       // 10 * major + minor (90 for sm_90); 0 on the CPU
  int n_compute_units = 0;          // streaming multiprocessors; hardware threads on the CPU
  uint64_t alignment = 64;          // every allocate() / buffer is aligned to this many bytes
  bool host_memory = false;         // device memory is host memory: the host reads it, and kernels
                                    //   read host-accessible buffers (mapped files) in place (CPU)
  bool unified_memory = false;      // device and host share one physical memory (the CPU; Jetson
                                    //   and other integrated GPUs): memory budgets compete with the OS
  bool async_execution = false;     // work may still run after a call returns (streams matter)
  bool supports_graphs = false;     // capture_step_graph() works (step_graph.h)
  bool maps_pinned_host = false;    // kernels may read pinned host buffers directly (UVA)
};

struct DeviceOptions {
  int n_threads = 0;  // the device's host thread pool (0: hardware threads); made on first use
};

// The key of a capability query: what a kernel reads, as the kernel registry keys it: the weight
// format (runtime/core/weight_format.h) and the dtype. A bare DType means the format that dtype is
// stored in: GGUF block types are GGUF blocks, everything else dense.
struct KernelFormat {
  WeightFormat format;
  DType dtype;
  KernelFormat(DType d)  // NOLINT(google-explicit-constructor): implicit by design
      : format(dtype_info(d).is_quantized ? WeightFormat::kGgufBlocks : WeightFormat::kDense), dtype(d) {}
  KernelFormat(WeightFormat f, DType d) : format(f), dtype(d) {}
};

class Device : public Allocator {
 public:
  ~Device() override = default;

  // ---- identity and capabilities ----
  DeviceId id() const override = 0;
  virtual const DeviceProperties& properties() const = 0;
  // True when the kernel registry has a usable kernel for `op` on this device's kind reading
  // `format` (the same lookup dispatch does, so "supported" and "runs" cannot drift). Defined in
  // kernels/device_queries.cc: call it from code that links the kernels.
  bool supports(Op op, KernelFormat format) const;

  // ---- memory ----
  void* allocate(size_t bytes) override = 0;
  void free(void* ptr) override = 0;
  // An owned buffer of `type` (kDevice or kPinnedHost; mapped buffers come from map_file_buffer).
  // Throws kOutOfMemory as allocate() does; kInvalidArgument for kMappedFile.
  virtual Buffer allocate_buffer(uint64_t bytes, BufferType type = BufferType::kDevice) = 0;
  // Counters of the device memory pool (memory_stats) and of the pinned host pool.
  virtual MemoryStats memory_stats() const = 0;
  virtual MemoryStats pinned_memory_stats() const = 0;
  // Bytes the device can still give (free device memory; for the CPU, available RAM).
  virtual uint64_t available_bytes() const = 0;
  // The device's whole memory (cudaMemGetInfo's total; for the CPU, MemTotal).
  virtual uint64_t total_bytes() const = 0;
  // Caps what the device pool may hold (0: no cap); allocations past it throw kOutOfMemory.
  virtual void set_memory_budget(uint64_t bytes) = 0;
  // Returns the cached free blocks of the pool of `type` to the driver / OS; the bytes released.
  virtual uint64_t release_cached(BufferType type = BufferType::kDevice) = 0;
  // What the device pool holds for an allocation of `bytes` (its size-class rounding): planners
  // size pools with it.
  virtual uint64_t allocation_size(uint64_t bytes) const = 0;

  // ---- copies (stream: a native handle; nullptr = the default stream, complete on return) ----
  virtual void copy_host_to_device(void* dst, const void* src, size_t bytes, void* stream = nullptr) = 0;
  virtual void copy_device_to_host(void* dst, const void* src, size_t bytes, void* stream = nullptr) = 0;
  virtual void copy_device_to_device(void* dst, const void* src, size_t bytes, void* stream = nullptr) = 0;
  // `rows` rows of `width` bytes: row i from src + i * src_pitch to dst + i * dst_pitch (one
  // strided copy; pitches >= width).
  virtual void copy_device_to_device_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                                        size_t rows, void* stream = nullptr) = 0;
  virtual void memset_zero(void* dst, size_t bytes, void* stream = nullptr) = 0;

  // ---- execution ----
  // The stream pool blocks are tagged with: kernels on it may use freed-and-reused blocks without
  // extra ordering.
  virtual const Stream& default_stream() const = 0;
  // A new stream (priority: lower is more urgent, clamped to the device's range; ignored by
  // immediate streams) and a new event (timing: elapsed_ms works; lighter without).
  virtual std::unique_ptr<Stream> create_stream(int priority = 0) const = 0;
  virtual std::unique_ptr<Event> create_event(bool timing = false) const = 0;
  // Waits for all work on all of this device's streams.
  virtual void synchronize() = 0;
  // Makes this device the calling thread's current device (what kernel launches use); no-op on
  // the CPU. Cheap when it already is.
  virtual void make_current() const = 0;
  // The device's host thread pool (for the CPU kernels, parallel staging fills, ...).
  virtual ThreadPool& thread_pool() const = 0;
  // What kernels receive: {&thread_pool(), stream.native()}. Defined in kernels/device_queries.cc
  // (ExecContext is a kernels type). The stream must be one of this device's.
  ExecContext exec_context(const Stream& stream) const;
  ExecContext exec_context() const;  // on default_stream()
};

std::unique_ptr<Device> create_cpu_device(const DeviceOptions& options = {});
// Throws eli::Error(kNotCompiled) in a CPU-only build, kDevice if the index does not exist.
// Makes `index` the current CUDA device of the calling thread.
std::unique_ptr<Device> create_cuda_device(int index, const DeviceOptions& options = {});
std::unique_ptr<Device> create_device(DeviceId id, const DeviceOptions& options = {});
// Number of CUDA devices visible; 0 in a CPU-only build or when the driver is absent.
int cuda_device_count();
bool cuda_compiled();
// True when CUDA loads each kernel at its first launch (CUDA_MODULE_LOADING unset or LAZY: the
// default since CUDA 12.2). Such a load waits for the GPU's queued work under the context's lock,
// so it deadlocks against a kernel that spins until a kernel of another thread runs (ranks sharing
// one GPU, runtime/comm/peer_communicator.h). False with CUDA_MODULE_LOADING=EAGER, in a CPU-only
// build, or without a driver.
bool cuda_loads_kernels_lazily();

// Makes `id` the calling thread's current device (for a thread that has an id, not the Device:
// the engine's step thread). No-op for the CPU; kNotCompiled for CUDA in a CPU-only build;
// kDevice if the index does not exist.
void make_device_current(DeviceId id);

// Makes a device current for a scope and restores the thread's previous current device after.
class DeviceScope {
 public:
  explicit DeviceScope(const Device& device) : DeviceScope(device.id()) {}
  explicit DeviceScope(DeviceId id);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_cuda_ = -1;  // the CUDA device to restore (-1: none changed)
};

}  // namespace eli
