// tests/cpp/test_rank_staging.cc: RankCollectives' host staging (runtime/parallel/rank_collectives.h),
// the pipeline exchange of the CPU stage of weight offloading: a three-stage pipeline over the
// in-process CPU communicator with the middle stage on a device whose memory the host may not read
// (FakeAsyncDevice, a stand-in for a GPU). The middle rank copies every received message host ->
// device and every sent one device -> host through its pinned staging buffers; the messages arrive
// intact in both directions, over several steps of different sizes (the buffers grow), and the
// staged rank reports that its steps cannot be captured while the host ranks can.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "fake_async_device.h"
#include "kernels/ops.h"
#include "runtime/comm/cpu_communicator.h"
#include "runtime/device/device.h"
#include "runtime/model/shard_plan.h"
#include "runtime/parallel/rank_collectives.h"

namespace eli {
namespace {

ModelSpec three_layer_spec() {
  ModelSpec s;
  s.n_layers = 3;
  s.n_heads = 2;
  s.n_kv_heads = 1;
  s.head_dim = 4;
  s.hidden_size = 8;
  s.intermediate_size = 16;
  s.vocab_size = 32;
  return s;
}

TEST(RankStaging, MessagesCrossAHostStagedStageIntact) {
  const ModelSpec spec = three_layer_spec();
  auto comms = create_cpu_communicators(3);
  std::unique_ptr<Device> cpu0 = create_device(DeviceId{DeviceKind::kCPU, 0});
  std::unique_ptr<Device> cpu2 = create_device(DeviceId{DeviceKind::kCPU, 0});
  FakeAsyncDevice fake;
  Device* devices[3] = {cpu0.get(), &fake, cpu2.get()};
  std::vector<std::unique_ptr<RankCollectives>> ranks;
  for (int s = 0; s < 3; ++s) {
    ranks.push_back(std::make_unique<RankCollectives>(make_rank_shard(spec, 0, 1, s, 3), nullptr,
                                                      comms[static_cast<size_t>(s)].get(), *devices[s],
                                                      devices[s]->default_stream()));
  }
  EXPECT_TRUE(ranks[0]->capturable());
  EXPECT_FALSE(ranks[1]->capturable());
  EXPECT_TRUE(ranks[2]->capturable());

  const std::vector<int64_t> sizes = {5, 64, 3, 1000};
  std::vector<std::vector<float>> got(sizes.size());
  const ExecContext exec;
  std::thread first([&] {
    for (size_t i = 0; i < sizes.size(); ++i) {
      std::vector<float> x(static_cast<size_t>(sizes[i]));
      for (size_t j = 0; j < x.size(); ++j) x[j] = static_cast<float>(i * 10000 + j) * 0.5f;
      ranks[0]->send_to_next_stage(x.data(), sizes[i], exec);
    }
  });
  std::thread middle([&] {
    for (size_t i = 0; i < sizes.size(); ++i) {
      // "Device" memory of the fake device: what the forward's residual slot would be.
      Buffer buf = fake.allocate_buffer(static_cast<uint64_t>(sizes[i]) * sizeof(float));
      float* x = static_cast<float*>(buf.mutable_data());
      ranks[1]->recv_from_prev_stage(x, sizes[i], exec);
      for (int64_t j = 0; j < sizes[i]; ++j) x[j] += 1.0f;  // the stage's work
      ranks[1]->send_to_next_stage(x, sizes[i], exec);
    }
  });
  std::thread last([&] {
    for (size_t i = 0; i < sizes.size(); ++i) {
      got[i].resize(static_cast<size_t>(sizes[i]));
      ranks[2]->recv_from_prev_stage(got[i].data(), sizes[i], exec);
    }
  });
  first.join();
  middle.join();
  last.join();
  for (size_t i = 0; i < sizes.size(); ++i) {
    for (size_t j = 0; j < got[i].size(); ++j) {
      ASSERT_EQ(got[i][j], static_cast<float>(i * 10000 + j) * 0.5f + 1.0f) << "message " << i << " element " << j;
    }
  }
  EXPECT_EQ(fake.n_copies, static_cast<int>(sizes.size()));  // one host -> device copy per received message
}

TEST(RankStaging, HostRanksDoNotStage) {
  const ModelSpec spec = three_layer_spec();
  auto comms = create_cpu_communicators(2);
  std::unique_ptr<Device> cpu = create_device(DeviceId{DeviceKind::kCPU, 0});
  RankCollectives a(make_rank_shard(spec, 0, 1, 0, 2), nullptr, comms[0].get(), *cpu, cpu->default_stream());
  EXPECT_TRUE(a.capturable());
  a.reserve_stage(100);  // a no-op without staging
}

TEST(RankStaging, UnevenStageSplits) {
  const ModelSpec spec = three_layer_spec();
  EXPECT_NO_THROW(check_shardable(spec, 1, 2, {1, 2}));
  const RankShard s0 = make_rank_shard(spec, 0, 1, 0, 2, {2, 1});
  const RankShard s1 = make_rank_shard(spec, 0, 1, 1, 2, {2, 1});
  EXPECT_EQ(s0.layers.begin, 0);
  EXPECT_EQ(s0.layers.end, 2);
  EXPECT_EQ(s1.layers.begin, 2);
  EXPECT_EQ(s1.layers.end, 3);
  EXPECT_THROW(check_shardable(spec, 1, 2, {3, 0}), Error);
  EXPECT_THROW(check_shardable(spec, 1, 2, {1, 1}), Error);
  EXPECT_THROW(check_shardable(spec, 1, 2, {1, 1, 1}), Error);
}

}  // namespace
}  // namespace eli
