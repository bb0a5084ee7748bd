// runtime/core/thread_pool.h: a fixed pool of worker threads for data-parallel loops.
//
// Invariants: parallel_for(n, fn) calls fn(begin, end) over disjoint ranges covering [0, n) and
// returns after all of them finished; the calling thread takes part. One parallel_for at a time per
// pool (the engine step loop is its only user); nested calls run inline. Exceptions thrown by fn
// are rethrown in the caller after every range finished.
//
// Construction: when the system refuses a worker thread (a process or memory limit), the workers
// already started are stopped and joined and the constructor throws Error(kOutOfMemory) saying
// how many threads were asked for and started; it never leaves a thread behind. The fault point
// "thread_start" (fault_injection.h) makes a worker creation fail this way in tests.
//
// Latency: a decode step issues hundreds of short parallel_for calls, so idle workers spin for a
// bounded time (kSpinMicros) before blocking on a condition variable, chunks are claimed with an
// atomic counter, and fn is passed as a non-owning RangeFn (no std::function, no allocation).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace eli {

// A non-owning reference to a callable void(int64_t begin, int64_t end). The callable must outlive
// the RangeFn (true for a lambda passed straight to parallel_for: it lives until the call returns).
class RangeFn {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, RangeFn>>>
  RangeFn(F&& f)  // NOLINT(google-explicit-constructor): implicit by design
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, int64_t b, int64_t e) { (*static_cast<std::remove_reference_t<F>*>(o))(b, e); }) {}
  void operator()(int64_t begin, int64_t end) const { call_(obj_, begin, end); }

 private:
  void* obj_;
  void (*call_)(void*, int64_t, int64_t);
};

class ThreadPool {
 public:
  static constexpr int kMaxThreads = 4096;  // sanity cap: n_threads above it is kInvalidArgument

  // n_threads <= 0: the number of hardware threads. Throws Error(kInvalidArgument) above
  // kMaxThreads, Error(kOutOfMemory) when the system cannot start the threads.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int n_threads() const { return n_threads_; }
  // Splits [0, n) into chunks of at least `grain` items, one or more per thread.
  void parallel_for(int64_t n, RangeFn fn, int64_t grain = 1);

 private:
  static constexpr int64_t kSpinMicros = 200;  // idle spin before a worker blocks

  void worker(int index);
  void stop_workers();                 // sets stop_, wakes and joins every started worker
  void run_chunks(const RangeFn& fn);  // claims and runs chunks of the current job until none left
  void record_error(std::exception_ptr e);

  int n_threads_;
  std::vector<std::thread> workers_;
  // The current job: written by the caller while open_ is false and no worker is registered
  // (active_ == 0), published by open_ = true (release); a worker reads it only while registered
  // and after reading open_ == true, so it is stable for every reader.
  const RangeFn* job_ = nullptr;
  int64_t job_n_ = 0, job_chunk_ = 1;
  std::atomic<int64_t> next_{0};         // next unclaimed index of the current job
  std::atomic<int64_t> done_{0};         // indices of the current job finished
  std::atomic<int64_t> generation_{0};   // bumped once per job (wakes workers)
  std::atomic<bool> open_{false};        // a job is published and may be joined
  std::atomic<int> active_{0};           // workers registered on (possibly) the current job
  std::atomic<int> sleepers_{0};         // workers blocked (or about to block) on work_cv_
  std::atomic<bool> in_job_{false};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;                     // guards the blocking path and error_
  std::condition_variable work_cv_;
  std::exception_ptr error_;
};

// Runs fn over [0, n) on the pool, or inline when pool is null.
inline void parallel_for(ThreadPool* pool, int64_t n, RangeFn fn, int64_t grain = 1) {
  if (pool == nullptr || n <= grain) {
    if (n > 0) fn(0, n);
  } else {
    pool->parallel_for(n, fn, grain);
  }
}

}  // namespace eli
