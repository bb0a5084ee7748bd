// tests/cpp/test_cuda_staged_upload.cc: the staged uploader on a real CUDA device (skipped without
// one): small staging buffers force many fills through a two-buffer ring (each buffer reused after
// its event), odd and empty pieces, and the synchronous fallback (no buffers) give the same bytes
// as the sources; deferred-merge weights uploaded through upload_weights() equal the merged ones.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/device/staged_upload.h"
#include "runtime/model/model_files.h"
#include "runtime/model/model.h"
#include "runtime/model/weight_reader.h"

namespace eli {
namespace {

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 2654435761u + seed) >> 11);
  return v;
}

TEST(CudaStagedUpload, RingReuseAndFallbackCopyEveryByte) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  auto dev = create_cuda_device(0);
  ThreadPool pool(4);
  const std::vector<size_t> sizes = {0, 1, 7, 4096, 4097, 3 * 4096 + 5, 111, 0, (3u << 20) + 17, 769};
  for (int n_buffers : {2, 0}) {
    std::vector<std::vector<uint8_t>> srcs;
    std::vector<void*> dsts;
    std::vector<UploadPiece> pieces;
    for (size_t i = 0; i < sizes.size(); ++i) {
      srcs.push_back(pattern(sizes[i], static_cast<uint32_t>(i + 10 * n_buffers)));
      dsts.push_back(sizes[i] ? dev->allocate(sizes[i]) : nullptr);
      pieces.push_back(UploadPiece{dsts.back(), srcs.back().data(), sizes[i]});
    }
    StagedUploadOptions opt;
    opt.n_buffers = n_buffers;
    opt.buffer_bytes = 4096;
    UploadResult r = upload_pieces(*dev, &pool, pieces, nullptr, opt);
    EXPECT_EQ(r.staged, n_buffers > 0);
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] == 0) continue;
      std::vector<uint8_t> back(sizes[i]);
      dev->copy_device_to_host(back.data(), dsts[i], sizes[i]);
      EXPECT_EQ(back, srcs[i]) << "piece " << i << " with " << n_buffers << " buffers";
      dev->free(dsts[i]);
    }
  }
}

TEST(CudaStagedUpload, DeferredWeightsUploadAsTheMergedMatrices) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  auto dev = create_cuda_device(0);
  ThreadPool pool(4);
  ModelFiles f = open_model_files(std::string(ELI_TEST_DATA_DIR) + "/models/llama_bf16");
  ModelLoadOptions opt;
  opt.compute_dtype = DType::kBF16;
  opt.device = DeviceKind::kCUDA;
  opt.pool = &pool;
  auto host = create_model(f.spec, WeightReader(f.weights, f.name_of), opt);
  opt.defer_merges = true;
  auto deferred = create_model(f.spec, WeightReader(f.weights, f.name_of), opt);
  int n_deferred = 0;
  for (const LinearWeight& w : deferred->weights().linears()) n_deferred += w.deferred() ? 1 : 0;
  EXPECT_GT(n_deferred, 0);
  deferred->weights().place(*dev, nullptr, &pool);
  const auto& hl = host->weights().linears();
  const auto& dl = deferred->weights().linears();
  ASSERT_EQ(hl.size(), dl.size());
  for (size_t i = 0; i < hl.size(); ++i) {
    ASSERT_EQ(hl[i].name, dl[i].name);
    std::vector<uint8_t> back(dl[i].data.nbytes());
    dev->copy_device_to_host(back.data(), dl[i].ptr(), back.size());
    Tensor want = hl[i].contiguous_host();
    EXPECT_EQ(std::memcmp(back.data(), want.ptr<void>(), back.size()), 0) << hl[i].name;
  }
}

}  // namespace
}  // namespace eli
