// tests/cpp/test_parallel_config.cc: the rules of tensor / pipeline parallelism that need no model
// run: shard ranges (even_split, make_rank_shard), the head-split rule (check_shardable), the
// options' validation (plan_parallel and the Engine's clear errors), and RankWorkers' failure
// handling (one rank's failure aborts its peers' collectives instead of hanging them).
#include <gtest/gtest.h>

#include <atomic>
#include <string>

#include "eli/engine.h"
#include "eli/error.h"
#include "runtime/comm/cpu_communicator.h"
#include "runtime/device/device.h"
#include "runtime/parallel/micro_batch.h"
#include "runtime/parallel/parallel_config.h"
#include "runtime/parallel/rank_workers.h"
#include "runtime/model/shard_plan.h"

namespace eli {
namespace {

ModelSpec spec_with(int64_t nh, int64_t nkv, int64_t layers, int64_t vocab = 263, int64_t inter = 100) {
  ModelSpec s;
  s.n_heads = nh;
  s.n_kv_heads = nkv;
  s.n_layers = layers;
  s.vocab_size = vocab;
  s.intermediate_size = inter;
  s.head_dim = 8;
  s.hidden_size = nh * 8;
  return s;
}

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(ParallelShard, EvenSplitCoversEveryIndexOnce) {
  for (int64_t n : {1, 7, 263, 1000}) {
    for (int64_t parts = 1; parts <= std::min<int64_t>(n, 9); ++parts) {
      int64_t next = 0;
      for (int64_t i = 0; i < parts; ++i) {
        const Range r = even_split(n, parts, i);
        EXPECT_EQ(r.begin, next);
        EXPECT_GE(r.size(), n / parts);
        EXPECT_LE(r.size(), n / parts + 1);
        next = r.end;
      }
      EXPECT_EQ(next, n);
    }
  }
}

TEST(ParallelShard, KvHeadsAreSplitOrReplicated) {
  // 4 q heads over 2 kv heads, 4 ranks: one q head each, kv heads replicated in pairs.
  const ModelSpec s = spec_with(4, 2, 2);
  for (int r = 0; r < 4; ++r) {
    const RankShard sh = make_rank_shard(s, r, 4, 0, 1);
    EXPECT_EQ(sh.q_heads.size(), 1);
    EXPECT_EQ(sh.kv_heads.begin, r / 2);
    EXPECT_EQ(sh.kv_heads.size(), 1);
  }
  // 3 ranks: q heads [0, 2), [2, 3), [3, 4) read kv heads 0, 1, 1.
  EXPECT_NO_THROW(check_shardable(s, 3, 1));
  EXPECT_EQ(make_rank_shard(s, 0, 3, 0, 1).kv_heads.size(), 1);
  EXPECT_EQ(make_rank_shard(s, 2, 3, 0, 1).kv_heads.begin, 1);
  // Vocabulary 263 over 2 ranks: 132 + 131.
  EXPECT_EQ(make_rank_shard(s, 0, 2, 0, 1).vocab.size(), 132);
  EXPECT_EQ(make_rank_shard(s, 1, 2, 0, 1).vocab.begin, 132);
  // Layers 5 over 2 stages: [0, 3), [3, 5).
  const ModelSpec five = spec_with(4, 2, 5);
  EXPECT_EQ(make_rank_shard(five, 0, 1, 1, 2).layers.begin, 3);
  EXPECT_EQ(make_rank_shard(five, 0, 1, 1, 2).layers.end, 5);
}

TEST(ParallelShard, UnservableSplitsAreClearErrors) {
  // 8 q heads in 4 GQA groups of 2 over 3 ranks: rank 0 would hold q heads [0, 3), reading kv
  // heads 0 and 1 unevenly.
  EXPECT_NE(message_of([] { check_shardable(spec_with(8, 4, 2), 3, 1); }).find("cannot split 8 attention heads"),
            std::string::npos);
  EXPECT_NE(message_of([] { check_shardable(spec_with(4, 2, 2), 5, 1); }).find("more ranks than the model's 4"),
            std::string::npos);
  EXPECT_NE(message_of([] { check_shardable(spec_with(4, 2, 2), 1, 3); }).find("more stages than the model's 2"),
            std::string::npos);
  EXPECT_NO_THROW(check_shardable(spec_with(8, 4, 2), 4, 2));
}

TEST(ParallelOptions, DeviceListsAreParsedAndChecked) {
  auto ids = parse_device_list("cuda:0,1, 3");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[2], (DeviceId{DeviceKind::kCUDA, 3}));
  EXPECT_EQ(parse_device_list("cuda:1,cuda:0").size(), 2u);
  // Ranks may share a GPU (checking sharding on one GPU); the CPU is listed once.
  ASSERT_EQ(parse_device_list("cuda:0,0").size(), 2u);
  EXPECT_EQ(parse_device_list("cuda:0,0")[1], (DeviceId{DeviceKind::kCUDA, 0}));
  EXPECT_NE(message_of([] { parse_device_list("0,1"); }).find("must follow a cuda:N"), std::string::npos);
  EXPECT_NE(message_of([] { parse_device_list("cuda:0,,1"); }).find("empty entry"), std::string::npos);

  EngineConfig c;
  c.device = "auto";
  c.tensor_parallel_size = 2;
  c.pipeline_parallel_size = 2;
  c.devices = "cuda:0,1";
  EXPECT_NE(message_of([&] { plan_parallel(c, DeviceId{DeviceKind::kCPU, 0}); }).find("lists 2 devices but"),
            std::string::npos);
  c.device = "cpu";
  EXPECT_NE(message_of([&] { plan_parallel(c, DeviceId{DeviceKind::kCPU, 0}); }).find("conflicts"),
            std::string::npos);
  // CPU ranks are threads: no device list needed.
  c.devices = "";
  EXPECT_EQ(plan_parallel(c, DeviceId{DeviceKind::kCPU, 0}).devices.size(), 4u);
  // More GPU ranks than visible GPUs.
  c.device = "cuda";
  if (cuda_device_count() < 4) {
    EXPECT_NE(message_of([&] { plan_parallel(c, DeviceId{DeviceKind::kCUDA, 0}); }).find("more ranks than devices"),
              std::string::npos);
  }
  c.device = "cuda:1";
  EXPECT_NE(message_of([&] { plan_parallel(c, DeviceId{DeviceKind::kCUDA, 1}); }).find("is one GPU"),
            std::string::npos);
}

TEST(ParallelOptions, EngineRefusesWithClearErrors) {
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/llama_base";  // 6 heads, 3 layers
  c.n_threads = 2;
  c.num_kv_blocks = 16;
  c.tensor_parallel_size = 7;
  EXPECT_NE(message_of([&] { Engine e(c); }).find("more ranks than the model's 6 attention heads"), std::string::npos);
  c.tensor_parallel_size = 1;
  c.pipeline_parallel_size = 4;
  EXPECT_NE(message_of([&] { Engine e(c); }).find("more stages than the model's 3 layers"), std::string::npos);
  c.pipeline_parallel_size = 2;
  c.devices = "cuda:0,1,2";
  EXPECT_NE(message_of([&] { Engine e(c); }).find("conflicts"), std::string::npos);
  c.tensor_parallel_size = 0;
  c.devices = "";
  EXPECT_THROW(Engine e(c), Error);
}

TEST(ParallelRanks, OneRankFailingAbortsThePeersWaitingOnIt) {
  auto comms = create_cpu_communicators(3);
  std::unique_ptr<Device> cpu = create_cpu_device();
  RankWorkers w(3, {comms[0].get(), comms[1].get(), comms[2].get()});
  std::atomic<int> ran{0};
  w.run([&](int r) { ++ran; });
  EXPECT_EQ(ran.load(), 3);
  try {
    w.run([&](int r) {
      float x = 1.0f;
      if (r == 1) ELI_THROW(kModelLoad, "rank one's own failure");
      comms[static_cast<size_t>(r)]->all_reduce(&x, &x, 1, DType::kF32, ReduceOp::kSum, cpu->default_stream());
    });
    ADD_FAILURE() << "no error";
  } catch (const CommAbortedError& e) {
    ADD_FAILURE() << "the echo, not the cause: " << e.what();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModelLoad);
    EXPECT_NE(std::string(e.what()).find("rank one's own failure"), std::string::npos);
  }
}

TEST(ParallelMicroBatches, SplitIsTheBatchInPieces) {
  // Three sequences: a 5-token prefill chunk without a logits row, a 1-token decode, a 3-token
  // prefill; two blocks per sequence.
  Batch b;
  b.token_ids = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  b.positions = {0, 1, 2, 3, 4, 9, 0, 1, 2};
  b.cu_seqlens = {0, 5, 6, 9};
  b.context_lens = {5, 10, 3};
  b.max_blocks_per_seq = 2;
  b.block_tables = {0, 1, 2, 3, 4, 5};
  b.slot_mapping = {0, 1, 2, 3, 4, 25, 32, 33, 34};
  b.logits_indices = {5, 8};
  for (int parts : {1, 2, 3, 5}) {
    const std::vector<MicroBatch> mbs = split_micro_batches(b, parts);
    EXPECT_EQ(static_cast<int>(mbs.size()), std::min(parts, 3)) << parts;
    Batch joined;
    joined.max_blocks_per_seq = 2;
    for (const MicroBatch& mb : mbs) {
      const Batch& x = mb.batch;
      EXPECT_GE(x.n_seqs(), 1);
      EXPECT_EQ(mb.first_logit, joined.n_logits());
      const int32_t t0 = static_cast<int32_t>(joined.n_tokens());
      for (int64_t s = 1; s <= x.n_seqs(); ++s) joined.cu_seqlens.push_back(x.cu_seqlens[s] + t0);
      for (int32_t i : x.logits_indices) joined.logits_indices.push_back(i + t0);
      joined.token_ids.insert(joined.token_ids.end(), x.token_ids.begin(), x.token_ids.end());
      joined.positions.insert(joined.positions.end(), x.positions.begin(), x.positions.end());
      joined.slot_mapping.insert(joined.slot_mapping.end(), x.slot_mapping.begin(), x.slot_mapping.end());
      joined.context_lens.insert(joined.context_lens.end(), x.context_lens.begin(), x.context_lens.end());
      joined.block_tables.insert(joined.block_tables.end(), x.block_tables.begin(), x.block_tables.end());
    }
    EXPECT_EQ(joined.token_ids, b.token_ids);
    EXPECT_EQ(joined.positions, b.positions);
    EXPECT_EQ(joined.cu_seqlens, b.cu_seqlens);
    EXPECT_EQ(joined.context_lens, b.context_lens);
    EXPECT_EQ(joined.block_tables, b.block_tables);
    EXPECT_EQ(joined.slot_mapping, b.slot_mapping);
    EXPECT_EQ(joined.logits_indices, b.logits_indices);
  }
  b.logits_indices = {8, 5};  // not ascending: one micro-batch
  EXPECT_EQ(split_micro_batches(b, 3).size(), 1u);
}

}  // namespace
}  // namespace eli
