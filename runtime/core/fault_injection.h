// runtime/core/fault_injection.h: named fault points that tests arm to make the engine fail the way
// real hardware and real load do: a device allocation that fails, a preemption storm, a kernel that
// breaks the CUDA context, a slow step, an out-of-memory step. docs/fault_injection.md lists what
// each point does and what the engine guarantees when it fires.
//
// Decision: the hooks are compiled into EVERY build (the release wheel included) and are inert
// until armed. While nothing is armed a check costs one relaxed atomic load of a global bit mask
// and a not-taken branch. Why not #ifdef them out of release builds: the tests that need them are
// the tests of the shipped artefact (pytest in CI against the installed wheel, the GPU machine's
// pip-installed package), and a second "test" build configuration is one more thing to keep
// compiling. The checks sit only on per-step and per-allocation paths (the scheduler once per step,
// the async loop once per step, the pool once per allocate(), which already takes a mutex), never
// per token, per layer or per element, so the load is far below anything measurable.
//
// Arming: by API (arm_fault / arm_faults; Python: eli._eli.arm_fault), or by the environment
// variable ELI_FAULTS, which is read once per process (on the first Engine / AsyncEngine / device
// pool created) ONLY in builds configured with -DELI_FAULT_INJECTION=ON. An inherited environment
// must never be able to break a production server; arming by API takes code running in the process.
//
// Spec syntax (ELI_FAULTS and arm_faults):   name[:key=value[:key=value...]][,name...]
//   ELI_FAULTS="device_alloc:after=100:times=1,preempt_storm:prob=0.5"
//   keys: after  (checks that pass before the point may fire; default 0)
//         times  (firings before the point disarms itself; default -1 = unlimited)
//         prob   (probability of firing at each eligible check; default 1)
//         seed   (seed of the point's own RNG for prob < 1; default 0, deterministic)
//         value  (payload; alias ms; slow_step_ms sleeps this many milliseconds)
//   A comma item of the form key=value (no name) continues the previous entry, so
//   "device_alloc:after=100,times=1" also works.
//
// Invariants: arming a point resets its counters; a point fires at most `times` times; checks and
// fires are counted only while the point is armed; all state is process-global and thread-safe
// (a mutex on the slow path). Arming is seen by another thread after any synchronization with the
// arming thread (in practice at once): tests arm before submitting the work that should hit it.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace eli {

enum class FaultPoint : int {
  kDeviceAlloc = 0,  // "device_alloc": SizeClassPool::allocate throws Error(kOutOfMemory)
  kPreemptStorm,     // "preempt_storm": Scheduler::schedule preempts the oldest decoding sequence
  kKernelPoison,     // "kernel_poison": before a step, CUDA: an illegal-address kernel breaks the
                     //   context (sticky); CPU engine: the step throws Error(kDevice) instead
  kSlowStep,         // "slow_step_ms": the async loop sleeps `value` ms before a step
  kStepOom,          // "step_oom": a step throws Error(kOutOfMemory) before it runs (what an
                     //   allocation failure inside forward() does; on the CPU no step allocates)
  kThreadStart,      // "thread_start": ThreadPool fails to create a worker thread as std::thread
                     //   does at a process or memory limit (std::system_error, EAGAIN)
  kDiskRead,         // "disk_read": MappedFile::read_at / DirectReader::read (weight offloading's disk tier)
                     //   throws Error(kIO) as a failed pread does
  kKvDiskWrite,      // "kv_disk_write": a DiskKvTier write (the prefix cache's disk tier) fails as a
                     //   failed pwrite does: the block is dropped, the engine goes on
  kKvDiskRead,       // "kv_disk_read": a DiskKvTier read of a disk hit fails as a failed pread does:
                     //   the entry is dropped and its blocks are recomputed
};
constexpr int kNumFaultPoints = 9;

struct FaultSpec {
  int64_t after = 0;
  int64_t times = -1;
  double prob = 1.0;
  uint64_t seed = 0;
  int64_t value = 0;
};

struct FaultCounts {
  int64_t checks = 0;  // checks while armed
  int64_t fires = 0;
};

const char* fault_point_name(FaultPoint point);
// Throws Error(kInvalidArgument) naming the known points.
FaultPoint fault_point_from_name(const std::string& name);
std::vector<std::string> fault_point_names();
// "after=3:times=1" (':' or ',' between keys). Throws Error(kInvalidArgument) on a bad key or value.
FaultSpec parse_fault_spec(const std::string& spec);

void arm_fault(FaultPoint point, const FaultSpec& spec);
void arm_fault(const std::string& name, const std::string& spec);
// Arms every entry of an ELI_FAULTS-style list (all or nothing: a bad entry arms none).
void arm_faults(const std::string& list);
void disarm_fault(FaultPoint point);
void disarm_all_faults();
bool fault_armed(FaultPoint point);
FaultCounts fault_counts(FaultPoint point);

// Whether this build reads ELI_FAULTS (configured with -DELI_FAULT_INJECTION=ON).
bool fault_env_enabled();
// Arms what ELI_FAULTS names, once per process (later calls do nothing); no-op when the build does
// not read it. Throws Error(kInvalidArgument) for a malformed value (and tries again next call).
void load_faults_from_env();

// Launches kernels/cuda/fault_kernel.cu's kernel, which writes through an invalid device pointer on
// CUDA device `device`, and waits for it: the context is then broken for the rest of the process
// (every later CUDA call fails with cudaErrorIllegalAddress). Returns the CUDA error name seen.
// Throws Error(kNotCompiled) in a CPU-only build. Test use only.
std::string poison_cuda_context(int device);

namespace detail {
extern std::atomic<uint32_t> g_fault_mask;  // bit i: FaultPoint i is armed
bool fault_fires_slow(FaultPoint point, int64_t* value);
}  // namespace detail

// The hook: true when `point` fires now (then *value, if given, receives the spec's value).
// Unarmed cost: one relaxed load and a branch.
inline bool fault_fires(FaultPoint point, int64_t* value = nullptr) {
  const uint32_t bit = 1u << static_cast<int>(point);
  if ((detail::g_fault_mask.load(std::memory_order_relaxed) & bit) == 0) return false;
  return detail::fault_fires_slow(point, value);
}

// Tests: arms a point for the lifetime of the object, disarms it after.
class ScopedFault {
 public:
  ScopedFault(FaultPoint point, const FaultSpec& spec) : point_(point) { arm_fault(point, spec); }
  ~ScopedFault() { disarm_fault(point_); }
  ScopedFault(const ScopedFault&) = delete;
  ScopedFault& operator=(const ScopedFault&) = delete;

 private:
  FaultPoint point_;
};

}  // namespace eli
