// tests/cpp/test_cuda_parallel.cc: ParallelRunner (runtime/parallel) against one plain ModelRunner
// on the same steps (a two-sequence prefill, then a decode step), below the Engine: on the CPU
// (ranks as threads: runs everywhere, so the test itself is checked here) and on CUDA ranks with
// NCCL, one GPU per rank (runs when cuda_device_count() >= 2 and libnccl loads: the multi-GPU run;
// skipped elsewhere), and on ranks sharing one GPU (eli's peer communicator: any GPU machine).
// Both outputs: forward_to_host, and forward() on the driver's device (equal bit for bit). Logits within 1e-5 (CPU) / 2e-4 (CUDA, other summation orders) of each
// row's largest value, for TP 2, PP 2 and TP 2 x PP 2 where the devices exist.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "runtime/comm/nccl_communicator.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/kv/kv_cache.h"
#include "runtime/model/model_files.h"
#include "runtime/model/weight_reader.h"
#include "runtime/parallel/parallel_runner.h"
#include "runtime/runner/model_runner.h"
#include "tests/cpp/runner_test_util.h"

namespace eli {
namespace {

// Two sequences (7 and 5 prompt tokens) in blocks of 4, then one decode token each.
std::vector<Batch> steps(int64_t vocab) {
  Batch a;
  a.max_blocks_per_seq = 2;
  a.block_tables = {0, 1, 2, 3};
  const int lens[2] = {7, 5};
  a.cu_seqlens = {0};
  for (int s = 0; s < 2; ++s) {
    for (int p = 0; p < lens[s]; ++p) {
      a.token_ids.push_back(static_cast<int32_t>((17 * s + 5 * p + 3) % vocab));
      a.positions.push_back(p);
      a.slot_mapping.push_back(a.block_tables[static_cast<size_t>(s * 2 + p / 4)] * 4 + p % 4);
    }
    a.cu_seqlens.push_back(a.cu_seqlens.back() + lens[s]);
    a.context_lens.push_back(lens[s]);
    a.logits_indices.push_back(a.cu_seqlens.back() - 1);
  }
  Batch d;
  d.max_blocks_per_seq = 2;
  d.block_tables = a.block_tables;
  d.cu_seqlens = {0, 1, 2};
  for (int s = 0; s < 2; ++s) {
    d.token_ids.push_back(static_cast<int32_t>((11 * s + 7) % vocab));
    d.positions.push_back(lens[s]);
    d.slot_mapping.push_back(a.block_tables[static_cast<size_t>(s * 2 + lens[s] / 4)] * 4 + lens[s] % 4);
    d.context_lens.push_back(lens[s] + 1);
    d.logits_indices.push_back(s);
  }
  return {a, d};
}

// share_gpu: every rank on device 0 (CUDA: ranks sharing one GPU, eli's peer communicator).
void check_layouts(DeviceKind kind, int n_devices, float rel, bool share_gpu = false) {
  const ModelFiles files = open_model_files(std::string(ELI_TEST_DATA_DIR) + "/models/qwen3");  // 3 layers, GQA
  const int64_t V = files.spec.vocab_size;
  ModelLoadOptions opt;
  opt.compute_dtype = DType::kF32;
  opt.device = kind;
  ThreadPool pool(2);
  opt.pool = &pool;
  // The reference: one rank on device 0.
  if (kind != DeviceKind::kCPU) make_device_current(DeviceId{kind, 0});
  std::unique_ptr<Device> dev0 = create_device(DeviceId{kind, 0});
  ModelRunner plain(*dev0, create_model(files.spec, WeightReader(files.weights, files.name_of), opt), &pool);
  KvCache kv(*dev0, tiny_kv_shape(files.spec, 8));
  std::vector<std::vector<float>> want;
  for (const Batch& b : steps(V)) {
    want.emplace_back(static_cast<size_t>(b.n_logits() * V));
    plain.forward_to_host(b, kv, want.back().data());
  }
  for (auto [tp, pp] : std::vector<std::pair<int, int>>{{2, 1}, {1, 2}, {2, 2}}) {
    if (tp * pp > n_devices) continue;
    SCOPED_TRACE("tp " + std::to_string(tp) + " pp " + std::to_string(pp));
    std::vector<DeviceId> ids;
    for (int r = 0; r < tp * pp; ++r) ids.push_back(DeviceId{kind, kind == DeviceKind::kCPU || share_gpu ? 0 : r});
    ParallelRunner par(files, opt, tp, pp, 2, ids);
    par.create_kv(tiny_kv_shape(files.spec, 8));
    par.reserve(16, 4);
    const std::vector<Batch> bs = steps(V);
    for (size_t i = 0; i < bs.size(); ++i) {
      // Both ways out: into host memory, and on the driver's device (the engine's GPU path; with
      // stages, the micro-batches' rows meet in one buffer). The second run rewrites the same KV.
      std::vector<float> got(static_cast<size_t>(bs[i].n_logits() * V)), got_dev(got.size());
      par.forward_to_host(bs[i], got.data());
      const float* d = par.forward(bs[i]);
      par.copy_logits(d, 0, bs[i].n_logits(), got_dev.data());
      for (int64_t row = 0; row < bs[i].n_logits(); ++row) {
        const float* w = &want[i][static_cast<size_t>(row * V)];
        const float* g = &got[static_cast<size_t>(row * V)];
        const float* gd = &got_dev[static_cast<size_t>(row * V)];
        float scale = 0.0f;
        for (int64_t v = 0; v < V; ++v) scale = std::max(scale, std::fabs(w[v]));
        for (int64_t v = 0; v < V; ++v) {
          ASSERT_NEAR(g[v], w[v], rel * scale + 1e-6f) << "step " << i << " row " << row;
          ASSERT_EQ(gd[v], g[v]) << "device logits, step " << i << " row " << row;
        }
      }
    }
  }
}

TEST(ParallelRunnerCpu, MatchesOneModelRunner) { check_layouts(DeviceKind::kCPU, 4, 1e-5f); }

TEST(CudaParallel, RanksSharingOneGpuMatchOneGpu) {
  if (cuda_device_count() < 1) GTEST_SKIP() << "needs a GPU";
  check_layouts(DeviceKind::kCUDA, 4, 2e-4f, /*share_gpu=*/true);
}

TEST(CudaParallel, GpuRanksMatchOneGpu) {
  const int n = cuda_device_count();
  if (n < 2 || !nccl_available()) GTEST_SKIP() << "needs two GPUs and libnccl (the multi-GPU run)";
  check_layouts(DeviceKind::kCUDA, n, 2e-4f);
}

}  // namespace
}  // namespace eli
