// runtime/comm/rank_threads.h: run one function per rank, each on its own thread, with the
// failure handling a group of ranks needs: the first rank to throw aborts the communicators (so
// peers blocked in a collective fail at once instead of waiting for it), every thread is joined,
// and the first failure (the cause, not the "aborted" errors it set off) is rethrown.
#pragma once

#include <functional>
#include <vector>

#include "runtime/comm/communicator.h"

namespace eli {

// Calls fn(rank) for rank 0 .. comms.size()-1, rank r on a new thread with comms[r]; returns when
// every call has returned. On a failure, aborts every communicator with its message; rethrows the
// cause (see above) once all threads are joined.
void run_on_rank_threads(const std::vector<Communicator*>& comms, const std::function<void(int rank)>& fn);

}  // namespace eli
