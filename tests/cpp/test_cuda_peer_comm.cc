// tests/cpp/test_cuda_peer_comm.cc: the peer communicator (runtime/comm/peer_communicator.h) and the
// NCCL communicator's all-reduce picker.
//
// On the CPU (CI): the chunk and group-issue plans, ELI_ALLREDUCE's parsing and the picker's rule,
// kNotCompiled from a CPU build. On a GPU (CudaPeerComm*, skipped without one): the conformance
// body of every communicator (tests/cpp/comm_conformance.h) with 1, 2, 3 and 4 ranks all on cuda:0
// (each rank a thread with its own stream) and a tiny staging / mailbox so that every size from one
// element up crosses many chunks; all_reduce past the default 32 MB staging; a barrier whose peer
// never comes times out instead of hanging, abort() ends a peer's device wait, a mismatch of calls
// fails the group; each rank captures all_reduce in a CUDA graph and replays it twice. With >= 2
// GPUs the conformance body on distinct devices (skipped with fewer).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "eli/error.h"
#include "runtime/comm/nccl_communicator.h"
#include "runtime/comm/peer_communicator.h"
#include "runtime/comm/rank_threads.h"
#include "runtime/device/device.h"
#include "runtime/device/step_graph.h"
#include "tests/cpp/comm_conformance.h"

namespace eli {
namespace {

using comm_conformance::RankIo;

// ---- host-only (CI) ----

TEST(PeerCommPlan, ChunksCoverTheRangeInOrder) {
  EXPECT_TRUE(peer_chunks(0, 5).empty());
  const std::vector<PeerChunk> c = peer_chunks(11, 4);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].offset, 0u);
  EXPECT_EQ(c[0].count, 4u);
  EXPECT_EQ(c[1].offset, 4u);
  EXPECT_EQ(c[2].offset, 8u);
  EXPECT_EQ(c[2].count, 3u);
  EXPECT_EQ(peer_chunks(8, 8).size(), 1u);
  EXPECT_EQ(peer_chunks(9, 8).size(), 2u);
  EXPECT_THROW(peer_chunks(3, 0), Error);
}

TEST(PeerCommPlan, GroupIssuesSendsThenRecvsChunkByChunk) {
  // ops: recv (2 chunks), send (3 chunks), send (1 chunk), recv (0 chunks: an empty message)
  const auto order = peer_p2p_order({2, 3, 1, 0}, {false, true, true, false});
  const std::vector<std::pair<size_t, size_t>> want = {{1, 0}, {2, 0}, {0, 0}, {1, 1}, {0, 1}, {1, 2}};
  EXPECT_EQ(order, want);
  EXPECT_TRUE(peer_p2p_order({}, {}).empty());
  EXPECT_THROW(peer_p2p_order({1}, {}), Error);
}

TEST(PeerCommPlan, AllReducePickerRule) {
  EXPECT_EQ(parse_all_reduce_mode(nullptr), AllReduceMode::kAuto);
  EXPECT_EQ(parse_all_reduce_mode(""), AllReduceMode::kAuto);
  EXPECT_EQ(parse_all_reduce_mode("auto"), AllReduceMode::kAuto);
  EXPECT_EQ(parse_all_reduce_mode("nccl"), AllReduceMode::kNccl);
  EXPECT_EQ(parse_all_reduce_mode("peer"), AllReduceMode::kPeer);
  try {
    parse_all_reduce_mode("ring");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("ring"), std::string::npos);
  }
  const size_t kb = 1024, mb = kb * kb;
  EXPECT_TRUE(nccl_uses_peer_all_reduce(AllReduceMode::kAuto, 64 * kb, 4, true));
  EXPECT_TRUE(nccl_uses_peer_all_reduce(AllReduceMode::kAuto, 32 * mb, 8, true));
  EXPECT_FALSE(nccl_uses_peer_all_reduce(AllReduceMode::kAuto, 32 * mb + 1, 8, true));  // NCCL's size
  EXPECT_FALSE(nccl_uses_peer_all_reduce(AllReduceMode::kAuto, 64 * kb, 4, false));     // no peer access
  EXPECT_FALSE(nccl_uses_peer_all_reduce(AllReduceMode::kAuto, 64 * kb, 1, true));      // world 1
  EXPECT_FALSE(nccl_uses_peer_all_reduce(AllReduceMode::kNccl, 64 * kb, 4, true));
  EXPECT_TRUE(nccl_uses_peer_all_reduce(AllReduceMode::kPeer, 256 * mb, 4, true));
  EXPECT_FALSE(nccl_uses_peer_all_reduce(AllReduceMode::kPeer, 64 * kb, 4, false));
}

TEST(CudaPeerComm, CpuBuildSaysNotCompiled) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU build";
  try {
    create_peer_communicators({DeviceId{DeviceKind::kCUDA, 0}, DeviceId{DeviceKind::kCUDA, 0}});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    // kNotCompiled in a CPU build; a CUDA build on a machine without a GPU refuses the device.
    EXPECT_TRUE(e.kind() == ErrorKind::kNotCompiled || e.kind() == ErrorKind::kDevice ||
                e.kind() == ErrorKind::kInvalidArgument)
        << e.what();
  }
}

// ---- GPU ----

bool have_gpu() { return cuda_device_count() > 0; }

std::vector<DeviceId> on_gpu(int n, int gpu) { return std::vector<DeviceId>(n, DeviceId{DeviceKind::kCUDA, gpu}); }

std::vector<Communicator*> raw(const std::vector<std::unique_ptr<Communicator>>& comms) {
  std::vector<Communicator*> r;
  for (const auto& c : comms) r.push_back(c.get());
  return r;
}

// One Device per GPU for all the ranks on it (created on the test's thread).
class Devices {
 public:
  Device& get(int gpu) {
    std::lock_guard<std::mutex> lk(mu_);
    auto& d = devs_[gpu];
    if (!d) d = create_device(DeviceId{DeviceKind::kCUDA, gpu});
    return *d;
  }

 private:
  std::mutex mu_;
  std::map<int, std::unique_ptr<Device>> devs_;
};

class GpuIo final : public RankIo {
 public:
  GpuIo(Device& dev, std::mutex& alloc_mu) : dev_(dev), mu_(alloc_mu), stream_(dev.create_stream()) {}
  ~GpuIo() override { stream_->synchronize(); }
  void* alloc(size_t bytes) override {
    std::lock_guard<std::mutex> lk(mu_);
    bufs_.push_back(dev_.allocate_buffer(bytes));
    dev_.memset_zero(bufs_.back().mutable_data(), bytes);
    return bufs_.back().mutable_data();
  }
  void upload(void* dst, const std::vector<uint8_t>& src) override {
    stream_->synchronize();
    if (!src.empty()) dev_.copy_host_to_device(dst, src.data(), src.size());
  }
  std::vector<uint8_t> download(const void* src, size_t bytes) override {
    stream_->synchronize();
    std::vector<uint8_t> out(bytes);
    if (bytes != 0) dev_.copy_device_to_host(out.data(), src, bytes);
    return out;
  }
  const Stream& stream() override { return *stream_; }

 private:
  Device& dev_;
  std::mutex& mu_;
  std::deque<Buffer> bufs_;
  std::unique_ptr<Stream> stream_;
};

// Runs fn(rank, comm, io) on one thread per rank; returns the error run_on_rank_threads rethrew
// ("" for none) and each rank's own message.
struct RunResult {
  std::string cause;
  ErrorKind kind = ErrorKind::kInternal;
  std::vector<std::string> errors;
};

RunResult run_ranks(const std::vector<DeviceId>& devices, const PeerCommOptions& opt,
                    const std::function<void(int, Communicator&, GpuIo&)>& fn) {
  Devices devs;
  for (const DeviceId& d : devices) devs.get(d.index);
  std::mutex alloc_mu;
  auto comms = create_peer_communicators(devices, opt);
  RunResult res;
  res.errors.resize(devices.size());
  try {
    run_on_rank_threads(raw(comms), [&](int r) {
      Device& dev = devs.get(devices[r].index);
      dev.make_current();
      GpuIo io(dev, alloc_mu);
      try {
        fn(r, *comms[r], io);
      } catch (const std::exception& e) {
        res.errors[r] = e.what();
        throw;
      }
    });
  } catch (const Error& e) {
    res.cause = e.what();
    res.kind = e.kind();
  }
  return res;
}

PeerCommOptions tiny_buffers() {
  PeerCommOptions opt;
  opt.staging_bytes = 4096;  // 1024 f32: counts of a few thousand cross many chunks
  opt.mailbox_bytes = 256;
  opt.timeout = std::chrono::seconds(60);
  return opt;
}

comm_conformance::Sizes chunked_sizes() {
  comm_conformance::Sizes s;
  s.reduce_counts = {0, 1, 7, 1023, 1024, 1025, 4099};
  s.copy_counts = {0, 32, 96, 4096};  // 4096 f32 = 4 staging chunks, 64 mailbox chunks
  return s;
}

TEST(CudaPeerComm, ConformanceOnOneGpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (int n : {1, 2, 3, 4}) {
    RunResult res = run_ranks(on_gpu(n, 0), tiny_buffers(), [&](int r, Communicator& c, GpuIo& io) {
      EXPECT_EQ(c.device(), (DeviceId{DeviceKind::kCUDA, 0}));
      comm_conformance::run_body(n, r, c, io, chunked_sizes());
      peer_comm_check(c);
    });
    EXPECT_EQ(res.cause, "") << "n " << n;
  }
}

TEST(CudaPeerComm, AllReducePastTheDefaultStaging) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  // 300001: one chunk, two-shot with 3 ranks (one-shot with 2); 8M + 1: f32 is one element past
  // the 32 MB staging (two chunks, the first two-shot), 16-bit types one two-shot chunk.
  for (int n : {2, 3}) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (size_t count : {size_t{300001}, (size_t{32} << 20) / 4 + 1}) {
        std::vector<std::vector<uint8_t>> in;
        for (int q = 0; q < n; ++q) in.push_back(comm_conformance::values(dt, count, 11 + q));
        const std::vector<uint8_t> want = comm_conformance::reference_sum(in, dt, 0, count);
        RunResult res = run_ranks(on_gpu(n, 0), PeerCommOptions{}, [&](int r, Communicator& c, GpuIo& io) {
          void* buf = comm_conformance::uploaded(io, in[r]);
          c.all_reduce(buf, buf, count, dt, ReduceOp::kSum, io.stream());
          EXPECT_EQ(io.download(buf, want.size()), want) << "n " << n << " " << dtype_name(dt) << " count " << count
                                                          << " rank " << r;
          peer_comm_check(c);
        });
        EXPECT_EQ(res.cause, "");
      }
    }
  }
}

TEST(CudaPeerComm, ConformanceOnDistinctGpus) {
  const int g = cuda_device_count();
  if (g < 2) GTEST_SKIP() << "needs two GPUs";
  const int n = std::min(g, 4);
  std::vector<DeviceId> devices;
  for (int i = 0; i < n; ++i) devices.push_back(DeviceId{DeviceKind::kCUDA, i});
  RunResult res = run_ranks(devices, tiny_buffers(), [&](int r, Communicator& c, GpuIo& io) {
    comm_conformance::run_body(n, r, c, io, chunked_sizes());
    peer_comm_check(c);
  });
  EXPECT_EQ(res.cause, "");
  // Mixed: two ranks on each of two GPUs.
  res = run_ranks({DeviceId{DeviceKind::kCUDA, 0}, DeviceId{DeviceKind::kCUDA, 0}, DeviceId{DeviceKind::kCUDA, 1},
                   DeviceId{DeviceKind::kCUDA, 1}},
                  tiny_buffers(), [&](int r, Communicator& c, GpuIo& io) {
                    comm_conformance::run_body(4, r, c, io, chunked_sizes());
                    peer_comm_check(c);
                  });
  EXPECT_EQ(res.cause, "");
}

TEST(CudaPeerComm, BadFactoryArguments) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  EXPECT_THROW(create_peer_communicators({}), Error);
  EXPECT_THROW(create_peer_communicators(on_gpu(9, 0)), Error);
  EXPECT_THROW(create_peer_communicators({DeviceId{DeviceKind::kCPU, 0}}), Error);
  EXPECT_THROW(create_peer_communicators({DeviceId{DeviceKind::kCUDA, cuda_device_count()}}), Error);
  PeerCommOptions opt;
  opt.staging_bytes = 100;
  EXPECT_THROW(create_peer_communicators(on_gpu(2, 0), opt), Error);
  auto cpu_comms = create_peer_communicators(on_gpu(1, 0));
  std::unique_ptr<Device> cpu = create_cpu_device();
  try {  // a stream of another device: an eli bug (kInternal)
    cpu_comms[0]->barrier(cpu->default_stream());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInternal) << e.what();
  }
}

TEST(CudaPeerComm, ABarrierWhosePeerNeverComesTimesOut) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  PeerCommOptions opt;
  opt.timeout = std::chrono::milliseconds(200);
  RunResult res = run_ranks(on_gpu(3, 0), opt, [&](int r, Communicator& c, GpuIo& io) {
    if (r == 1) return;  // never calls the barrier
    c.barrier(io.stream());
    io.stream().synchronize();  // returns: the device wait ends by its timeout
    peer_comm_check(c);
  });
  EXPECT_EQ(res.kind, ErrorKind::kDevice) << res.cause;
  EXPECT_NE(res.cause.find("timed out after 200 ms on the device in barrier"), std::string::npos) << res.cause;
  EXPECT_FALSE(res.errors[0].empty());
  EXPECT_FALSE(res.errors[2].empty());

  // A recv whose send never comes: the host wait is bounded too.
  res = run_ranks(on_gpu(2, 0), opt, [&](int r, Communicator& c, GpuIo& io) {
    if (r == 0) c.recv(io.alloc(4), 1, DType::kF32, 1, io.stream());
  });
  EXPECT_EQ(res.kind, ErrorKind::kDevice);
  EXPECT_NE(res.cause.find("in recv from rank 1, waiting for a message from rank 1"), std::string::npos) << res.cause;
}

TEST(CudaPeerComm, AbortEndsAPeersDeviceWaitAndIsSticky) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  PeerCommOptions opt;
  opt.timeout = std::chrono::seconds(120);  // must end through the abort, not the timeout
  std::atomic<bool> waiting{false};
  RunResult res = run_ranks(on_gpu(2, 0), opt, [&](int r, Communicator& c, GpuIo& io) {
    if (r == 0) {
      c.barrier(io.stream());
      waiting = true;
      io.stream().synchronize();  // released by rank 1's abort
      peer_comm_check(c);
    } else {
      while (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      c.abort("rank one gave up");
      c.barrier(io.stream());
    }
  });
  EXPECT_NE(res.cause.find("rank one gave up"), std::string::npos) << res.cause;
  for (const std::string& e : res.errors) {
    EXPECT_NE(e.find("communicator aborted: rank one gave up"), std::string::npos) << e;
    EXPECT_EQ(e.find("timed out"), std::string::npos) << e;
  }
}

TEST(CudaPeerComm, MismatchedCallsFailTheGroup) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  PeerCommOptions opt;
  opt.timeout = std::chrono::seconds(60);
  RunResult res = run_ranks(on_gpu(3, 0), opt, [&](int r, Communicator& c, GpuIo& io) {
    void* x = io.alloc(64);
    c.all_reduce(x, x, r == 1 ? 11 : 10, DType::kF32, ReduceOp::kSum, io.stream());
    io.stream().synchronize();
    peer_comm_check(c);
  });
  EXPECT_EQ(res.kind, ErrorKind::kInternal) << res.cause;
  EXPECT_NE(res.cause.find("collective mismatch"), std::string::npos) << res.cause;
  for (const std::string& e : res.errors) EXPECT_NE(e.find("collective mismatch"), std::string::npos) << e;

  // A recv that does not match its send.
  res = run_ranks(on_gpu(2, 0), opt, [&](int r, Communicator& c, GpuIo& io) {
    void* x = io.alloc(64);
    if (r == 0) c.send(x, 4, DType::kF32, 1, io.stream());
    else c.recv(x, 3, DType::kF32, 0, io.stream());
    io.stream().synchronize();
    peer_comm_check(c);
  });
  EXPECT_EQ(res.kind, ErrorKind::kInternal) << res.cause;
  EXPECT_NE(res.cause.find("expected 3 f32 from rank 0, which sent 4 f32"), std::string::npos) << res.cause;
}

TEST(CudaPeerComm, AllReduceInACapturedGraphReplays) {
  if (!have_gpu() || !graphs_supported()) GTEST_SKIP() << "no CUDA device";
  for (int n : {2, 3}) {
    for (size_t count : {size_t{1000}, size_t{300000}}) {  // one-shot; two-shot with 3 ranks (1.2 MB)
      std::mutex mu;
      std::condition_variable cv;
      int captured = 0;
      RunResult res = run_ranks(on_gpu(n, 0), PeerCommOptions{}, [&](int r, Communicator& c, GpuIo& io) {
        void* in = io.alloc(count * 4);
        void* out = io.alloc(count * 4);
        std::unique_ptr<StepGraph> g = capture_step_graph(io.stream().native(), [&] {
          c.all_reduce(in, out, count, DType::kF32, ReduceOp::kSum, io.stream());
        });
        {  // nobody replays before every rank captured (capture runs nothing)
          std::unique_lock<std::mutex> lk(mu);
          if (++captured == n) cv.notify_all();
          cv.wait(lk, [&] { return captured == n; });
        }
        for (int rep = 0; rep < 2; ++rep) {
          std::vector<std::vector<uint8_t>> all;
          for (int q = 0; q < n; ++q) all.push_back(comm_conformance::values(DType::kF32, count, 100 * rep + q));
          io.upload(in, all[r]);
          g->replay(io.stream().native());
          EXPECT_EQ(io.download(out, count * 4), comm_conformance::reference_sum(all, DType::kF32, 0, count))
              << "n " << n << " count " << count << " replay " << rep << " rank " << r;
        }
        peer_comm_check(c);
      });
      EXPECT_EQ(res.cause, "");
    }
  }
}

TEST(CudaPeerComm, NcclPickerAtWorldOneAndForcedModes) {
  if (!have_gpu() || !nccl_available()) GTEST_SKIP() << "no GPU or no libnccl";
  // World 1: both forced modes give the input back (the peer path at world 1 is a copy).
  for (const char* mode : {"nccl", "peer", "auto"}) {
    setenv("ELI_ALLREDUCE", mode, 1);
    auto comms = create_nccl_communicators({DeviceId{DeviceKind::kCUDA, 0}});
    std::unique_ptr<Device> dev = create_device(DeviceId{DeviceKind::kCUDA, 0});
    const size_t count = 5000;
    const std::vector<uint8_t> host = comm_conformance::values(DType::kBF16, count, 5);
    Buffer a = dev->allocate_buffer(host.size()), b = dev->allocate_buffer(host.size());
    dev->copy_host_to_device(a.mutable_data(), host.data(), host.size());
    comms[0]->all_reduce(a.data(), b.mutable_data(), count, DType::kBF16, ReduceOp::kSum, dev->default_stream());
    dev->default_stream().synchronize();
    std::vector<uint8_t> back(host.size());
    dev->copy_device_to_host(back.data(), b.data(), back.size());
    EXPECT_EQ(back, host) << mode;
  }
  setenv("ELI_ALLREDUCE", "bogus", 1);
  EXPECT_THROW(create_nccl_communicators({DeviceId{DeviceKind::kCUDA, 0}}), Error);
  unsetenv("ELI_ALLREDUCE");
}

TEST(CudaPeerComm, NcclPickerOnDistinctGpusIsTheRankOrderSum) {
  const int g = cuda_device_count();
  if (g < 2 || !nccl_available()) GTEST_SKIP() << "needs two GPUs and libnccl";
  const int n = std::min(g, 8);
  std::vector<DeviceId> ids;
  for (int i = 0; i < n; ++i) ids.push_back(DeviceId{DeviceKind::kCUDA, i});
  unsetenv("ELI_ALLREDUCE");
  auto comms = create_nccl_communicators(ids);  // auto: the peer kernel for these sizes (with peer access)
  std::vector<std::unique_ptr<Device>> devs;
  for (int i = 0; i < n; ++i) devs.push_back(create_device(ids[i]));
  for (size_t count : {size_t{1}, size_t{4099}, size_t{600000}}) {
    std::vector<std::vector<uint8_t>> in;
    for (int q = 0; q < n; ++q) in.push_back(comm_conformance::values(DType::kF32, count, 31 + q));
    const std::vector<uint8_t> want = comm_conformance::reference_sum(in, DType::kF32, 0, count);
    std::vector<Communicator*> rc = raw(comms);
    run_on_rank_threads(rc, [&](int r) {
      devs[r]->make_current();
      Buffer x = devs[r]->allocate_buffer(count * 4);
      devs[r]->copy_host_to_device(x.mutable_data(), in[r].data(), count * 4);
      comms[r]->all_reduce(x.data(), x.mutable_data(), count, DType::kF32, ReduceOp::kSum, devs[r]->default_stream());
      devs[r]->default_stream().synchronize();
      std::vector<uint8_t> got(count * 4);
      devs[r]->copy_device_to_host(got.data(), x.data(), got.size());
      // Bit-exact when the peer path ran (all pairs with peer access); NCCL's ring order otherwise.
      EXPECT_EQ(got.size(), want.size());
      for (size_t i = 0; i < count; ++i) {
        EXPECT_NEAR(comm_conformance::get(got, DType::kF32, i), comm_conformance::get(want, DType::kF32, i), 1e-4f)
            << "rank " << r << " element " << i;
        if (HasFailure()) break;
      }
    });
  }
}

}  // namespace
}  // namespace eli
