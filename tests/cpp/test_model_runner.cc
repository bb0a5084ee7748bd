// tests/cpp/test_model_runner.cc: ModelRunner on a device whose memory is not host memory
// (FakeAsyncDevice: the CPU's kernels behind the buffer paths a GPU takes) against the same model
// on the CPU device (which writes logits where the caller wants them). Without reserve(), and then
// with a step of more logits rows than any before, forward_to_host gives the same logits: the
// runner's logits buffer is allocated (or grown) before the step writes into it (the shared-GPU
// tensor parallel test once found a null logits pointer on the GPU here).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/kv/kv_cache.h"
#include "runtime/model/model_files.h"
#include "runtime/model/weight_reader.h"
#include "runtime/runner/model_runner.h"
#include "tests/cpp/runner_test_util.h"
#include "tests/cpp/fake_async_device.h"

namespace eli {
namespace {

// Sequences of the given prompt lengths in blocks of 4 (block s * 4 + j for sequence s), the
// logits of the last `tail` tokens of each.
Batch prefill(const std::vector<int>& lens, int tail, int64_t vocab) {
  Batch b;
  b.max_blocks_per_seq = 4;
  b.cu_seqlens = {0};
  for (size_t s = 0; s < lens.size(); ++s) {
    for (int j = 0; j < 4; ++j) b.block_tables.push_back(static_cast<int32_t>(s * 4 + j));
    for (int p = 0; p < lens[s]; ++p) {
      b.token_ids.push_back(static_cast<int32_t>((13 * s + 7 * p + 5) % vocab));
      b.positions.push_back(p);
      b.slot_mapping.push_back(static_cast<int32_t>((s * 4 + p / 4) * 4 + p % 4));
    }
    b.cu_seqlens.push_back(b.cu_seqlens.back() + lens[s]);
    b.context_lens.push_back(lens[s]);
    for (int p = lens[s] - tail; p < lens[s]; ++p) b.logits_indices.push_back(b.cu_seqlens[s] + p);
  }
  return b;
}

TEST(ModelRunnerBuffers, DeviceLogitsWithoutReserveAndPastIt) {
  const ModelFiles files = open_model_files(std::string(ELI_TEST_DATA_DIR) + "/models/qwen3");
  const int64_t V = files.spec.vocab_size;
  ModelLoadOptions opt;
  opt.compute_dtype = DType::kF32;
  opt.device = DeviceKind::kCPU;
  ThreadPool pool(2);
  opt.pool = &pool;
  std::unique_ptr<Device> cpu = create_device(DeviceId{DeviceKind::kCPU, 0});
  FakeAsyncDevice fake;
  ASSERT_FALSE(fake.properties().host_memory);
  ModelRunner want_runner(*cpu, create_model(files.spec, WeightReader(files.weights, files.name_of), opt), &pool);
  ModelRunner got_runner(fake, create_model(files.spec, WeightReader(files.weights, files.name_of), opt), &pool);
  KvCache want_kv(*cpu, tiny_kv_shape(files.spec, 16)), got_kv(fake, tiny_kv_shape(files.spec, 16));
  // One logits row first (no reserve() before it), then 3 x 3 rows: past anything reserved.
  for (const Batch& b : {prefill({5}, 1, V), prefill({6, 4, 3}, 3, V)}) {
    std::vector<float> want(static_cast<size_t>(b.n_logits() * V)), got(want.size(), -1.0f);
    want_runner.forward_to_host(b, want_kv, want.data());
    got_runner.forward_to_host(b, got_kv, got.data());
    EXPECT_EQ(got, want) << b.n_logits() << " logits rows";
  }
}

}  // namespace
}  // namespace eli
