// runtime/parallel/rank_workers.cc: see rank_workers.h.
#include "runtime/parallel/rank_workers.h"

#include <string>

#include "eli/error.h"

namespace eli {

RankWorkers::RankWorkers(int n_ranks, std::vector<Communicator*> abort_on_failure)
    : comms_(std::move(abort_on_failure)) {
  ELI_CHECK(n_ranks >= 1, "RankWorkers needs at least one rank");
  threads_.reserve(static_cast<size_t>(n_ranks));
  try {
    for (int r = 0; r < n_ranks; ++r) threads_.emplace_back([this, r] { loop(r); });
  } catch (const std::system_error& e) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    start_.notify_all();
    for (std::thread& t : threads_) t.join();
    ELI_THROW(kOutOfMemory, "could not start the thread of rank ", threads_.size(), " of ", n_ranks, ": ", e.what());
  }
}

RankWorkers::~RankWorkers() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  start_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void RankWorkers::run(const std::function<void(int)>& fn) {
  std::unique_lock<std::mutex> lk(mu_);
  fn_ = &fn;
  cause_ = nullptr;
  echo_ = nullptr;
  running_ = size();
  ++generation_;
  start_.notify_all();
  done_.wait(lk, [&] { return running_ == 0; });
  fn_ = nullptr;
  if (cause_ != nullptr) std::rethrow_exception(cause_);
  if (echo_ != nullptr) std::rethrow_exception(echo_);
}

void RankWorkers::loop(int rank) {
  unsigned long seen = 0;
  for (;;) {
    const std::function<void(int)>* fn = nullptr;
    {
      std::unique_lock<std::mutex> lk(mu_);
      start_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      fn = fn_;
    }
    std::exception_ptr err;
    bool is_echo = false;
    std::string what;
    try {
      (*fn)(rank);
    } catch (const CommAbortedError& e) {
      err = std::current_exception();
      is_echo = true;
      what = e.what();
    } catch (const std::exception& e) {
      err = std::current_exception();
      what = e.what();
    } catch (...) {
      err = std::current_exception();
      what = "unknown exception";
    }
    if (err != nullptr) {
      const std::string reason = "rank " + std::to_string(rank) + " failed: " + what;
      for (Communicator* c : comms_) c->abort(reason);  // wakes peers blocked on this rank
    }
    std::lock_guard<std::mutex> lk(mu_);
    if (err != nullptr) {
      std::exception_ptr& slot = is_echo ? echo_ : cause_;
      if (slot == nullptr) slot = err;
    }
    if (--running_ == 0) done_.notify_all();
  }
}

}  // namespace eli
