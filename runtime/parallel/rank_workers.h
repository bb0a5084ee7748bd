// runtime/parallel/rank_workers.h: RankWorkers, one persistent thread per rank of a parallel group
// (a runner per rank lives on its thread for the engine's whole life): run(fn) calls fn(rank) on
// every rank's thread and returns when all have returned.
//
// Failure handling as run_on_rank_threads (runtime/comm/rank_threads.h): the first rank to throw
// aborts every communicator given (so that peers blocked in a collective fail at once instead of
// waiting for it), and run() rethrows the first failure that is not an abort echo once every rank
// is done. After a failure the communicators stay aborted: later runs fail with the first reason.
//
// Invariants: one run() at a time (the engine's step loop); the destructor joins every thread.
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/comm/communicator.h"

namespace eli {

class RankWorkers {
 public:
  RankWorkers(int n_ranks, std::vector<Communicator*> abort_on_failure);
  ~RankWorkers();
  RankWorkers(const RankWorkers&) = delete;
  RankWorkers& operator=(const RankWorkers&) = delete;

  int size() const { return static_cast<int>(threads_.size()); }
  void run(const std::function<void(int rank)>& fn);

 private:
  void loop(int rank);
  std::vector<Communicator*> comms_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable start_, done_;
  const std::function<void(int)>* fn_ = nullptr;
  unsigned long generation_ = 0;
  int running_ = 0;
  bool stop_ = false;
  std::exception_ptr cause_, echo_;
};

}  // namespace eli
