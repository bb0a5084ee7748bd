// tests/cpp/test_offload_compute.cc: the offload_compute rule (runtime/runner/offload_compute.h):
// forced modes, "auto" on the CPU backend, "auto" on a GPU deciding from the rates (the CPU only
// when it is faster for one token and for a batch), the GPU stage keeping a layer, the parser, and
// the start-up measurement giving positive rates on the CPU device.
#include <gtest/gtest.h>

#include "eli/error.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/runner/offload_compute.h"

namespace eli {
namespace {

ModelSpec spec_8b_like() {
  ModelSpec s;
  s.n_layers = 32;
  s.n_heads = 32;
  s.n_kv_heads = 8;
  s.head_dim = 128;
  s.hidden_size = 4096;
  s.intermediate_size = 14336;
  s.vocab_size = 128256;
  return s;
}

// n_off offloaded layers of `layer_bytes` each in pinned host memory.
OffloadPlan plan_of(int64_t n_layers, int64_t n_off, uint64_t layer_bytes) {
  OffloadPlan p;
  p.n_layers = n_layers;
  for (int64_t l = n_layers - n_off; l < n_layers; ++l) p.tier_of_layer[l] = MemoryTier::kHost;
  p.host_bytes = layer_bytes * static_cast<uint64_t>(n_off);
  return p;
}

TEST(OffloadCompute, ParsesTheModes) {
  EXPECT_EQ(parse_offload_compute("auto"), OffloadComputeMode::kAuto);
  EXPECT_EQ(parse_offload_compute("stream"), OffloadComputeMode::kStream);
  EXPECT_EQ(parse_offload_compute("cpu"), OffloadComputeMode::kCpu);
  try {
    parse_offload_compute("gpu");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("\"gpu\""), std::string::npos);
  }
}

TEST(OffloadCompute, ForcedModes) {
  const ModelSpec s = spec_8b_like();
  const OffloadPlan p = plan_of(32, 12, 436u << 20);
  const OffloadRates none;
  EXPECT_EQ(choose_offload_compute(OffloadComputeMode::kStream, p, s, DeviceKind::kCUDA, none, 64).cpu_layers, 0);
  const OffloadComputeChoice c = choose_offload_compute(OffloadComputeMode::kCpu, p, s, DeviceKind::kCUDA, none, 64);
  EXPECT_EQ(c.cpu_layers, 12);
  EXPECT_EQ(c.cpu_bytes, p.host_bytes);
  EXPECT_EQ(describe_cpu_stage(c, 32, "cuda:0"),
            "layers 0-11 computed on the CPU (5.11 GiB of host memory), layers 12-31 on cuda:0; offload_compute=cpu");
  // Every layer offloaded: the GPU stage keeps the last one.
  const OffloadPlan all = plan_of(32, 32, 436u << 20);
  EXPECT_EQ(choose_offload_compute(OffloadComputeMode::kCpu, all, s, DeviceKind::kCUDA, none, 64).cpu_layers, 31);
  // Nothing offloaded: nothing to decide.
  EXPECT_EQ(choose_offload_compute(OffloadComputeMode::kCpu, OffloadPlan{}, s, DeviceKind::kCUDA, none, 64).cpu_layers, 0);
}

TEST(OffloadCompute, AutoStreamsOnTheCpuBackend) {
  const OffloadComputeChoice c = choose_offload_compute(OffloadComputeMode::kAuto, plan_of(4, 2, 1000), spec_8b_like(),
                                                        DeviceKind::kCPU, OffloadRates{}, 8);
  EXPECT_EQ(c.cpu_layers, 0);
  EXPECT_NE(c.reason.find("streamed"), std::string::npos);
}

TEST(OffloadCompute, AutoWeighsOneTokenAndABatch) {
  const ModelSpec s = spec_8b_like();
  const OffloadPlan p = plan_of(32, 12, 436u << 20);  // ~5.5 GB
  OffloadRates r;
  r.h2d_bytes_per_s = 25e9;       // PCIe 4
  r.cpu_read_bytes_per_s = 60e9;  // a fast DDR5 host
  r.cpu_flops = 20e12;            // enough for a batch of 32
  OffloadComputeChoice c = choose_offload_compute(OffloadComputeMode::kAuto, p, s, DeviceKind::kCUDA, r, 64);
  EXPECT_EQ(c.cpu_layers, 12) << c.reason;
  EXPECT_EQ(c.batch, 32);
  EXPECT_LT(c.cpu_ms_1, c.stream_ms);
  EXPECT_NE(c.reason.find("computed on the CPU"), std::string::npos);
  // The same host, but its FLOPs fall behind for a batch: streaming.
  r.cpu_flops = 0.5e12;
  c = choose_offload_compute(OffloadComputeMode::kAuto, p, s, DeviceKind::kCUDA, r, 64);
  EXPECT_EQ(c.cpu_layers, 0) << c.reason;
  EXPECT_LT(c.cpu_ms_1, c.stream_ms);      // it would win for one token...
  EXPECT_GT(c.cpu_ms_batch, c.stream_ms);  // ...and lose for the batch
  // ...unless the engine never batches: max_num_seqs = 1.
  c = choose_offload_compute(OffloadComputeMode::kAuto, p, s, DeviceKind::kCUDA, r, 1);
  EXPECT_EQ(c.cpu_layers, 12) << c.reason;
  // A PCIe 5 host with a slower CPU: streaming.
  r.h2d_bytes_per_s = 55e9;
  r.cpu_read_bytes_per_s = 30e9;
  r.cpu_flops = 20e12;
  c = choose_offload_compute(OffloadComputeMode::kAuto, p, s, DeviceKind::kCUDA, r, 64);
  EXPECT_EQ(c.cpu_layers, 0) << c.reason;
  EXPECT_NE(c.reason.find("streamed"), std::string::npos);
}

TEST(OffloadCompute, ExplicitMapsGoToTheCpuOnlyAsTheFirstLayers) {
  const ModelSpec s = spec_8b_like();
  OffloadPlan first;
  first.n_layers = 32;
  first.tier_of_layer = {{0, MemoryTier::kHost}, {1, MemoryTier::kMappedFile}, {2, MemoryTier::kHost}};
  first.host_bytes = 3000;
  EXPECT_EQ(choose_offload_compute(OffloadComputeMode::kCpu, first, s, DeviceKind::kCUDA, {}, 8, true).cpu_layers, 3);
  OffloadPlan gap = first;
  gap.tier_of_layer.erase(1);
  EXPECT_THROW(choose_offload_compute(OffloadComputeMode::kCpu, gap, s, DeviceKind::kCUDA, {}, 8, true), Error);
  OffloadRates fast_cpu;
  fast_cpu.h2d_bytes_per_s = 1;
  fast_cpu.cpu_read_bytes_per_s = fast_cpu.cpu_flops = 1e15;
  const OffloadComputeChoice c = choose_offload_compute(OffloadComputeMode::kAuto, gap, s, DeviceKind::kCUDA, fast_cpu, 8, true);
  EXPECT_EQ(c.cpu_layers, 0);
  EXPECT_NE(c.reason.find("streamed"), std::string::npos);
}

TEST(OffloadCompute, MeasuresPositiveRates) {
  std::unique_ptr<Device> cpu = create_device(DeviceId{DeviceKind::kCPU, 0});
  ThreadPool pool(2);
  const OffloadRates r = measure_offload_rates(*cpu, pool);
  EXPECT_GT(r.h2d_bytes_per_s, 0.0);
  EXPECT_GT(r.cpu_read_bytes_per_s, 0.0);
  EXPECT_GT(r.cpu_flops, 0.0);
}

TEST(OffloadCompute, LayerParamsOfAnEightBShape) {
  // 4096 x (4096 + 2 x 1024) + 4096 x 4096 + 3 x 4096 x 14336 = 218,103,808.
  EXPECT_EQ(layer_params(spec_8b_like()), 218103808u);
}

}  // namespace
}  // namespace eli
