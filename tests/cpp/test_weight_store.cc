// tests/cpp/test_weight_store.cc: per-tensor weights (runtime/model/weight_store.h,
// weight_reader.h, linear_method.h) without a GPU: the LinearMethod chosen per tensor, deferred
// merges against the merged host matrices, the one-pass conversions against the source tensors,
// GGUF blocks kept as stored until the fallback method's repack, placement through a host-backed
// stand-in for a GPU (the staged upload path) and on the CPU, the placement map, and the bytes
// estimate with a tied head counted once.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "eli/error.h"
#include "kernels/ref/float_convert.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"
#include "tests/cpp/fake_async_device.h"
#include "runtime/model/gguf.h"
#include "runtime/model/linear_method.h"
#include "runtime/model/model.h"
#include "runtime/model/model_files.h"
#include "runtime/model/weight_reader.h"
#include "runtime/model/weight_source.h"

namespace eli {
namespace {

std::string model_dir(const char* name) { return std::string(ELI_TEST_DATA_DIR) + "/models/" + name; }

std::unique_ptr<Model> load(const ModelFiles& f, DType dtype, bool defer, ThreadPool* pool,
                            DeviceKind device = DeviceKind::kCPU) {
  ModelLoadOptions opt;
  opt.compute_dtype = dtype;
  opt.device = device;
  opt.gguf_llama_permuted = f.gguf_llama_permuted;
  opt.defer_merges = defer;
  opt.pool = pool;
  return create_model(f.spec, WeightReader(f.weights, f.name_of), opt);
}

std::vector<uint8_t> bytes_of(const LinearWeight& w) {
  Tensor t = w.contiguous_host();
  const uint8_t* p = t.ptr<uint8_t>();
  return std::vector<uint8_t>(p, p + t.nbytes());
}

std::map<std::string, const LinearWeight*> by_name(const Model& m) {
  std::map<std::string, const LinearWeight*> out;
  for (const LinearWeight& w : m.weights().linears()) out[w.name] = &w;
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
void expect_merges_match_source(const ModelFiles& f, const Model& m, const std::string& what) {
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
  auto w = by_name(m);
  ASSERT_EQ(w.count("model.layers.0.self_attn.qkv_proj"), 1u);
  EXPECT_EQ(bytes_of(*w["model.layers.0.self_attn.qkv_proj"]),
            cat({"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"}))
      << what;
  EXPECT_EQ(bytes_of(*w["model.layers.0.mlp.gate_up_proj"]), cat({"mlp.gate_proj.weight", "mlp.up_proj.weight"})) << what;
}

TEST(WeightStore, EveryDenseCheckpointTensorGetsTheDenseMethod) {
  ThreadPool pool(2);
  ModelFiles f = open_model_files(model_dir("llama_bias"));
  auto m = load(f, DType::kF32, false, &pool);
  for (const LinearWeight& w : m->weights().linears()) {
    ASSERT_NE(w.method, nullptr) << w.name;
    EXPECT_STREQ(w.method->name(), "dense") << w.name;
    EXPECT_EQ(w.format, WeightFormat::kDense) << w.name;
  }
  auto w = by_name(*m);
  EXPECT_TRUE(w["model.layers.0.self_attn.qkv_proj"]->bias.defined()) << "qkv bias merged";
  EXPECT_EQ(w["model.layers.0.self_attn.qkv_proj"]->bias.numel(), w["model.layers.0.self_attn.qkv_proj"]->rows);
}

TEST(WeightStore, DeferredPartsReconstructTheMergedHostMatrices) {
  ThreadPool pool(2);
  ModelFiles f = open_model_files(model_dir("llama_bf16"));
  auto host = load(f, DType::kBF16, false, &pool);
  auto dev = load(f, DType::kBF16, true, &pool);
  EXPECT_EQ(host->weights().n_params(), dev->weights().n_params());
  EXPECT_EQ(host->weights().placed_bytes(), dev->weights().placed_bytes());
  auto hm = by_name(*host), dm = by_name(*dev);
  ASSERT_EQ(hm.size(), dm.size());
  int n_deferred = 0;
  for (const auto& [name, a] : hm) {
    const LinearWeight* b = dm[name];
    ASSERT_NE(b, nullptr) << name;
    EXPECT_FALSE(a->deferred()) << "the CPU path got a deferred matrix: " << name;
    EXPECT_EQ(a->rows, b->rows) << name;
    EXPECT_EQ(a->cols, b->cols) << name;
    EXPECT_EQ(a->dtype, b->dtype) << name;
    EXPECT_EQ(bytes_of(*a), bytes_of(*b)) << name;
    if (b->deferred()) {
      ++n_deferred;
      int64_t rows = 0;
      for (const WeightPart& p : b->parts) rows += p.rows;
      EXPECT_EQ(rows, b->rows) << name;
    }
  }
  // q, k and v are not stored back to back in this file: every qkv is deferred.
  EXPECT_GE(n_deferred, static_cast<int>(f.spec.n_layers));
  expect_merges_match_source(f, *host, "host path");
  expect_merges_match_source(f, *dev, "deferred");
  // gate and up are stored back to back: gate_up is a zero-copy view of the file on both paths.
  const TensorInfo* gate = f.weights->find(f.name_of("model.layers.0.mlp.gate_proj.weight"));
  ASSERT_NE(gate, nullptr);
  EXPECT_EQ(hm["model.layers.0.mlp.gate_up_proj"]->ptr(), gate->data);
  EXPECT_EQ(dm["model.layers.0.mlp.gate_up_proj"]->ptr(), gate->data);
  EXPECT_TRUE(dm["model.layers.0.mlp.gate_up_proj"]->file_view);
  EXPECT_FALSE(dm["model.layers.0.mlp.gate_up_proj"]->deferred());
}

TEST(WeightStore, UploadWritesEachPartAtItsRowOffsetAndReleasesTheHost) {
  FakeAsyncDevice gpu(DeviceId{DeviceKind::kCUDA, 7});  // declared first: the placed weights free into it
  ThreadPool pool(2);
  ModelFiles f = open_model_files(model_dir("llama_bf16"));
  auto host = load(f, DType::kBF16, false, &pool);
  auto dev = load(f, DType::kBF16, true, &pool);
  const uint64_t estimate = dev->weights().placed_bytes();
  dev->weights().place(gpu, nullptr, &pool);
  uint64_t placed = 0;
  for (const Placement& p : dev->weights().placements()) {
    EXPECT_EQ(p.tier, MemoryTier::kDevice) << p.name;
    EXPECT_EQ(p.device.index, 7) << p.name;
    placed += p.bytes;
  }
  EXPECT_EQ(placed, estimate);
  auto hm = by_name(*host), dm = by_name(*dev);
  for (const auto& [name, a] : hm) {
    const LinearWeight* b = dm[name];
    EXPECT_FALSE(b->deferred()) << name;
    EXPECT_FALSE(b->file_view) << name;
    EXPECT_EQ(b->data.view().device.kind, DeviceKind::kCUDA) << name;
    ASSERT_EQ(a->data.nbytes(), b->data.nbytes()) << name;
    EXPECT_EQ(std::memcmp(a->ptr(), b->ptr(), a->data.nbytes()), 0) << name;
  }
  // The tied head shares the embedding's device copy.
  if (f.spec.tie_word_embeddings) EXPECT_EQ(dm["lm_head"]->ptr(), dm["model.embed_tokens"]->ptr());
  for (const VectorWeight& v : dev->weights().vectors()) EXPECT_EQ(v.data.view().device.kind, DeviceKind::kCUDA);
  EXPECT_THROW(dev->weights().place(gpu, nullptr, &pool), Error);  // once
}

// The mixed GGUF fixture with the native method (blocks as stored, merged projections of two
// block types as segments) through the GPU placement path: every byte of every weight arrives. A
// segmented weight's w.dtype names only its first block type, so the device copy must be sized
// from the host bytes (the bug this catches gave CUDA NaN logits on Q4_K_M-style files).
TEST(WeightStore, UploadKeepsEveryByteOfGgufBlocksAndSegments) {
  FakeAsyncDevice gpu(DeviceId{DeviceKind::kCUDA, 3});
  ThreadPool pool(2);
  ModelFiles f = open_model_files(std::string(ELI_TEST_DATA_DIR) + "/gguf/tiny_llama_mixed.gguf");
  auto host = load(f, DType::kF32, false, &pool);
  auto dev = load(f, DType::kF32, true, &pool);
  int n_segmented = 0, n_blocks = 0;
  for (const LinearWeight& w : dev->weights().linears()) {
    n_segmented += w.segments.size() > 1 ? 1 : 0;
    n_blocks += w.format == WeightFormat::kGgufBlocks ? 1 : 0;
  }
  ASSERT_GT(n_segmented, 0) << "the fixture has merged projections of two block types";
  ASSERT_GT(n_blocks, n_segmented);
  // The host copies, before placement moves them.
  std::map<std::string, std::vector<uint8_t>> want;
  for (const LinearWeight& w : host->weights().linears()) {
    const uint8_t* p = static_cast<const uint8_t*>(w.ptr());
    want[w.name] = std::vector<uint8_t>(p, p + w.data.nbytes());
  }
  dev->weights().place(gpu, nullptr, &pool);
  for (const LinearWeight& w : dev->weights().linears()) {
    SCOPED_TRACE(w.name);
    ASSERT_EQ(w.data.nbytes(), want[w.name].size());
    EXPECT_EQ(std::memcmp(w.ptr(), want[w.name].data(), want[w.name].size()), 0);
  }
}

TEST(WeightStore, CpuPlacementKeepsFileViewsAndMapsThem) {
  auto cpu = create_cpu_device();
  ThreadPool pool(2);
  ModelFiles f = open_model_files(model_dir("llama_bf16"));
  auto m = load(f, DType::kBF16, false, &pool);
  const void* gate_up = by_name(*m)["model.layers.0.mlp.gate_up_proj"]->ptr();
  m->weights().place(*cpu, nullptr, &pool);
  EXPECT_EQ(by_name(*m)["model.layers.0.mlp.gate_up_proj"]->ptr(), gate_up) << "no copy on the CPU";
  bool mapped = false, host = false;
  for (const Placement& p : m->weights().placements()) {
    mapped = mapped || p.tier == MemoryTier::kMappedFile;
    host = host || p.tier == MemoryTier::kHost;
    EXPECT_EQ(p.device.kind, DeviceKind::kCPU);
  }
  EXPECT_TRUE(mapped) << "zero-copy views are reported as mapped-file tensors";
  EXPECT_TRUE(host) << "merged / converted matrices are host tensors";
}

TEST(WeightStore, ConversionsAreNeverDeferredAndMatchTheSource) {
  ThreadPool pool(2);
  for (const char* name : {"llama_base", "llama_f16"}) {
    ModelFiles f = open_model_files(model_dir(name));
    auto host = load(f, DType::kBF16, false, &pool);
    auto dev = load(f, DType::kBF16, true, &pool);
    auto hm = by_name(*host), dm = by_name(*dev);
    for (const auto& [n, a] : hm) {
      EXPECT_FALSE(dm[n]->deferred()) << name << " " << n;
      EXPECT_EQ(bytes_of(*a), bytes_of(*dm[n])) << name << " " << n;
    }
    expect_merges_match_source(f, *host, name);
  }
}

TEST(WeightStore, F32LoadOfF16CheckpointMatchesTheSource) {
  ModelFiles f = open_model_files(model_dir("llama_f16"));
  auto m = load(f, DType::kF32, false, nullptr);
  const TensorInfo* q = f.weights->find(f.name_of("model.layers.0.self_attn.q_proj.weight"));
  ASSERT_NE(q, nullptr);
  const float* got = static_cast<const float*>(by_name(*m)["model.layers.0.self_attn.qkv_proj"]->ptr());
  const int64_t n = static_cast<int64_t>(q->nbytes / 2);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, q->data + 2 * i, 2);
    ASSERT_EQ(got[i], f16_to_f32(h)) << i;
  }
}

TEST(WeightStore, GgufBlocksUseTheDequantFallbackAndMatchTheReference) {
  // Every GGUF block type of quant_types.gguf through the fallback method: the blocks are kept as
  // stored at load (format kGgufBlocks, a view of the file), repack dequantizes them once into
  // the compute dtype, and the result equals converting each source row to f32 (then rounding).
  // The CPU has native kernels for every type: the fallback is chosen only with ELI_GGUF_NATIVE=0.
  ::setenv("ELI_GGUF_NATIVE", "0", 1);
  struct Unset {
    ~Unset() { ::unsetenv("ELI_GGUF_NATIVE"); }
  } unset;
  std::shared_ptr<WeightSource> src(GgufFile::open(std::string(ELI_TEST_DATA_DIR) + "/gguf/quant_types.gguf"));
  WeightReader reader(src, [](const std::string& n) { return n.size() > 7 ? n.substr(0, n.size() - 7) : n; });
  int n_quant = 0;
  for (const char* name : {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"}) {
    SCOPED_TRACE(name);
    const TensorInfo* t = src->find(name);
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->shape.size(), 2u);
    LinearSpec spec;
    spec.name = name;
    spec.parts = {LinearPart{name, t->shape[0], 0}};
    spec.cols = t->shape[1];
    EXPECT_STREQ(select_linear_method(spec, reader, DeviceKind::kCPU).name(), "gguf-dequant");
    LinearLoadContext ctx;
    ctx.compute_dtype = DType::kF32;
    LinearWeight blocks = gguf_dequant_linear_method().load(spec, reader, ctx);
    EXPECT_EQ(blocks.format, WeightFormat::kGgufBlocks);
    EXPECT_EQ(blocks.dtype, t->dtype);
    EXPECT_EQ(blocks.ptr(), t->data) << "blocks kept as stored";
    for (DType want : {DType::kF32, DType::kBF16}) {
      ctx.compute_dtype = want;
      LinearWeight w = load_linear(spec, reader, ctx);
      EXPECT_EQ(w.format, WeightFormat::kDense);
      EXPECT_EQ(w.dtype, want);
      std::vector<float> ref(static_cast<size_t>(w.rows * w.cols));
      tensor_rows_to_f32(*t, w.cols, 0, w.rows, ref.data());
      for (size_t i = 0; i < ref.size(); ++i) {
        const float got = want == DType::kF32 ? static_cast<const float*>(w.ptr())[i]
                                              : bf16_to_f32(static_cast<const uint16_t*>(w.ptr())[i]);
        const float expect = want == DType::kF32 ? ref[i] : bf16_to_f32(f32_to_bf16(ref[i]));
        ASSERT_EQ(got, expect) << dtype_name(want) << " element " << i;
      }
    }
    ++n_quant;
  }
  EXPECT_EQ(n_quant, 8);
}

TEST(WeightStore, PlacedBytesCountAliasesOnce) {
  WeightStore store;
  LinearWeight embed;
  embed.name = "embed";
  embed.dtype = DType::kBF16;
  embed.rows = 100;
  embed.cols = 16;
  embed.data = Tensor::host(DType::kBF16, {100, 16});  // 3200 B
  const LinearWeight* e = store.add(embed);
  LinearWeight head = *e;
  head.name = "lm_head";
  head.alias_of = e;  // tied: the same storage
  store.add(head);
  store.add_vector("norm", std::vector<float>(16, 1.0f));  // 64 B
  LinearWeight qkv;
  qkv.name = "qkv";
  qkv.dtype = DType::kBF16;
  qkv.rows = 48;
  qkv.cols = 16;
  qkv.data = Tensor::host(DType::kBF16, {48, 16});  // 1536 B
  qkv.bias = Tensor::host(DType::kF32, {48});       // 192 B
  store.add(qkv);
  EXPECT_EQ(store.placed_bytes(), 3200u + 64u + 1536u + 192u);
  LinearWeight untied = embed;
  untied.name = "lm_head2";
  store.add(untied);
  EXPECT_EQ(store.placed_bytes(), 2 * 3200u + 64u + 1536u + 192u);
}

TEST(WeightStore, SelectionRefusesWhatNoMethodTakes) {
  ModelFiles f = open_model_files(model_dir("llama_base"));
  WeightReader reader(f.weights, f.name_of);
  LinearSpec spec;
  spec.name = "missing";
  spec.parts = {LinearPart{"model.layers.0.self_attn.no_such", 4, 0}};
  spec.cols = 4;
  try {
    select_linear_method(spec, reader, DeviceKind::kCPU);
    FAIL() << "expected a model-load error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModelLoad);
    EXPECT_NE(std::string(e.what()).find("no_such"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace eli
