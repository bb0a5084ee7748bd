// tests/cpp/test_cuda_peer_all_reduce.cc: eli's one-shot / two-shot all-reduce
// (kernels/cuda/peer_all_reduce.h) on one GPU with N local buffers standing in for N peers: each
// "rank" is launched on its own stream, concurrently, through the same code path as with real
// peers (peer pointers, signal areas, the barriers); every rank's output must equal the host
// reference (f32 sums in rank order, rounded once to the dtype) bit for bit, for N = 2, 4, 8,
// f32 / bf16 / f16, every size class (one element to 8 MB, one-shot and two-shot, in place for
// two-shot), and twice in a row (the launch counters). A barrier timeout fails the test instead of
// hanging. Skipped without a GPU; in a CPU build the call is kNotCompiled.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "eli/error.h"
#include "kernels/cuda/peer_all_reduce.h"
#include "kernels/ref/float_convert.h"
#include "runtime/device/device.h"

namespace eli {
namespace {

float to_f(const uint8_t* p, DType dt, size_t i) {
  uint16_t h;
  switch (dt) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return f;
    }
    case DType::kBF16: std::memcpy(&h, p + 2 * i, 2); return bf16_to_f32(h);
    default: std::memcpy(&h, p + 2 * i, 2); return f16_to_f32(h);
  }
}

void from_f(uint8_t* p, DType dt, size_t i, float v) {
  uint16_t h;
  switch (dt) {
    case DType::kF32: std::memcpy(p + 4 * i, &v, 4); return;
    case DType::kBF16: h = f32_to_bf16(v); break;
    default: h = f32_to_f16(v); break;
  }
  std::memcpy(p + 2 * i, &h, 2);
}

TEST(CudaPeerAllReduce, CpuBuildSaysNotCompiled) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU build";
  PeerAllReduceArgs a;
  int x = 0;
  a.inputs[0] = &x;
  a.signals[0] = reinterpret_cast<uint32_t*>(&x);
  a.out = &a;
  try {
    peer_all_reduce(a, nullptr);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotCompiled);
  }
  bool two = false;
  EXPECT_TRUE(peer_all_reduce_fits(4096, 4, &two));
  EXPECT_FALSE(two);
  EXPECT_TRUE(peer_all_reduce_fits(size_t{4} << 20, 4, &two));
  EXPECT_TRUE(two);
  EXPECT_FALSE(peer_all_reduce_fits(size_t{64} << 20, 4, &two));
}

TEST(CudaPeerAllReduce, LocalBuffersStandInForPeers) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  std::unique_ptr<Device> dev = create_device(DeviceId{DeviceKind::kCUDA, 0});
  for (int n : {2, 4, 8}) {
    std::vector<std::unique_ptr<Stream>> streams;
    std::vector<Buffer> signals;
    for (int r = 0; r < n; ++r) {
      streams.push_back(dev->create_stream());
      signals.push_back(dev->allocate_buffer(kPeerSignalBytes));
      dev->memset_zero(signals.back().mutable_data(), kPeerSignalBytes);
    }
    Buffer err = dev->allocate_buffer(sizeof(int));
    dev->memset_zero(err.mutable_data(), sizeof(int));
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      const size_t esz = dtype_info(dt).block_bytes;
      for (size_t count : {size_t{1}, size_t{1000}, size_t{1} << 12, size_t{1} << 17, (size_t{8} << 20) / esz}) {
        for (bool two_shot : {false, true}) {
          const size_t bytes = count * esz;
          std::vector<std::vector<uint8_t>> host(static_cast<size_t>(n), std::vector<uint8_t>(bytes));
          for (int r = 0; r < n; ++r) {
            for (size_t i = 0; i < count; ++i) from_f(host[r].data(), dt, i, static_cast<float>((i * 7 + r * 13) % 29) * 0.25f - 3.0f);
          }
          std::vector<uint8_t> want(bytes);
          for (size_t i = 0; i < count; ++i) {
            float s = 0.0f;
            for (int r = 0; r < n; ++r) s += to_f(host[r].data(), dt, i);
            from_f(want.data(), dt, i, s);
          }
          std::vector<Buffer> in, out, scratch;
          for (int r = 0; r < n; ++r) {
            in.push_back(dev->allocate_buffer(bytes));
            out.push_back(dev->allocate_buffer(bytes));
            scratch.push_back(dev->allocate_buffer(bytes));
          }
          for (int rep = 0; rep < 2; ++rep) {
            for (int r = 0; r < n; ++r) dev->copy_host_to_device(in[r].mutable_data(), host[r].data(), bytes);
            for (int r = 0; r < n; ++r) {
              PeerAllReduceArgs a;
              for (int p = 0; p < n; ++p) {
                a.inputs[p] = in[p].data();
                a.scratch[p] = scratch[p].mutable_data();
                a.signals[p] = static_cast<uint32_t*>(signals[p].mutable_data());
              }
              a.out = two_shot ? in[r].mutable_data() : out[r].mutable_data();  // two-shot in place
              a.count = static_cast<int64_t>(count);
              a.dtype = dt;
              a.n_ranks = n;
              a.rank = r;
              a.two_shot = two_shot;
              a.error = static_cast<int*>(err.mutable_data());
              peer_all_reduce(a, streams[r]->native());
            }
            for (auto& s : streams) s->synchronize();
            int e = 0;
            dev->copy_device_to_host(&e, err.data(), sizeof(int));
            ASSERT_EQ(e, 0) << "barrier timeout: n " << n << " " << dtype_name(dt) << " count " << count;
            for (int r = 0; r < n; ++r) {
              std::vector<uint8_t> got(bytes);
              dev->copy_device_to_host(got.data(), (two_shot ? in[r] : out[r]).data(), bytes);
              ASSERT_EQ(got, want) << "n " << n << " rank " << r << " " << dtype_name(dt) << " count " << count
                                   << (two_shot ? " two-shot" : " one-shot") << " rep " << rep;
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace eli
