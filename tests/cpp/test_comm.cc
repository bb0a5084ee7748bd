// tests/cpp/test_comm.cc: the in-process CPU Communicator (runtime/comm/): every op on many world
// sizes, odd counts and every dtype, in place and not, against references computed here (a
// reduction is the f32 sum in rank order, rounded once: bit-exact); results identical on every rank
// and under random thread timing; send/recv in groups; and the failure paths of RELIABILITY 23: a
// rank that throws, a rank that never comes (bounded waits), mismatched calls, bad arguments, use
// after abort; none of them hangs.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runtime/comm/cpu_communicator.h"
#include "tests/cpp/comm_conformance.h"
#include "runtime/comm/rank_threads.h"
#include "runtime/core/float_convert.h"
#include "runtime/device/device.h"

namespace eli {
namespace {

using std::chrono::milliseconds;

const std::vector<int> kWorlds = {1, 2, 3, 5, 8};
const std::vector<size_t> kCounts = {0, 1, 7, 111, 1025, 4099};
const std::vector<DType> kFloatTypes = {DType::kF32, DType::kBF16, DType::kF16};

std::vector<Communicator*> raw(const std::vector<std::unique_ptr<Communicator>>& comms) {
  std::vector<Communicator*> r;
  for (const auto& c : comms) r.push_back(c.get());
  return r;
}

// The seeded values, the f32 <-> 16-bit accessors and the rank-order reference sum shared with
// the GPU communicators' tests.
using comm_conformance::get;
using comm_conformance::reference_sum;
using comm_conformance::seed_of;
using comm_conformance::values;

class CommTest : public ::testing::Test {
 protected:
  // Runs fn(rank, comm) on n rank threads; returns each rank's error message ("" for none) and
  // the error run_on_rank_threads rethrew (through *cause).
  std::vector<std::string> run(int n, const std::function<void(int, Communicator&)>& fn, CpuCommOptions opt = {},
                               std::string* cause = nullptr, ErrorKind* cause_kind = nullptr) {
    auto comms = create_cpu_communicators(n, opt);
    std::vector<std::string> errors(n);
    try {
      run_on_rank_threads(raw(comms), [&](int r) {
        try {
          fn(r, *comms[r]);
        } catch (const std::exception& e) {
          errors[r] = e.what();
          throw;
        }
      });
    } catch (const Error& e) {
      if (cause) *cause = e.what();
      if (cause_kind) *cause_kind = e.kind();
      if (!cause) ADD_FAILURE() << "unexpected failure: " << e.what();
    }
    return errors;
  }
  std::unique_ptr<Device> cpu_ = create_cpu_device();
  const Stream& s_ = cpu_->default_stream();
};

TEST_F(CommTest, AllReduceEveryWorldCountAndDtypeIsBitExact) {
  for (int n : kWorlds) {
    run(n, [&](int r, Communicator& c) {
      EXPECT_EQ(c.rank(), r);
      EXPECT_EQ(c.world_size(), n);
      EXPECT_EQ(c.device(), (DeviceId{DeviceKind::kCPU, 0}));
      for (DType dt : kFloatTypes) {
        for (size_t count : kCounts) {
          std::vector<std::vector<uint8_t>> inputs;
          for (int q = 0; q < n; ++q) inputs.push_back(values(dt, count, seed_of(q, count, dt)));
          const std::vector<uint8_t> want = reference_sum(inputs, dt, 0, count);
          std::vector<uint8_t> recv(want.size(), 0xEE);
          c.all_reduce(inputs[r].data(), recv.data(), count, dt, ReduceOp::kSum, s_);
          EXPECT_EQ(recv, want) << "n " << n << " rank " << r << " " << dtype_name(dt) << " count " << count;
          std::vector<uint8_t> inplace = inputs[r];
          c.all_reduce(inplace.data(), inplace.data(), count, dt, ReduceOp::kSum, s_);
          EXPECT_EQ(inplace, want) << "in place: n " << n << " " << dtype_name(dt) << " count " << count;
        }
      }
    });
  }
}

TEST_F(CommTest, ReduceScatterAllGatherBroadcast) {
  for (int n : kWorlds) {
    run(n, [&](int r, Communicator& c) {
      for (DType dt : kFloatTypes) {
        for (size_t count : kCounts) {
          const size_t bytes = comm_bytes(count, dt);
          // reduce_scatter: rank r gets slice r of the sum.
          std::vector<std::vector<uint8_t>> inputs;
          for (int q = 0; q < n; ++q) inputs.push_back(values(dt, count * n, seed_of(q, count, dt) + 1));
          const std::vector<uint8_t> want = reference_sum(inputs, dt, count * r, count);
          std::vector<uint8_t> recv(bytes, 0xEE);
          c.reduce_scatter(inputs[r].data(), recv.data(), count, dt, ReduceOp::kSum, s_);
          EXPECT_EQ(recv, want) << "reduce_scatter n " << n << " " << dtype_name(dt) << " count " << count;
          std::vector<uint8_t> inplace = inputs[r];  // recv = send + r * count
          c.reduce_scatter(inplace.data(), inplace.data() + bytes * r, count, dt, ReduceOp::kSum, s_);
          EXPECT_EQ(std::vector<uint8_t>(inplace.begin() + bytes * r, inplace.begin() + bytes * (r + 1)), want);
        }
      }
      // Copies take every dtype (block types in whole blocks).
      for (DType dt : {DType::kF32, DType::kBF16, DType::kI32, DType::kU8, DType::kQ8_0}) {
        for (size_t count : {size_t{0}, size_t{32}, size_t{96}, size_t{4096}}) {
          const size_t bytes = comm_bytes(count, dt);
          std::vector<std::vector<uint8_t>> inputs;
          for (int q = 0; q < n; ++q) inputs.push_back(values(dt, count, seed_of(q, count, dt) + 2));
          std::vector<uint8_t> want;
          for (int q = 0; q < n; ++q) want.insert(want.end(), inputs[q].begin(), inputs[q].end());
          std::vector<uint8_t> gathered(bytes * n, 0xEE);
          c.all_gather(inputs[r].data(), gathered.data(), count, dt, s_);
          EXPECT_EQ(gathered, want) << "all_gather n " << n << " " << dtype_name(dt) << " count " << count;
          std::vector<uint8_t> inplace(bytes * n, 0xEE);  // send = recv + r * count
          std::memcpy(inplace.data() + bytes * r, inputs[r].data(), bytes);
          c.all_gather(inplace.data() + bytes * r, inplace.data(), count, dt, s_);
          EXPECT_EQ(inplace, want);
          for (int root : {0, n - 1}) {
            std::vector<uint8_t> got(bytes, 0xEE);
            c.broadcast(r == root ? inputs[r].data() : nullptr, got.data(), count, dt, root, s_);
            EXPECT_EQ(got, inputs[root]) << "broadcast n " << n << " root " << root;
            std::vector<uint8_t> same = inputs[r];  // root in place: send == recv
            c.broadcast(same.data(), same.data(), count, dt, root, s_);
            EXPECT_EQ(same, inputs[root]);
          }
        }
      }
      c.barrier(s_);
    });
  }
}

// The shared conformance body (tests/cpp/comm_conformance.h, also run by the GPU communicators).
class HostIo final : public comm_conformance::RankIo {
 public:
  explicit HostIo(const Stream& s) : s_(s) {}
  void* alloc(size_t bytes) override {
    mem_.emplace_back(bytes, 0xEE);
    return mem_.back().data();
  }
  void upload(void* dst, const std::vector<uint8_t>& src) override {
    if (!src.empty()) std::memcpy(dst, src.data(), src.size());
  }
  std::vector<uint8_t> download(const void* src, size_t bytes) override {
    const uint8_t* p = static_cast<const uint8_t*>(src);
    return bytes == 0 ? std::vector<uint8_t>() : std::vector<uint8_t>(p, p + bytes);
  }
  const Stream& stream() override { return s_; }

 private:
  const Stream& s_;
  std::deque<std::vector<uint8_t>> mem_;
};

TEST_F(CommTest, ConformanceBody) {
  for (int n : kWorlds) {
    run(n, [&](int r, Communicator& c) {
      HostIo io(s_);
      comm_conformance::run_body(n, r, c, io);
    });
  }
}

TEST_F(CommTest, ReductionsAreIdenticalOnEveryRankWhateverTheTiming) {
  const int n = 6;
  const size_t count = 3001;
  for (DType dt : kFloatTypes) {
    std::vector<std::vector<uint8_t>> inputs;
    for (int q = 0; q < n; ++q) inputs.push_back(values(dt, count, 77 + q));
    const std::vector<uint8_t> want = reference_sum(inputs, dt, 0, count);
    for (int trial = 0; trial < 8; ++trial) {
      std::vector<std::vector<uint8_t>> results(n);
      run(n, [&](int r, Communicator& c) {
        std::mt19937 rng(trial * 31 + r);
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));  // arrive in any order
        results[r].assign(want.size(), 0);
        c.all_reduce(inputs[r].data(), results[r].data(), count, dt, ReduceOp::kSum, s_);
      });
      for (int r = 0; r < n; ++r) EXPECT_EQ(results[r], want) << dtype_name(dt) << " trial " << trial << " rank " << r;
    }
  }
}

TEST_F(CommTest, SendRecvInGroupsAndOrder) {
  for (int n : {2, 3, 5}) {
    run(n, [&](int r, Communicator& c) {
      const int next = (r + 1) % n, prev = (r + n - 1) % n;
      std::vector<float> mine(333, static_cast<float>(r)), got(333, -1.f);
      // recv before send in each rank's group: needs the group (the sends go first at group_end).
      c.group_start();
      c.recv(got.data(), got.size(), DType::kF32, prev, s_);
      c.group_start();  // nested
      c.send(mine.data(), mine.size(), DType::kF32, next, s_);
      c.group_end();
      EXPECT_EQ(got[0], -1.f);  // nothing issued before the outermost end
      c.group_end();
      EXPECT_EQ(got, std::vector<float>(333, static_cast<float>(prev)));
      // Several messages between one pair arrive in order; empty ones too.
      if (r == 0) {
        for (int k = 0; k < 5; ++k) {
          const int32_t v = k;
          c.send(&v, 1, DType::kI32, 1, s_);
        }
        c.send(nullptr, 0, DType::kI32, 1, s_);
      } else if (r == 1) {
        for (int k = 0; k < 5; ++k) {
          int32_t v = -1;
          c.recv(&v, 1, DType::kI32, 0, s_);
          EXPECT_EQ(v, k);
        }
        c.recv(nullptr, 0, DType::kI32, 0, s_);
      }
      c.barrier(s_);
    });
  }
}

TEST_F(CommTest, ARankThatThrowsFailsEveryRankWithoutWaiting) {
  CpuCommOptions opt;
  opt.timeout = milliseconds(120000);  // the peers must fail through the abort, not the timeout
  std::string cause;
  ErrorKind kind = ErrorKind::kInternal;
  std::vector<std::string> errors = run(
      4,
      [&](int r, Communicator& c) {
        std::vector<float> x(100, 1.f);
        c.all_reduce(x.data(), x.data(), x.size(), DType::kF32, ReduceOp::kSum, s_);
        if (r == 2) ELI_THROW(kModelLoad, "rank two could not load its shard");
        c.all_reduce(x.data(), x.data(), x.size(), DType::kF32, ReduceOp::kSum, s_);
      },
      opt, &cause, &kind);
  EXPECT_EQ(kind, ErrorKind::kModelLoad);  // the cause, not an echo
  EXPECT_NE(cause.find("rank two could not load its shard"), std::string::npos) << cause;
  for (int r : {0, 1, 3}) {
    EXPECT_NE(errors[r].find("communicator aborted: rank 2 failed"), std::string::npos) << r << ": " << errors[r];
    EXPECT_EQ(errors[r].find("timed out"), std::string::npos) << errors[r];
  }
}

TEST_F(CommTest, ARankThatNeverComesTimesOut) {
  CpuCommOptions opt;
  opt.timeout = milliseconds(50);
  std::string cause;
  ErrorKind kind = ErrorKind::kInternal;
  std::vector<std::string> errors = run(
      3,
      [&](int r, Communicator& c) {
        if (r == 1) return;  // never calls the barrier
        c.barrier(s_);
      },
      opt, &cause, &kind);
  EXPECT_EQ(kind, ErrorKind::kDevice);
  EXPECT_NE(cause.find("timed out after 50 ms in barrier #0, waiting for rank(s) 1"), std::string::npos) << cause;
  EXPECT_TRUE(errors[1].empty());
  EXPECT_FALSE(errors[0].empty());
  EXPECT_FALSE(errors[2].empty());

  // A recv whose message never comes.
  errors = run(
      2,
      [&](int r, Communicator& c) {
        if (r == 0) {
          float x = 0.f;
          c.recv(&x, 1, DType::kF32, 1, s_);
        }
      },
      opt, &cause, &kind);
  EXPECT_EQ(kind, ErrorKind::kDevice);
  EXPECT_NE(cause.find("in recv from rank 1, waiting for a message from rank 1"), std::string::npos) << cause;
}

TEST_F(CommTest, MismatchedCallsAreInternalErrorsOnEveryRank) {
  std::string cause;
  ErrorKind kind = ErrorKind::kDevice;
  std::vector<std::string> errors = run(
      3,
      [&](int r, Communicator& c) {
        std::vector<float> x(20, 1.f);
        c.all_reduce(x.data(), x.data(), r == 1 ? 11 : 10, DType::kF32, ReduceOp::kSum, s_);
      },
      {}, &cause, &kind);
  EXPECT_EQ(kind, ErrorKind::kInternal);
  for (const std::string& e : errors) EXPECT_NE(e.find("collective mismatch"), std::string::npos) << e;
  EXPECT_NE(cause.find("all_reduce #0(count 11, f32, sum)"), std::string::npos) << cause;

  errors = run(
      2,
      [&](int r, Communicator& c) {
        float x[4] = {};
        if (r == 0) c.barrier(s_);
        else c.all_gather(x, x + 2, 2, DType::kF32, s_);
      },
      {}, &cause, &kind);
  EXPECT_EQ(kind, ErrorKind::kInternal);
  EXPECT_NE(cause.find("barrier #0"), std::string::npos) << cause;

  // A recv that does not match its send.
  errors = run(
      2,
      [&](int r, Communicator& c) {
        float x[4] = {};
        if (r == 0) c.send(x, 4, DType::kF32, 1, s_);
        else c.recv(x, 3, DType::kF32, 0, s_);
      },
      {}, &cause, &kind);
  EXPECT_EQ(kind, ErrorKind::kInternal);
  EXPECT_NE(cause.find("expected 3 f32 from rank 0, which sent 4 f32"), std::string::npos) << cause;
}

TEST_F(CommTest, BadArgumentsFailTheCallingRankAndAbortTheGroup) {
  auto expect_bad = [&](ErrorKind want, const std::function<void(Communicator&)>& bad) {
    std::string cause;
    ErrorKind kind = ErrorKind::kInternal;
    std::vector<std::string> errors = run(
        2,
        [&](int r, Communicator& c) {
          if (r == 0) bad(c);
          c.barrier(s_);  // rank 1 is released by the abort
        },
        {}, &cause, &kind);
    EXPECT_EQ(kind, want) << cause;
    EXPECT_NE(errors[1].find("communicator aborted: rank 0"), std::string::npos) << errors[1];
  };
  float x[8] = {};
  int32_t i[8] = {};
  expect_bad(ErrorKind::kUnsupported, [&](Communicator& c) { c.all_reduce(i, i, 8, DType::kI32, ReduceOp::kSum, s_); });
  // The communicator is called by eli's own layers with computed buffers: misuse is an eli bug (kInternal).
  expect_bad(ErrorKind::kInternal, [&](Communicator& c) { c.all_reduce(x, x + 1, 4, DType::kF32, ReduceOp::kSum, s_); });
  expect_bad(ErrorKind::kInternal, [&](Communicator& c) { c.all_reduce(nullptr, x, 4, DType::kF32, ReduceOp::kSum, s_); });
  expect_bad(ErrorKind::kInternal, [&](Communicator& c) { c.all_gather(x, x + 1, 2, DType::kF32, s_); });
  expect_bad(ErrorKind::kInternal, [&](Communicator& c) { c.broadcast(x, x, 2, DType::kF32, 2, s_); });
  expect_bad(ErrorKind::kInternal, [&](Communicator& c) { c.all_gather(x, x + 4, 3, DType::kQ8_0, s_); });
  expect_bad(ErrorKind::kInternal, [&](Communicator& c) { c.send(x, 1, DType::kF32, 0, s_); });  // itself
  expect_bad(ErrorKind::kInternal, [&](Communicator& c) { c.recv(x, 1, DType::kF32, 5, s_); });
  expect_bad(ErrorKind::kInternal, [&](Communicator& c) { c.group_end(); });
}

TEST_F(CommTest, AbortIsStickyAndKeepsTheFirstReason) {
  auto comms = create_cpu_communicators(3);
  EXPECT_EQ(comms[0]->abort_reason(), "");
  comms[1]->abort("first");
  comms[2]->abort("second");
  EXPECT_EQ(comms[0]->abort_reason(), "first");
  float x = 1.f;
  try {
    comms[0]->all_reduce(&x, &x, 1, DType::kF32, ReduceOp::kSum, s_);
    ADD_FAILURE() << "expected CommAbortedError";
  } catch (const CommAbortedError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kDevice);
    EXPECT_NE(std::string(e.what()).find("first"), std::string::npos) << e.what();
  }
  EXPECT_THROW(comms[2]->send(&x, 1, DType::kF32, 0, s_), CommAbortedError);
  EXPECT_THROW(comms[0]->recv(&x, 1, DType::kF32, 2, s_), CommAbortedError);
}

TEST_F(CommTest, FactoryAndStreamChecks) {
  EXPECT_THROW(create_cpu_communicators(0), Error);
  EXPECT_THROW(create_cpu_communicators(4097), Error);
  CpuCommOptions opt;
  opt.timeout = milliseconds(0);
  EXPECT_THROW(create_cpu_communicators(2, opt), Error);
  auto one = create_cpu_communicators(1);
  float x = 2.f, y = 0.f;
  one[0]->all_reduce(&x, &y, 1, DType::kF32, ReduceOp::kSum, s_);  // a group of one: a copy
  EXPECT_EQ(y, 2.f);
  const float neg_zero = -0.f;
  one[0]->all_reduce(&neg_zero, &y, 1, DType::kF32, ReduceOp::kSum, s_);
  EXPECT_TRUE(std::signbit(y));  // bits kept, not 0 + x

  class CudaLikeStream final : public Stream {
   public:
    DeviceId device() const override { return DeviceId{DeviceKind::kCUDA, 0}; }
    void* native() const override { return nullptr; }
    void synchronize() const override {}
    bool query() const override { return true; }
    void wait(const Event&) const override {}
  } gpu;
  // eli's layers hand the communicator its streams: a foreign one is an eli bug (kInternal).
  try {
    one[0]->barrier(gpu);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInternal);
  }
  EXPECT_EQ(comm_bytes(64, DType::kQ8_0), 68u);
  EXPECT_THROW(comm_bytes(SIZE_MAX, DType::kF32), Error);
}

}  // namespace
}  // namespace eli
