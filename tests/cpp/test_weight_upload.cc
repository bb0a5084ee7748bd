// tests/cpp/test_weight_upload.cc: fast model loading without a GPU: the staged uploader's
// planning and fill (runtime/device/staged_upload.h), deferred merges of matrices
// (WeightLoadOptions::defer_merges) against the merged host matrices, the one-pass conversions of
// the host path against the source tensors, and upload_weights() through the CPU device.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "eli/error.h"
#include "kernels/ref/float_convert.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/device/staged_upload.h"
#include "runtime/engine/memory_plan.h"
#include "runtime/model/model_files.h"
#include "runtime/model/transformer_weights.h"
#include "runtime/model/weight_source.h"

namespace eli {
namespace {

// ---- staged upload planning -------------------------------------------------------------------

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 2654435761u + seed) >> 13);
  return v;
}

// Checks the invariants of a plan and replays it on the host (fill, then "copy" each segment),
// returning what each destination received.
std::vector<std::vector<uint8_t>> replay(const std::vector<std::vector<uint8_t>>& srcs, uint64_t buffer_bytes,
                                         uint64_t align, ThreadPool* pool, size_t* n_fills = nullptr) {
  std::vector<std::vector<uint8_t>> dsts(srcs.size());
  std::vector<UploadPiece> pieces;
  for (size_t i = 0; i < srcs.size(); ++i) {
    dsts[i].assign(srcs[i].size(), 0xEE);
    pieces.push_back(UploadPiece{dsts[i].data(), srcs[i].data(), srcs[i].size()});
  }
  std::vector<StagingFill> plan = plan_staging(pieces, buffer_bytes, align);
  if (n_fills != nullptr) *n_fills = plan.size();
  std::vector<uint64_t> covered(srcs.size(), 0);
  size_t last_piece = 0;
  std::vector<uint8_t> buffer(buffer_bytes);
  for (const StagingFill& f : plan) {
    EXPECT_FALSE(f.segments.empty());
    EXPECT_LE(f.bytes, buffer_bytes);
    uint64_t end = 0;
    for (const StagingSegment& s : f.segments) {
      EXPECT_GT(s.bytes, 0u) << "empty segment";
      EXPECT_EQ(s.staging_offset % align, 0u);
      EXPECT_GE(s.staging_offset, end) << "segments overlap";
      EXPECT_LE(s.staging_offset + s.bytes, buffer_bytes);
      EXPECT_GE(s.piece, last_piece) << "pieces out of order";
      EXPECT_EQ(s.piece_offset, covered[s.piece]) << "piece " << s.piece << " not covered in order";
      covered[s.piece] += s.bytes;
      last_piece = s.piece;
      end = s.staging_offset + s.bytes;
    }
    EXPECT_EQ(f.bytes, end);
    std::fill(buffer.begin(), buffer.end(), 0xAB);
    fill_staging(pool, pieces, f, buffer.data());
    for (const StagingSegment& s : f.segments) {
      std::memcpy(static_cast<uint8_t*>(pieces[s.piece].dst) + s.piece_offset, buffer.data() + s.staging_offset, s.bytes);
    }
  }
  for (size_t i = 0; i < srcs.size(); ++i) EXPECT_EQ(covered[i], srcs[i].size()) << "piece " << i;
  return dsts;
}

TEST(StagedUploadPlan, OddSizesLargeAndEmptyPieces) {
  const uint64_t B = 1024;
  std::vector<size_t> sizes = {0, 1, 7, 111, 1024, 1025, 3 * 1024 + 5, 769, 0, 64, 5125, 0};
  std::vector<std::vector<uint8_t>> srcs;
  for (size_t i = 0; i < sizes.size(); ++i) srcs.push_back(pattern(sizes[i], static_cast<uint32_t>(i)));
  size_t n_fills = 0;
  auto dsts = replay(srcs, B, 64, nullptr, &n_fills);
  for (size_t i = 0; i < srcs.size(); ++i) EXPECT_EQ(dsts[i], srcs[i]) << "piece " << i;
  const size_t total = std::accumulate(sizes.begin(), sizes.end(), size_t{0});
  EXPECT_GE(n_fills, (total + B - 1) / B);
  EXPECT_LE(n_fills, total / B + sizes.size());
}

TEST(StagedUploadPlan, SmallPiecesShareAFillAndBigOnesSplit) {
  std::vector<UploadPiece> pieces;
  uint8_t dummy[1];
  for (uint64_t n : {10, 20, 30}) pieces.push_back(UploadPiece{dummy, dummy, n});
  auto plan = plan_staging(pieces, 256, 64);
  ASSERT_EQ(plan.size(), 1u);
  ASSERT_EQ(plan[0].segments.size(), 3u);
  EXPECT_EQ(plan[0].segments[1].staging_offset, 64u);
  EXPECT_EQ(plan[0].segments[2].staging_offset, 128u);
  EXPECT_EQ(plan[0].bytes, 158u);

  pieces = {UploadPiece{dummy, dummy, 600}};
  plan = plan_staging(pieces, 256, 64);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].segments[0].bytes, 256u);
  EXPECT_EQ(plan[1].segments[0].piece_offset, 256u);
  EXPECT_EQ(plan[2].segments[0].bytes, 88u);

  EXPECT_TRUE(plan_staging({}, 256, 64).empty());
  EXPECT_TRUE(plan_staging({UploadPiece{dummy, dummy, 0}}, 256, 64).empty());
  EXPECT_THROW(plan_staging(pieces, 100, 64), Error);  // not a multiple of the alignment
  EXPECT_THROW(plan_staging(pieces, 256, 48), Error);  // not a power of two
}

TEST(StagedUploadPlan, ParallelFillOfMultiMegabytePieces) {
  ThreadPool pool(3);
  std::vector<std::vector<uint8_t>> srcs = {pattern((5u << 20) + 3, 1), pattern(100, 2), pattern((2u << 20) - 1, 3)};
  auto dsts = replay(srcs, 4u << 20, 256, &pool);
  for (size_t i = 0; i < srcs.size(); ++i) EXPECT_EQ(dsts[i], srcs[i]) << "piece " << i;
}

TEST(StagedUploadPlan, UploadPiecesOnTheCpuDeviceFallsBack) {
  auto dev = create_cpu_device();
  ThreadPool pool(2);
  std::vector<std::vector<uint8_t>> srcs = {pattern(1000, 5), {}, pattern(3, 6)};
  std::vector<std::vector<uint8_t>> dsts = {std::vector<uint8_t>(1000), {}, std::vector<uint8_t>(3)};
  std::vector<UploadPiece> pieces;
  for (size_t i = 0; i < srcs.size(); ++i) pieces.push_back(UploadPiece{dsts[i].data(), srcs[i].data(), srcs[i].size()});
  UploadResult r = upload_pieces(*dev, &pool, pieces);
  EXPECT_FALSE(r.staged);
  EXPECT_EQ(r.bytes, 1003u);
  EXPECT_EQ(dsts, srcs);
}

// ---- deferred merges ---------------------------------------------------------------------------

std::string model_dir(const char* name) { return std::string(ELI_TEST_DATA_DIR) + "/models/" + name; }

TransformerWeights load(const ModelFiles& f, DType dtype, bool defer, ThreadPool* pool) {
  WeightLoadOptions opt;
  opt.matrix_dtype = dtype;
  opt.gguf_llama_permuted = f.gguf_llama_permuted;
  opt.defer_merges = defer;
  opt.pool = pool;
  return load_transformer_weights(f.spec, f.weights, f.name_of, opt);
}

std::vector<uint8_t> bytes_of(const WeightMatrix& m) {
  Tensor t = m.contiguous_host();
  const uint8_t* p = t.ptr<uint8_t>();
  return std::vector<uint8_t>(p, p + t.nbytes());
}

// Every matrix of `w` with its name, in place_all order.
std::vector<std::pair<std::string, const WeightMatrix*>> matrices(const TransformerWeights& w) {
  std::vector<std::pair<std::string, const WeightMatrix*>> out = {{"embed", &w.embed}, {"lm_head", &w.lm_head}};
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    const std::string p = "layer " + std::to_string(l) + " ";
    out.push_back({p + "qkv", &L.qkv});
    out.push_back({p + "o", &L.o});
    out.push_back({p + "gate_up", &L.gate_up});
    out.push_back({p + "down", &L.down});
  }
  return out;
}

// The rows of one source tensor converted to bf16 (or copied, if it is bf16).
std::vector<uint8_t> source_as_bf16(const TensorInfo& t) {
  const int64_t n = static_cast<int64_t>(t.nbytes / (t.dtype == DType::kF32 ? 4 : 2));
  std::vector<uint16_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (t.dtype == DType::kBF16) {
      std::memcpy(&out[i], t.data + 2 * i, 2);
    } else if (t.dtype == DType::kF32) {
      float f;
      std::memcpy(&f, t.data + 4 * i, 4);
      out[i] = f32_to_bf16(f);
    } else {
      uint16_t h;
      std::memcpy(&h, t.data + 2 * i, 2);
      out[i] = f32_to_bf16(f16_to_f32(h));
    }
  }
  const uint8_t* p = reinterpret_cast<const uint8_t*>(out.data());
  return std::vector<uint8_t>(p, p + out.size() * 2);
}

// qkv and gate_up of layer 0 rebuilt from the source tensors.
void expect_merges_match_source(const ModelFiles& f, const TransformerWeights& w, const std::string& what) {
  auto cat = [&](std::initializer_list<const char*> names) {
    std::vector<uint8_t> out;
    for (const char* n : names) {
      const TensorInfo* t = f.weights->find(f.name_of(std::string("model.layers.0.") + n));
      EXPECT_NE(t, nullptr) << n;
      if (t == nullptr) return out;
      std::vector<uint8_t> b = source_as_bf16(*t);
      out.insert(out.end(), b.begin(), b.end());
    }
    return out;
  };
  EXPECT_EQ(bytes_of(w.layers[0].qkv), cat({"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"}))
      << what;
  EXPECT_EQ(bytes_of(w.layers[0].gate_up), cat({"mlp.gate_proj.weight", "mlp.up_proj.weight"})) << what;
}

TEST(WeightLoadDeferred, PartsReconstructTheMergedHostMatrices) {
  ThreadPool pool(2);
  ModelFiles f = open_model_files(model_dir("llama_bf16"));
  TransformerWeights host = load(f, DType::kBF16, false, &pool);
  TransformerWeights dev = load(f, DType::kBF16, true, &pool);
  EXPECT_EQ(host.n_params, dev.n_params);
  EXPECT_EQ(estimate_device_weight_bytes(host), estimate_device_weight_bytes(dev));
  auto hm = matrices(host), dm = matrices(dev);
  ASSERT_EQ(hm.size(), dm.size());
  int n_deferred = 0;
  for (size_t i = 0; i < hm.size(); ++i) {
    const WeightMatrix& a = *hm[i].second;
    const WeightMatrix& b = *dm[i].second;
    EXPECT_FALSE(a.deferred()) << "the CPU path got a deferred matrix: " << hm[i].first;
    EXPECT_EQ(a.rows(), b.rows()) << hm[i].first;
    EXPECT_EQ(a.cols(), b.cols()) << hm[i].first;
    EXPECT_EQ(a.dtype(), b.dtype()) << hm[i].first;
    EXPECT_EQ(bytes_of(a), bytes_of(b)) << hm[i].first;
    if (b.deferred()) {
      ++n_deferred;
      int64_t rows = 0;
      for (const WeightPart& p : b.parts) rows += p.rows;
      EXPECT_EQ(rows, b.rows()) << hm[i].first;
    }
  }
  // q, k and v are not stored back to back in this file: every qkv is deferred.
  EXPECT_GE(n_deferred, static_cast<int>(f.spec.n_layers));
  expect_merges_match_source(f, host, "host path");
  expect_merges_match_source(f, dev, "deferred");
  // gate and up are stored back to back: gate_up is a zero-copy view of the file on both paths.
  const TensorInfo* gate = f.weights->find(f.name_of("model.layers.0.mlp.gate_proj.weight"));
  ASSERT_NE(gate, nullptr);
  EXPECT_EQ(host.layers[0].gate_up.data(), gate->data);
  EXPECT_EQ(dev.layers[0].gate_up.data(), gate->data);
  EXPECT_FALSE(dev.layers[0].gate_up.deferred());
  EXPECT_NO_THROW(place_on_host(host));
  EXPECT_THROW(place_on_host(dev), Error);
}

TEST(WeightLoadDeferred, UploadWritesEachPartAtItsRowOffset) {
  ThreadPool pool(2);
  ModelFiles f = open_model_files(model_dir("llama_bf16"));
  TransformerWeights host = load(f, DType::kBF16, false, &pool);
  TransformerWeights dev = load(f, DType::kBF16, true, &pool);
  auto cpu = create_cpu_device();  // upload_weights through the fallback: plain copies on the host
  PlacedWeights placed = upload_weights(dev, *cpu, nullptr, &pool);
  EXPECT_EQ(placed.device_bytes, estimate_device_weight_bytes(host));
  ASSERT_EQ(placed.layers.size(), host.layers.size());
  auto same = [](const void* p, const WeightMatrix& m) {
    return p != nullptr && std::memcmp(p, m.data(), m.t.nbytes()) == 0;
  };
  EXPECT_TRUE(same(placed.embed, host.embed));
  EXPECT_TRUE(same(placed.lm_head, host.lm_head));
  for (size_t l = 0; l < host.layers.size(); ++l) {
    EXPECT_TRUE(same(placed.layers[l].qkv, host.layers[l].qkv)) << l;
    EXPECT_TRUE(same(placed.layers[l].o, host.layers[l].o)) << l;
    EXPECT_TRUE(same(placed.layers[l].gate_up, host.layers[l].gate_up)) << l;
    EXPECT_TRUE(same(placed.layers[l].down, host.layers[l].down)) << l;
    EXPECT_EQ(std::memcmp(placed.layers[l].attn_norm, host.layers[l].attn_norm.data(),
                          host.layers[l].attn_norm.size() * sizeof(float)), 0) << l;
  }
}

TEST(WeightLoadDeferred, ConversionsAreNeverDeferredAndMatchTheSource) {
  ThreadPool pool(2);
  for (const char* name : {"llama_base", "llama_f16"}) {
    ModelFiles f = open_model_files(model_dir(name));
    TransformerWeights host = load(f, DType::kBF16, false, &pool);
    TransformerWeights dev = load(f, DType::kBF16, true, &pool);
    auto hm = matrices(host), dm = matrices(dev);
    for (size_t i = 0; i < hm.size(); ++i) {
      EXPECT_FALSE(dm[i].second->deferred()) << name << " " << hm[i].first;
      EXPECT_EQ(bytes_of(*hm[i].second), bytes_of(*dm[i].second)) << name << " " << hm[i].first;
    }
    expect_merges_match_source(f, host, name);
  }
}

TEST(WeightLoadDeferred, F32LoadOfF16CheckpointMatchesTheSource) {
  ModelFiles f = open_model_files(model_dir("llama_f16"));
  TransformerWeights w = load(f, DType::kF32, false, nullptr);
  const TensorInfo* q = f.weights->find(f.name_of("model.layers.0.self_attn.q_proj.weight"));
  ASSERT_NE(q, nullptr);
  const float* got = static_cast<const float*>(w.layers[0].qkv.data());
  const int64_t n = static_cast<int64_t>(q->nbytes / 2);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, q->data + 2 * i, 2);
    ASSERT_EQ(got[i], f16_to_f32(h)) << i;
  }
}

}  // namespace
}  // namespace eli
