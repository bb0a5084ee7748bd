// tests/cpp/test_device_backend.cc: the device layer without a GPU: the CPU as an ordinary device
// (properties, immediate streams and host events, buffers of every type, thread pool and
// ExecContext, capability queries answered by the kernel registry), mapped-file buffers, the
// current-device entry points and their errors in this build, and the staged uploader's pinned
// ring run on host devices (the CPU, and a fake device that claims asynchronous execution so that
// upload_pieces takes the staged path).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "temp_file.h"
#include "kernels/ops.h"
#include "kernels/registry.h"
#include "runtime/core/mapped_file.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"
#include "tests/cpp/fake_async_device.h"
#include "runtime/device/staged_upload.h"
#include "tests/cpp/device_backend_checks.h"

namespace eli {
namespace {

using backend_checks::kind_of;
using backend_checks::pattern;

// A stream of some other device (a GPU that is not there): for the "wrong device" errors.
class ForeignStream final : public Stream {
 public:
  DeviceId device() const override { return DeviceId{DeviceKind::kCUDA, 3}; }
  void* native() const override { return reinterpret_cast<void*>(0x1234); }
  void synchronize() const override {}
  bool query() const override { return true; }
  void wait(const Event&) const override {}
};

TEST(DeviceBackend, CpuIsAnOrdinaryDevice) {
  auto dev = create_cpu_device();
  const DeviceProperties& p = dev->properties();
  EXPECT_EQ(p.id, dev->id());
  EXPECT_EQ(p.name, "cpu");
  EXPECT_TRUE(p.host_memory);
  EXPECT_TRUE(p.unified_memory);
  EXPECT_FALSE(p.async_execution);
  EXPECT_FALSE(p.supports_graphs);
  EXPECT_EQ(p.compute_capability, 0);
  EXPECT_GT(p.total_memory_bytes, 0u);
  EXPECT_EQ(p.total_memory_bytes, dev->total_bytes());
  EXPECT_EQ(dev->default_stream().native(), nullptr);
  dev->make_current();  // no-op on the CPU
  backend_checks::check_streams_and_events(*dev);
  backend_checks::check_buffers(*dev);
  backend_checks::check_strided_copy(*dev);
}

TEST(DeviceBackend, EventAndStreamMisuseIsAnError) {
  auto dev = create_cpu_device();
  ForeignStream foreign;
  auto e = dev->create_event();
  std::string msg;
  // Streams and events are handed around by eli's own layers: misuse is an eli bug (kInternal).
  EXPECT_EQ(kind_of([&] { e->record(foreign); }, &msg), ErrorKind::kInternal);
  EXPECT_NE(msg.find("cuda:3"), std::string::npos) << msg;
  EXPECT_EQ(kind_of([&] { dev->exec_context(foreign); }), ErrorKind::kInternal);
  // An immediate stream may wait for any event (on the host).
  e->record(dev->default_stream());
  foreign.wait(*e);
  dev->default_stream().wait(*e);
}

TEST(DeviceBackend, ExecContextCarriesThePoolAndTheStream) {
  DeviceOptions opt;
  opt.n_threads = 3;
  auto dev = create_device(DeviceId{DeviceKind::kCPU, 0}, opt);
  ExecContext ctx = dev->exec_context();
  ASSERT_NE(ctx.pool, nullptr);
  EXPECT_EQ(ctx.pool, &dev->thread_pool());
  EXPECT_EQ(ctx.pool->n_threads(), 3);
  EXPECT_EQ(ctx.stream, nullptr);
  auto s = dev->create_stream();
  EXPECT_EQ(dev->exec_context(*s).stream, s->native());
  // A kernel launched through it runs (the same call the model makes on every device).
  std::vector<int32_t> ids = {5, 6, 7, 8}, src = {40, 41, 1000}, dst_index = {3, 0}, src_index = {1, 2};
  ScatterTokensArgs a{ids.data(), dst_index.data(), src.data(), src_index.data(), 2, 100};
  get_kernel(Op::kScatterTokens, dev->id().kind, DType::kF32).fn(&a, ctx);
  EXPECT_EQ(ids[3], 41);
  EXPECT_EQ(ids[0], 0);  // out of the vocabulary: 0
}

TEST(DeviceBackend, SupportsIsTheRegistry) {
  auto dev = create_cpu_device();
  EXPECT_TRUE(dev->supports(Op::kGemm, DType::kF32));
  EXPECT_TRUE(dev->supports(Op::kGemm, DType::kBF16));
  EXPECT_FALSE(dev->supports(Op::kGatedAct, DType::kF16));  // registered under f32 (the dtype is in the args)
  EXPECT_TRUE(dev->supports(Op::kGemm, DType::kQ4_K));  // the native GGUF block kernels
  EXPECT_FALSE(dev->supports(Op::kGemm, KernelFormat(WeightFormat::kDense, DType::kQ4_K)));
  EXPECT_TRUE(dev->supports(Op::kDequant, DType::kQ4_K));  // a block dtype is its GGUF block format
  EXPECT_FALSE(dev->supports(Op::kDequant, KernelFormat(WeightFormat::kDense, DType::kQ4_K)));
  // Every usable CPU entry of the registry is "supported", and nothing else is.
  for (const KernelEntry& e : all_kernels()) {
    if (e.device != DeviceKind::kCPU) continue;
    if (e.usable == nullptr || e.usable()) {
      EXPECT_TRUE(dev->supports(e.op, KernelFormat(e.format, e.dtype))) << op_name(e.op) << " " << dtype_name(e.dtype);
    }
  }
  for (int op = 0; op < static_cast<int>(Op::kCount); ++op) {
    for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
      const WeightFormat f = dtype_info(d).is_quantized ? WeightFormat::kGgufBlocks : WeightFormat::kDense;
      EXPECT_EQ(dev->supports(static_cast<Op>(op), d), find_kernel(static_cast<Op>(op), DeviceKind::kCPU, f, d) != nullptr);
    }
  }
}

TEST(DeviceBackend, BudgetAndAllocationSize) {
  auto dev = create_cpu_device();
  EXPECT_EQ(dev->allocation_size(1), 512u);
  EXPECT_EQ(dev->allocation_size(3u << 20), 4u << 20);  // large sizes: multiples of 2 MiB
  dev->set_memory_budget(1u << 20);
  Buffer ok = dev->allocate_buffer(1000);
  std::string msg;
  EXPECT_EQ(kind_of([&] { dev->allocate_buffer(2u << 20); }, &msg), ErrorKind::kOutOfMemory);
  EXPECT_NE(msg.find("budget"), std::string::npos) << msg;
  EXPECT_EQ(kind_of([&] { dev->allocate_buffer(uint64_t{1} << 62); }), ErrorKind::kOutOfMemory);
  dev->set_memory_budget(0);
  Buffer big = dev->allocate_buffer(2u << 20);
  EXPECT_TRUE(big.valid());
}

TEST(DeviceBackend, MappedFileBuffersAreReadOnlyViews) {
  const std::vector<uint8_t> bytes = pattern(10000, 3);
  TempFile f(bytes);
  std::shared_ptr<MappedFile> file = MappedFile::open(f.path());
  Buffer view = map_file_buffer(file, 100, 777);
  EXPECT_EQ(view.type(), BufferType::kMappedFile);
  EXPECT_EQ(view.size(), 777u);
  EXPECT_EQ(view.device(), (DeviceId{DeviceKind::kCPU, 0}));
  EXPECT_TRUE(view.host_accessible());
  EXPECT_TRUE(view.read_only());
  EXPECT_EQ(view.data(), file->data() + 100);  // no copy
  EXPECT_EQ(std::memcmp(view.data(), bytes.data() + 100, 777), 0);
  // Buffers and file views are made by eli's loaders from checked offsets: misuse is kInternal.
  EXPECT_EQ(kind_of([&] { view.mutable_data(); }), ErrorKind::kInternal);
  // The view keeps the mapping alive after the last other owner lets go.
  std::weak_ptr<MappedFile> weak = file;
  file.reset();
  EXPECT_FALSE(weak.expired());
  EXPECT_EQ(static_cast<const uint8_t*>(view.data())[776], bytes[876]);
  // A host-memory device copies from it like from any host memory.
  auto dev = create_cpu_device();
  Buffer dst = dev->allocate_buffer(777);
  dev->copy_host_to_device(dst.mutable_data(), view.data(), view.size());
  EXPECT_EQ(std::memcmp(dst.data(), bytes.data() + 100, 777), 0);
  view.reset();
  EXPECT_TRUE(weak.expired());

  std::shared_ptr<MappedFile> again = MappedFile::open(f.path());
  EXPECT_TRUE(map_file_buffer(again, 10000, 0).valid());  // empty, at the end
  EXPECT_EQ(kind_of([&] { map_file_buffer(again, 9999, 2); }), ErrorKind::kInternal);
  EXPECT_EQ(kind_of([&] { map_file_buffer(again, 10001, 0); }), ErrorKind::kInternal);
  EXPECT_EQ(kind_of([&] { map_file_buffer(again, 1, UINT64_MAX); }), ErrorKind::kInternal);
  EXPECT_EQ(kind_of([&] { map_file_buffer(nullptr, 0, 0); }), ErrorKind::kInternal);
}

TEST(DeviceBackend, CurrentDeviceEntryPoints) {
  make_device_current(DeviceId{DeviceKind::kCPU, 0});
  { DeviceScope scope(DeviceId{DeviceKind::kCPU, 0}); }
  auto dev = create_cpu_device();
  { DeviceScope scope(*dev); }
  EXPECT_EQ(kind_of([] { make_device_current(DeviceId{DeviceKind::kCPU, 1}); }), ErrorKind::kInvalidArgument);
  // Another thread: make_current is what the engine's step thread calls first.
  std::thread t([&] { dev->make_current(); });
  t.join();
  if (cuda_compiled()) {
    const int n = cuda_device_count();
    EXPECT_EQ(kind_of([n] { make_device_current(DeviceId{DeviceKind::kCUDA, n}); }), ErrorKind::kDevice);
    return;
  }
  std::string msg;
  EXPECT_EQ(kind_of([] { make_device_current(DeviceId{DeviceKind::kCUDA, 1}); }, &msg), ErrorKind::kNotCompiled);
  EXPECT_NE(msg.find("cuda:1"), std::string::npos) << msg;
  EXPECT_EQ(kind_of([] { DeviceScope s(DeviceId{DeviceKind::kCUDA, 0}); }), ErrorKind::kNotCompiled);
  EXPECT_EQ(kind_of([] { create_cuda_device(2, DeviceOptions{}); }), ErrorKind::kNotCompiled);
}

// ---- the staged uploader on host devices ----

struct Upload {
  std::vector<std::vector<uint8_t>> srcs, dsts;
  std::vector<UploadPiece> pieces;
  explicit Upload(const std::vector<size_t>& sizes) {
    for (size_t i = 0; i < sizes.size(); ++i) {
      srcs.push_back(pattern(sizes[i], static_cast<uint32_t>(i + 1)));
      dsts.emplace_back(sizes[i], 0);
    }
    for (size_t i = 0; i < sizes.size(); ++i) pieces.push_back(UploadPiece{dsts[i].data(), srcs[i].data(), sizes[i]});
  }
};

TEST(DeviceBackend, StagedUploadRingThroughPinnedBuffers) {
  FakeAsyncDevice dev;
  ThreadPool pool(2);
  const std::vector<size_t> sizes = {0, 1, 7, 4096, 4097, 3 * 4096 + 5, 111, 0, (1u << 20) + 17, 769};
  Upload u(sizes);
  StagedUploadOptions opt;
  opt.n_buffers = 2;
  opt.buffer_bytes = 4096;
  UploadResult r = upload_pieces(dev, &pool, u.pieces, nullptr, opt);
  EXPECT_TRUE(r.staged);
  EXPECT_EQ(u.dsts, u.srcs);
  // Through the pinned pool, whose cache is returned when the upload ends.
  const MemoryStats pinned = dev.pinned_memory_stats();
  EXPECT_GE(pinned.n_allocs, 2u);
  EXPECT_EQ(pinned.in_use_bytes, 0u);
  EXPECT_EQ(pinned.reserved_bytes, 0u);
  EXPECT_GT(dev.n_copies, static_cast<int>(sizes.size()));  // segments, not pieces

  // A stream handle that is not the default one: the synchronous path, same bytes.
  Upload v(sizes);
  auto other = dev.create_stream();
  const int before = dev.n_copies;
  EXPECT_FALSE(upload_pieces(dev, &pool, v.pieces, reinterpret_cast<void*>(0x10), opt).staged);
  EXPECT_EQ(v.dsts, v.srcs);
  EXPECT_EQ(dev.n_copies - before, static_cast<int>(sizes.size()));
  // An explicit Stream stages too.
  Upload w(sizes);
  EXPECT_TRUE(upload_pieces(dev, &pool, w.pieces, *other, opt).staged);
  EXPECT_EQ(w.dsts, w.srcs);
}

TEST(DeviceBackend, StagedUploadOnTheCpuIsDirectButTheRingStillWorks) {
  auto dev = create_cpu_device();
  Upload u({5000, 3, 9000});
  EXPECT_FALSE(upload_pieces(*dev, nullptr, u.pieces).staged);  // no async copies: nothing to overlap
  EXPECT_EQ(u.dsts, u.srcs);
  Upload v({5000, 3, 9000});
  StagedUploadOptions opt;
  opt.n_buffers = 3;
  opt.buffer_bytes = 1024;
  EXPECT_TRUE(run_staged_upload(*dev, nullptr, v.pieces, plan_staging(v.pieces, 1024), dev->default_stream(), opt));
  EXPECT_EQ(v.dsts, v.srcs);
  ForeignStream foreign;
  EXPECT_EQ(kind_of([&] { run_staged_upload(*dev, nullptr, v.pieces, plan_staging(v.pieces, 1024), foreign, opt); }),
            ErrorKind::kInternal);
}

}  // namespace
}  // namespace eli
