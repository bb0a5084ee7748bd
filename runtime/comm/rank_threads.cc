// runtime/comm/rank_threads.cc: see rank_threads.h.
#include "runtime/comm/rank_threads.h"

#include <exception>
#include <mutex>
#include <string>
#include <thread>

#include "eli/error.h"

namespace eli {

void run_on_rank_threads(const std::vector<Communicator*>& comms, const std::function<void(int rank)>& fn) {
  for (Communicator* c : comms) ELI_CHECK(c != nullptr, "run_on_rank_threads: a null communicator");
  std::mutex mu;
  std::exception_ptr cause, echo;  // the first plain failure; the first CommAbortedError
  auto fail = [&](int rank, std::exception_ptr e, bool is_echo, const std::string& what) {
    {
      std::lock_guard<std::mutex> lk(mu);
      std::exception_ptr& slot = is_echo ? echo : cause;
      if (slot == nullptr) slot = e;
    }
    const std::string reason = "rank " + std::to_string(rank) + " failed: " + what;
    for (Communicator* c : comms) c->abort(reason);  // no-op where aborted already
  };
  std::vector<std::thread> threads;
  threads.reserve(comms.size());
  for (size_t r = 0; r < comms.size(); ++r) {
    const int rank = static_cast<int>(r);
    threads.emplace_back([&, rank] {
      try {
        fn(rank);
      } catch (const CommAbortedError& e) {
        fail(rank, std::current_exception(), true, e.what());
      } catch (const std::exception& e) {
        fail(rank, std::current_exception(), false, e.what());
      } catch (...) {
        fail(rank, std::current_exception(), false, "unknown exception");
      }
    });
  }
  for (std::thread& t : threads) t.join();
  if (cause != nullptr) std::rethrow_exception(cause);
  if (echo != nullptr) std::rethrow_exception(echo);
}

}  // namespace eli
