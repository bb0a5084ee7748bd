// tests/cpp/test_cuda_device_index.cc: the CUDA device on index cuda_device_count() - 1 (a
// non-zero index where the machine has more than one GPU, else index 0 through the same path;
// skipped without a GPU): its properties, the shared stream / event / buffer bodies, a kernel
// launched through exec_context() from the constructing thread and from another thread after
// make_current(), DeviceScope restoring the previous device, pinned and mapped-file buffers as
// upload sources, and the staged uploader returning its pinned memory.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "kernels/ops.h"
#include "kernels/registry.h"
#include "runtime/core/mapped_file.h"
#include "runtime/device/device.h"
#include "runtime/device/staged_upload.h"
#include "tests/cpp/device_backend_checks.h"

namespace eli {
namespace {

using backend_checks::kind_of;
using backend_checks::pattern;

int last_index() { return cuda_device_count() - 1; }

// Scatters tokens on `dev` with the registry's CUDA kernel on `stream`, from the calling thread.
void scatter_on(Device& dev, const Stream& stream) {
  std::vector<int32_t> ids = {5, 6, 7, 8}, src = {40, 41, 1000}, dst_index = {3, 0}, src_index = {1, 2};
  Buffer d_ids = dev.allocate_buffer(ids.size() * 4), d_src = dev.allocate_buffer(src.size() * 4);
  Buffer d_dst = dev.allocate_buffer(8), d_srci = dev.allocate_buffer(8);
  dev.copy_host_to_device(d_ids.mutable_data(), ids.data(), ids.size() * 4);
  dev.copy_host_to_device(d_src.mutable_data(), src.data(), src.size() * 4);
  dev.copy_host_to_device(d_dst.mutable_data(), dst_index.data(), 8);
  dev.copy_host_to_device(d_srci.mutable_data(), src_index.data(), 8);
  ScatterTokensArgs a{static_cast<int32_t*>(d_ids.mutable_data()), static_cast<const int32_t*>(d_dst.data()),
                      static_cast<const int32_t*>(d_src.data()), static_cast<const int32_t*>(d_srci.data()), 2, 100};
  get_kernel(Op::kScatterTokens, dev.id().kind, DType::kF32).fn(&a, dev.exec_context(stream));
  stream.synchronize();
  std::vector<int32_t> back(4, -1);
  dev.copy_device_to_host(back.data(), d_ids.data(), 16);
  EXPECT_EQ(back, (std::vector<int32_t>{0, 6, 7, 41}));
}

TEST(CudaDeviceIndex, PropertiesStreamsEventsAndBuffers) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  auto dev = create_cuda_device(last_index());
  const DeviceProperties& p = dev->properties();
  EXPECT_EQ(p.id, (DeviceId{DeviceKind::kCUDA, last_index()}));
  EXPECT_FALSE(p.name.empty());
  EXPECT_GE(p.compute_capability, 70);
  EXPECT_GT(p.n_compute_units, 0);
  EXPECT_EQ(p.total_memory_bytes, dev->total_bytes());
  EXPECT_TRUE(p.async_execution);
  EXPECT_TRUE(p.supports_graphs);
  EXPECT_FALSE(p.host_memory);
  EXPECT_NE(dev->default_stream().native(), nullptr);
  EXPECT_TRUE(dev->supports(Op::kScatterTokens, DType::kF32));
  EXPECT_FALSE(dev->supports(Op::kDequant, DType::kQ4_K));  // dequantized on the host today
  backend_checks::check_streams_and_events(*dev);
  backend_checks::check_buffers(*dev);
  backend_checks::check_strided_copy(*dev);
}

TEST(CudaDeviceIndex, KernelsRunOnTheDeviceFromAnyThreadThatMakesItCurrent) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  auto dev = create_cuda_device(last_index());  // current on this thread now
  scatter_on(*dev, dev->default_stream());
  auto stream = dev->create_stream();
  std::thread t([&] {
    dev->make_current();  // what the engine's step thread does first
    scatter_on(*dev, *stream);
  });
  t.join();
  std::thread t2([&] {
    make_device_current(dev->id());
    scatter_on(*dev, dev->default_stream());
  });
  t2.join();
  EXPECT_EQ(kind_of([] { make_device_current(DeviceId{DeviceKind::kCUDA, cuda_device_count()}); }),
            ErrorKind::kDevice);
  EXPECT_EQ(kind_of([] { create_cuda_device(cuda_device_count()); }), ErrorKind::kDevice);
}

TEST(CudaDeviceIndex, ScopeRestoresThePreviousDevice) {
  if (cuda_device_count() < 2) GTEST_SKIP() << "needs two CUDA devices";
  auto first = create_cuda_device(0);
  auto last = create_cuda_device(last_index());  // current: last
  {
    DeviceScope scope(*first);
    scatter_on(*first, first->default_stream());
  }
  scatter_on(*last, last->default_stream());  // restored: launches on `last` again
  // An event of one device may order a stream of another.
  auto e = first->create_event();
  e->record(first->default_stream());
  last->default_stream().wait(*e);
  last->default_stream().synchronize();
}

TEST(CudaDeviceIndex, MappedAndPinnedBuffersAsUploadSources) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  auto dev = create_cuda_device(last_index());
  const std::vector<uint8_t> bytes = pattern((3u << 20) + 11, 5);
  char tmpl[] = "/tmp/eli_test_cuda_mapped_XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  close(fd);
  {
    Buffer view = map_file_buffer(MappedFile::open(tmpl), 0, bytes.size());
    Buffer a = dev->allocate_buffer(bytes.size()), b = dev->allocate_buffer(bytes.size());
    StagedUploadOptions opt;
    opt.n_buffers = 2;
    opt.buffer_bytes = 1u << 20;
    std::vector<UploadPiece> pieces = {UploadPiece{a.mutable_data(), view.data(), view.size()}};
    EXPECT_TRUE(upload_pieces(*dev, &dev->thread_pool(), pieces, dev->default_stream(), opt).staged);
    EXPECT_EQ(dev->pinned_memory_stats().reserved_bytes, 0u);  // staging memory returned
    // Pinned -> device asynchronously on a created stream, ordered by an event.
    Buffer pinned = dev->allocate_buffer(bytes.size(), BufferType::kPinnedHost);
    std::memcpy(pinned.mutable_data(), view.data(), bytes.size());
    auto s = dev->create_stream();
    dev->copy_host_to_device(b.mutable_data(), pinned.data(), bytes.size(), s->native());
    auto done = dev->create_event();
    done->record(*s);
    dev->default_stream().wait(*done);
    std::vector<uint8_t> back_a(bytes.size()), back_b(bytes.size());
    dev->copy_device_to_host(back_a.data(), a.data(), bytes.size());
    dev->copy_device_to_host(back_b.data(), b.data(), bytes.size());
    EXPECT_EQ(back_a, bytes);
    EXPECT_EQ(back_b, bytes);
  }
  std::remove(tmpl);
}

}  // namespace
}  // namespace eli
