// runtime/core/thread_pool.cc: see thread_pool.h.
//
// Protocol (atomics seq_cst unless noted; the two handshakes below are Dekker pairs):
// - caller: writes job_*, next_ = done_ = 0, open_ = true, generation_++; if sleepers_ > 0 it
//   takes the mutex and notifies. It claims and runs chunks itself, waits until done_ == n (every
//   claimed chunk finished), then open_ = false and waits until active_ == 0.
// - worker: spins (bounded) until generation_ changes; to block it does sleepers_++ and re-checks
//   generation_ under the mutex, so a bump is never missed. Then it registers (active_++), and
//   only if open_ reads true does it read the job and claim chunks; finally active_--.
// The caller never waits for a worker that has not claimed work, so a descheduled worker (loaded
// machine) costs nothing: the caller just runs every chunk itself.
#include "runtime/core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <new>
#include <string>
#include <system_error>

#include "eli/error.h"
#include "runtime/core/fault_injection.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ELI_CPU_RELAX() _mm_pause()
#else
#define ELI_CPU_RELAX() std::this_thread::yield()
#endif

namespace eli {

namespace {

constexpr int kPauseSpins = 200;  // pause-loop iterations (~a few microseconds) before yielding

// Spins on cond with pause, yielding the CPU after a while (the thread we wait for may be off-CPU).
template <typename Cond>
void spin_until(Cond cond) {
  for (int i = 0; !cond(); ++i) {
    if (i < kPauseSpins) {
      ELI_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ELI_CHECK_ARG(n_threads <= kMaxThreads, "n_threads = ", n_threads, " is more than the thread pool's limit of ",
                kMaxThreads);
  n_threads_ = n_threads;
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  for (int i = 1; i < n_threads_; ++i) {
    try {
      if (fault_fires(FaultPoint::kThreadStart)) {
        throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                                "injected fault thread_start");
      }
      workers_.emplace_back([this, i] { worker(i); });
    } catch (const std::exception& e) {  // std::system_error (EAGAIN) or std::bad_alloc
      // The workers already running wait on members of this object, whose destructor will not
      // run (the constructor did not finish): stop and join them here, then report.
      const auto* sys = dynamic_cast<const std::system_error*>(&e);
      const std::string reason = sys != nullptr ? sys->code().message() : std::string("out of memory");
      const size_t started = workers_.size();
      stop_workers();
      ELI_THROW(kOutOfMemory, "could not start the thread pool: asked for ", n_threads_, " threads, started ",
                started + 1, " (the calling thread included) before the system refused another (", reason,
                "); a process or memory limit was reached: use fewer threads (n_threads)");
    }
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::record_error(std::exception_ptr e) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!error_) error_ = std::move(e);
}

void ThreadPool::run_chunks(const RangeFn& fn) {
  for (;;) {
    const int64_t begin = next_.fetch_add(job_chunk_, std::memory_order_relaxed);
    if (begin >= job_n_) return;
    const int64_t end = std::min(job_n_, begin + job_chunk_);
    try {
      fn(begin, end);
    } catch (...) {
      record_error(std::current_exception());
    }
    done_.fetch_add(end - begin, std::memory_order_release);
  }
}

void ThreadPool::parallel_for(int64_t n, RangeFn fn, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  bool expected = false;
  if (n_threads_ == 1 || n <= grain || !in_job_.compare_exchange_strong(expected, true)) {
    fn(0, n);  // trivially small, single-threaded, or nested: run inline
    return;
  }
  job_ = &fn;
  job_n_ = n;
  // About 16 chunks per thread balance uneven rows and memory stalls; claiming is one atomic add.
  const int64_t chunk = (n + 16 * n_threads_ - 1) / (16 * n_threads_);
  job_chunk_ = std::max(chunk, grain);
  next_.store(0, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  open_.store(true);          // publishes the job fields above
  generation_.fetch_add(1);   // wakes spinning workers
  if (sleepers_.load() > 0) {
    { std::lock_guard<std::mutex> lock(mutex_); }
    work_cv_.notify_all();
  }
  run_chunks(fn);
  spin_until([&] { return done_.load(std::memory_order_acquire) >= n; });
  open_.store(false);
  spin_until([&] { return active_.load() == 0; });
  job_ = nullptr;
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    error = error_;
    error_ = nullptr;
  }
  in_job_.store(false);
  if (error) std::rethrow_exception(error);
}

void ThreadPool::worker(int) {
  using Clock = std::chrono::steady_clock;
  int64_t seen = generation_.load();
  for (;;) {
    // Spin a little: the next job of a decode step usually comes within microseconds.
    int64_t gen = generation_.load(std::memory_order_acquire);
    if (gen == seen && !stop_.load(std::memory_order_relaxed)) {
      const auto deadline = Clock::now() + std::chrono::microseconds(kSpinMicros);
      for (int i = 1;; ++i) {
        // Pause briefly, then yield: on an oversubscribed machine the caller may share this core,
        // and a pure spin would hold it off until the time slice ends.
        if (i < kPauseSpins) {
          ELI_CPU_RELAX();
        } else {
          std::this_thread::yield();
        }
        gen = generation_.load(std::memory_order_acquire);
        if (gen != seen || stop_.load(std::memory_order_relaxed)) break;
        if ((i & 15) == 0 && Clock::now() > deadline) break;
      }
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1);
      work_cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
      sleepers_.fetch_sub(1);
    }
    if (stop_.load()) return;
    active_.fetch_add(1);
    seen = generation_.load();
    if (open_.load()) run_chunks(*job_);
    active_.fetch_sub(1);
  }
}

}  // namespace eli
