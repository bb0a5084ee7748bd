// runtime/core/thread_pool.cc: see thread_pool.h. Work is handed out in chunks from a shared
// counter under the mutex (chunks are coarse: a few per thread), so no lock-free tricks are needed.
#include "runtime/core/thread_pool.h"

#include <algorithm>

namespace eli {

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (in_job_ || n_threads_ == 1 || n <= grain) {  // nested or trivially small: run inline
      lock.unlock();
      fn(0, n);
      return;
    }
    in_job_ = true;
    job_ = &fn;
    job_n_ = n;
    // About 4 chunks per thread balances uneven rows without much locking.
    int64_t chunk = (n + 4 * n_threads_ - 1) / (4 * n_threads_);
    job_chunk_ = std::max(chunk, grain);
    job_next_ = 0;
    error_ = nullptr;
    ++generation_;
  }
  work_cv_.notify_all();
  // The caller works too.
  for (;;) {
    int64_t begin, end;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (job_next_ >= job_n_) break;
      begin = job_next_;
      end = std::min(job_n_, begin + job_chunk_);
      job_next_ = end;
    }
    try {
      fn(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, [this] { return busy_ == 0; });
    job_ = nullptr;
    in_job_ = false;
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

void ThreadPool::worker(int) {
  int64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || (generation_ != seen && job_ != nullptr); });
    if (stop_) return;
    seen = generation_;
    ++busy_;
    while (job_ != nullptr && job_next_ < job_n_) {
      int64_t begin = job_next_;
      int64_t end = std::min(job_n_, begin + job_chunk_);
      job_next_ = end;
      const auto* fn = job_;
      lock.unlock();
      try {
        (*fn)(begin, end);
      } catch (...) {
        lock.lock();
        if (!error_) error_ = std::current_exception();
        lock.unlock();
      }
      lock.lock();
    }
    --busy_;
    if (busy_ == 0) done_cv_.notify_all();
  }
}

}  // namespace eli
