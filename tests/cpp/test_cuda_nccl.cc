// tests/cpp/test_cuda_nccl.cc: the NCCL communicator on the GPU machine (skipped without a GPU or
// without a loadable libnccl; the lead runs it): at world size 1 every collective equals the plain
// path (the input itself: all_reduce, all_gather, broadcast, reduce_scatter are identities), for
// f32 / bf16 / f16 and counts from 1 to 1M elements; with two or more GPUs, an all-reduce over
// cuda_device_count() ranks equals the sum computed on the host. A CPU build: kNotCompiled.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

#include "eli/error.h"
#include "runtime/comm/nccl_communicator.h"
#include "runtime/comm/rank_threads.h"
#include "runtime/device/device.h"

namespace eli {
namespace {

bool have_nccl() { return cuda_device_count() > 0 && nccl_available(); }

std::vector<uint8_t> pattern_bytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    v[i] = static_cast<uint8_t>((x >> 24) & 0x3f);  // small finite floats in every 16/32-bit pattern
  }
  return v;
}

TEST(CudaNccl, CpuBuildSaysNotCompiled) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU build";
  try {
    create_nccl_communicators({DeviceId{DeviceKind::kCUDA, 0}});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(e.kind() == ErrorKind::kNotCompiled || e.kind() == ErrorKind::kDevice) << e.what();
  }
}

TEST(CudaNccl, WorldOneEqualsThePlainPath) {
  if (!have_nccl()) GTEST_SKIP() << "no GPU or no libnccl";
  auto comms = create_nccl_communicators({DeviceId{DeviceKind::kCUDA, 0}});
  ASSERT_EQ(comms.size(), 1u);
  Communicator& c = *comms[0];
  std::unique_ptr<Device> dev = create_device(DeviceId{DeviceKind::kCUDA, 0});
  const Stream& s = dev->default_stream();
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (size_t count : {size_t{1}, size_t{1000}, size_t{4096}, size_t{1} << 20}) {
      const size_t bytes = comm_bytes(count, dt);
      const std::vector<uint8_t> host = pattern_bytes(bytes, static_cast<uint32_t>(count));
      Buffer a = dev->allocate_buffer(bytes), b = dev->allocate_buffer(bytes);
      dev->copy_host_to_device(a.mutable_data(), host.data(), bytes);
      std::vector<uint8_t> back(bytes);
      c.all_reduce(a.data(), b.mutable_data(), count, dt, ReduceOp::kSum, s);
      dev->copy_device_to_host(back.data(), b.data(), bytes);
      EXPECT_EQ(back, host) << "all_reduce " << dtype_name(dt) << " " << count;
      c.all_gather(a.data(), b.mutable_data(), count, dt, s);
      dev->copy_device_to_host(back.data(), b.data(), bytes);
      EXPECT_EQ(back, host) << "all_gather " << dtype_name(dt) << " " << count;
      c.broadcast(a.data(), b.mutable_data(), count, dt, 0, s);
      dev->copy_device_to_host(back.data(), b.data(), bytes);
      EXPECT_EQ(back, host) << "broadcast " << dtype_name(dt) << " " << count;
      c.barrier(s);
    }
  }
}

TEST(CudaNccl, AllReduceOverEveryGpuIsTheSum) {
  const int n = cuda_device_count();
  if (n < 2 || !nccl_available()) GTEST_SKIP() << "needs two GPUs and libnccl";
  std::vector<DeviceId> ids;
  for (int i = 0; i < n; ++i) ids.push_back(DeviceId{DeviceKind::kCUDA, i});
  auto comms = create_nccl_communicators(ids);
  std::vector<Communicator*> raw;
  for (auto& c : comms) raw.push_back(c.get());
  const size_t count = 12345;
  std::vector<float> want(count, 0.0f);
  for (int r = 0; r < n; ++r) {
    for (size_t i = 0; i < count; ++i) want[i] += static_cast<float>((r + 1) * (i % 17));
  }
  std::vector<std::vector<float>> got(static_cast<size_t>(n));
  run_on_rank_threads(raw, [&](int r) {
    std::unique_ptr<Device> dev = create_device(ids[static_cast<size_t>(r)]);
    std::vector<float> mine(count);
    for (size_t i = 0; i < count; ++i) mine[i] = static_cast<float>((r + 1) * (i % 17));
    Buffer b = dev->allocate_buffer(count * sizeof(float));
    dev->copy_host_to_device(b.mutable_data(), mine.data(), count * sizeof(float));
    raw[static_cast<size_t>(r)]->all_reduce(b.data(), b.mutable_data(), count, DType::kF32, ReduceOp::kSum,
                                            dev->default_stream());
    got[static_cast<size_t>(r)].resize(count);
    dev->copy_device_to_host(got[static_cast<size_t>(r)].data(), b.data(), count * sizeof(float));
  });
  for (int r = 0; r < n; ++r) EXPECT_EQ(got[static_cast<size_t>(r)], want) << "rank " << r;
}

}  // namespace
}  // namespace eli
