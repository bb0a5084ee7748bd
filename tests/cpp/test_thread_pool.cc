// tests/cpp/test_thread_pool.cc: ThreadPool (runtime/core/thread_pool.h): ranges cover [0, n),
// errors come back to the caller, and a worker thread that cannot be created (issue 21: n_threads
// 2000 under a memory ulimit hung forever) leaves no thread behind and raises Error(kOutOfMemory)
// saying how many threads were asked for and started. The failure is injected through the
// "thread_start" fault point, so the test never exhausts the machine.
#include <dirent.h>
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "eli/error.h"
#include "runtime/core/fault_injection.h"
#include "runtime/core/thread_pool.h"

namespace eli {
namespace {

// Threads of this process (entries of /proc/self/task).
int count_threads() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}

TEST(ThreadPool, CoversTheRangeAndRethrows) {
  ThreadPool pool(4);
  EXPECT_EQ(pool.n_threads(), 4);
  std::vector<std::atomic<int>> hits(1000);
  pool.parallel_for(1000, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
  });
  for (const auto& h : hits) EXPECT_EQ(h.load(), 1);
  EXPECT_THROW(pool.parallel_for(100, [](int64_t b, int64_t) {
    if (b == 0) throw std::runtime_error("range failed");
  }),
               std::runtime_error);
}

TEST(ThreadPool, WorkerStartFailureCleansUpAndSaysSo) {
  const int before = count_threads();
  for (int64_t after : {0, 3}) {
    SCOPED_TRACE(after);
    FaultSpec spec;
    spec.after = after;  // `after` workers start, the next one fails
    spec.times = 1;
    ScopedFault fault(FaultPoint::kThreadStart, spec);
    try {
      ThreadPool pool(8);
      FAIL() << "the pool started although a worker could not";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kOutOfMemory) << e.what();
      const std::string msg = e.what();
      EXPECT_NE(msg.find("asked for 8 threads, started " + std::to_string(after + 1)), std::string::npos) << msg;
      EXPECT_NE(msg.find("n_threads"), std::string::npos) << msg;
    }
    // Every worker that did start was joined before the constructor threw.
    EXPECT_EQ(count_threads(), before);
    EXPECT_EQ(fault_counts(FaultPoint::kThreadStart).fires, 1);
  }
  // The next pool starts normally and works.
  ThreadPool pool(3);
  std::atomic<int64_t> sum{0};
  pool.parallel_for(100, [&](int64_t b, int64_t e) { sum += e - b; });
  EXPECT_EQ(sum.load(), 100);
}

TEST(ThreadPool, AbsurdThreadCountIsAnArgumentError) {
  try {
    ThreadPool pool(ThreadPool::kMaxThreads + 1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("n_threads"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace eli
