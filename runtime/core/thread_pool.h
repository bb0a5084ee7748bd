// runtime/core/thread_pool.h: a fixed pool of worker threads for data-parallel loops.
//
// Invariants: parallel_for(n, fn) calls fn(begin, end) over disjoint ranges covering [0, n) and
// returns after all of them finished; the calling thread takes part. One parallel_for at a time per
// pool (the engine step loop is its only user); nested calls run inline. Exceptions thrown by fn
// are rethrown in the caller after every range finished.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace eli {

class ThreadPool {
 public:
  // n_threads <= 0: the number of hardware threads.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int n_threads() const { return n_threads_; }
  // Splits [0, n) into chunks of at least `grain` items, one or more per thread.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

 private:
  void worker(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable work_cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0, job_chunk_ = 1, job_next_ = 0;
  int64_t generation_ = 0;
  int busy_ = 0;
  bool stop_ = false;
  bool in_job_ = false;
  std::exception_ptr error_;
};

// Runs fn over [0, n) on the pool, or inline when pool is null.
inline void parallel_for(ThreadPool* pool, int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                         int64_t grain = 1) {
  if (pool == nullptr || n <= grain) {
    if (n > 0) fn(0, n);
  } else {
    pool->parallel_for(n, fn, grain);
  }
}

}  // namespace eli
