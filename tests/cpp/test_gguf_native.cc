// tests/cpp/test_gguf_native.cc: GGUF block weights applied natively on the CPU (the
// "gguf-native" LinearMethod, runtime/model/linear_gguf.cc) on a Q4_K_M-style mixed fixture
// (tests/data/gguf/tiny_llama_mixed.gguf, scripts/make_gguf_fixtures.py): q/k Q4_K + v Q6_K
// merged into segments, every new block type (Q2_K, Q3_K, IQ4_NL, IQ4_XS), gate and up of
// different types, an F16 matrix (dense) among them.
//   - the method per tensor, the segments, blocks kept as stored (bytes = the file's bytes);
//   - logits and greedy tokens agree with the dequantize-at-load fallback (ELI_GGUF_NATIVE=0)
//     within the activation-quantization tolerance (see LogitsMatchTheDequantPath);
//   - the GEMV route (m <= 8) and the GEMM route give the same bits per row;
//   - the token embedding stays as stored (rows dequantized per lookup);
//   - the engine's resident weight bytes are the file's block bytes (plus f32 norms and the F16
//     matrix, converted to the f32 compute dtype by design).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <map>
#include <string>
#include <vector>

#include "eli/engine.h"
#include "eli/error.h"
#include "runtime/core/thread_pool.h"
#include "runtime/model/gguf.h"
#include "runtime/model/linear_method.h"
#include "runtime/model/model.h"
#include "runtime/model/model_files.h"
#include "runtime/model/weight_reader.h"

namespace eli {
namespace {

const std::string kMixed = std::string(ELI_TEST_DATA_DIR) + "/gguf/tiny_llama_mixed.gguf";

// ELI_GGUF_NATIVE=0 for the lifetime of the guard (the dequantizing fallback).
struct DequantOnly {
  DequantOnly() { ::setenv("ELI_GGUF_NATIVE", "0", 1); }
  ~DequantOnly() { ::unsetenv("ELI_GGUF_NATIVE"); }
};

std::unique_ptr<Model> load_model(const ModelFiles& f) {
  ModelLoadOptions opt;
  opt.compute_dtype = DType::kF32;
  opt.device = DeviceKind::kCPU;
  opt.gguf_llama_permuted = f.gguf_llama_permuted;
  return create_model(f.spec, WeightReader(f.weights, f.name_of), opt);
}

TEST(GgufNative, NewBlockTypesParse) {
  auto f = GgufFile::open(kMixed);
  const std::map<std::string, DType> want = {
      {"blk.0.attn_output.weight", DType::kQ2_K}, {"blk.1.attn_q.weight", DType::kQ3_K},
      {"blk.1.attn_output.weight", DType::kIQ4_XS}, {"blk.1.ffn_gate.weight", DType::kIQ4_NL},
      {"blk.0.attn_v.weight", DType::kQ6_K},       {"blk.1.ffn_down.weight", DType::kF16}};
  for (const auto& [name, dt] : want) {
    const TensorInfo* t = f->find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->dtype, dt) << name;
    const DTypeInfo& info = dtype_info(dt);
    EXPECT_EQ(t->nbytes, static_cast<uint64_t>(t->shape[0] * t->shape[1] / info.block_elems * info.block_bytes)) << name;
  }
}

TEST(GgufNative, MethodsSegmentsAndBytesPerTensor) {
  const ModelFiles files = open_model_files(kMixed);
  auto model = load_model(files);
  std::map<std::string, const LinearWeight*> w;
  for (const LinearWeight& l : model->weights().linears()) w[l.name] = &l;
  auto file_bytes = [&](std::initializer_list<const char*> names) {
    uint64_t n = 0;
    for (const char* name : names) n += files.weights->find(name)->nbytes;
    return n;
  };
  const std::string l0 = "model.layers.0.", l1 = "model.layers.1.";
  // q/k Q4_K + v Q6_K: two segments, rows 256 + 128 then 128, as stored.
  const LinearWeight* qkv0 = w.at(l0 + "self_attn.qkv_proj");
  EXPECT_STREQ(qkv0->method->name(), "gguf-native");
  ASSERT_EQ(qkv0->segments.size(), 2u);
  EXPECT_EQ(qkv0->segments[0].dtype, DType::kQ4_K);
  EXPECT_EQ(qkv0->segments[0].rows, 384);
  EXPECT_EQ(qkv0->segments[1].dtype, DType::kQ6_K);
  EXPECT_EQ(qkv0->segments[1].row0, 384);
  EXPECT_EQ(qkv0->segments[1].rows, 128);
  EXPECT_EQ(qkv0->segments[1].offset, file_bytes({"blk.0.attn_q.weight", "blk.0.attn_k.weight"}));
  EXPECT_EQ(qkv0->data.nbytes(), file_bytes({"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"}));
  // One type: plain blocks; gate/up of two types: segments; the F16 matrix: dense.
  const LinearWeight* qkv1 = w.at(l1 + "self_attn.qkv_proj");
  EXPECT_TRUE(qkv1->segments.empty());
  EXPECT_EQ(qkv1->dtype, DType::kQ3_K);
  EXPECT_EQ(qkv1->format, WeightFormat::kGgufBlocks);
  const LinearWeight* gu1 = w.at(l1 + "mlp.gate_up_proj");
  ASSERT_EQ(gu1->segments.size(), 2u);
  EXPECT_EQ(gu1->segments[0].dtype, DType::kIQ4_NL);
  EXPECT_EQ(gu1->segments[1].dtype, DType::kQ5_K);
  EXPECT_EQ(gu1->data.nbytes(), file_bytes({"blk.1.ffn_gate.weight", "blk.1.ffn_up.weight"}));
  EXPECT_STREQ(w.at(l1 + "mlp.down_proj")->method->name(), "dense");
  EXPECT_EQ(w.at(l0 + "self_attn.o_proj")->dtype, DType::kQ2_K);
  EXPECT_EQ(w.at(l1 + "self_attn.o_proj")->dtype, DType::kIQ4_XS);
  EXPECT_STREQ(w.at("lm_head")->method->name(), "gguf-native");
  const LinearWeight* embed = w.at("model.embed_tokens");
  EXPECT_EQ(embed->format, WeightFormat::kGgufBlocks);
  EXPECT_EQ(embed->dtype, DType::kQ8_0);
  EXPECT_EQ(embed->ptr(), files.weights->find("token_embd.weight")->data);
  EXPECT_EQ(w.at("lm_head")->data.nbytes(), file_bytes({"output.weight"}));
  // gate/up of layer 0 lie back to back in the file with one type: a zero-copy view.
  const LinearWeight* gu0 = w.at(l0 + "mlp.gate_up_proj");
  EXPECT_TRUE(gu0->file_view);
  EXPECT_EQ(gu0->ptr(), files.weights->find("blk.0.ffn_gate.weight")->data);
}

// A row gives the same bits through the GEMV route (m <= 8: norm and SiLU fused in the kernel) as
// through NormCast + kGemm + GatedAct (m > 8): chunked prefill, decode and whole prefill agree.
TEST(GgufNative, RoutesGiveTheSameBits) {
  const ModelFiles files = open_model_files(kMixed);
  auto model = load_model(files);
  std::map<std::string, const LinearWeight*> w;
  for (const LinearWeight& l : model->weights().linears()) w[l.name] = &l;
  ThreadPool pool(2);
  ExecContext ctx;
  ctx.pool = &pool;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const char* name : {"model.layers.0.self_attn.qkv_proj", "model.layers.0.mlp.gate_up_proj",
                           "model.layers.1.mlp.gate_up_proj", "model.layers.1.self_attn.o_proj"}) {
    SCOPED_TRACE(name);
    const LinearWeight& lw = *w.at(name);
    const bool gated = std::string(name).find("gate_up") != std::string::npos;
    const bool norm = std::string(name).find("o_proj") == std::string::npos;
    const int64_t m = 12, k = lw.cols, n_out = gated ? lw.rows / 2 : lw.rows;
    std::vector<float> x(static_cast<size_t>(m * k)), nw(static_cast<size_t>(k));
    for (float& v : x) v = nd(rng);
    for (float& v : nw) v = 1.0f + 0.1f * nd(rng);
    size_t nb = 0, mb = 0, bb = 0;
    lw.method->scratch_bytes(lw, m, DeviceKind::kCPU, &nb, &mb, &bb);
    std::vector<float> sn(nb / 4 + 1), sm(mb / 4 + 1), sb(bb / 4 + 64);
    LinearScratch scratch{sn.data(), nb, sm.data(), mb, sb.data(), bb};
    auto run = [&](int64_t r0, int64_t rows, std::vector<float>& out) {
      LinearInput in{x.data() + r0 * k, DType::kF32, k, norm ? nw.data() : nullptr, 1e-5f};
      LinearOutput o{out.data() + r0 * n_out, DType::kF32, n_out,
                     gated ? LinearEpilogue::kGated : LinearEpilogue::kStore, GatedAct::kSilu};
      lw.method->apply(lw, rows, in, o, scratch, ctx, DeviceKind::kCPU);
    };
    std::vector<float> whole(static_cast<size_t>(m * n_out)), rows(whole.size()), chunks(whole.size());
    run(0, m, whole);                                 // GEMM route
    for (int64_t r = 0; r < m; ++r) run(r, 1, rows);  // GEMV route, one row at a time
    run(0, 5, chunks);                                // GEMV route, 5 rows, then 7
    run(5, 7, chunks);
    EXPECT_EQ(0, std::memcmp(whole.data(), rows.data(), whole.size() * 4));
    EXPECT_EQ(0, std::memcmp(whole.data(), chunks.data(), whole.size() * 4));
  }
}

TEST(GgufNative, FallbackWhenTurnedOff) {
  DequantOnly off;
  const ModelFiles files = open_model_files(kMixed);
  auto model = load_model(files);
  for (const LinearWeight& l : model->weights().linears()) {
    EXPECT_EQ(l.format, WeightFormat::kDense) << l.name;
    EXPECT_TRUE(l.segments.empty()) << l.name;
  }
}

EngineConfig mixed_config() {
  EngineConfig c;
  c.model = kMixed;
  c.dtype = "float32";
  c.n_threads = 2;
  c.num_kv_blocks = 32;
  c.block_size = 8;
  return c;
}

std::vector<int32_t> greedy(Engine& e, const std::vector<int32_t>& prompt, int n) {
  SamplingParams p;
  p.max_tokens = n;
  p.temperature = 0.0;
  p.ignore_eos = true;
  e.add_request(prompt, p);
  std::vector<int32_t> out;
  while (e.has_unfinished())
    for (const TokenOutput& o : e.step()) out.push_back(o.token);
  return out;
}

// Tolerance: each product's error is bounded by the activation rounding (test_kernels_quant.cc:
// sum over blocks of d_b / 2 * sum |w|, d_b = amax_b / 127, i.e. at most 1/254 of
// sum_b amax_b * sum_{j in b} |w_j|, about 1% of a product's scale at 256-wide blocks); through
// seven quantized products per layer, two layers (one of Q2_K / Q3_K weights) and the head, the
// measured deviation on this fixture is 2.1% (13 tokens) and 2.7% (3 tokens) of the largest
// |logit|. Asserted: max |delta logit| <= 5% of max |logit|, a nonzero deviation (the native path
// really ran), and the same greedy tokens.
TEST(GgufNative, LogitsMatchTheDequantPath) {
  Engine native(mixed_config());
  std::unique_ptr<Engine> dequant;
  {
    DequantOnly off;
    dequant = std::make_unique<Engine>(mixed_config());
  }
  const int64_t V = native.info().spec.vocab_size;
  for (const std::vector<int32_t>& prompt :
       {std::vector<int32_t>{3, 17, 42, 9, 60, 1, 33, 7, 21, 50, 11, 5, 28}, std::vector<int32_t>{8, 2, 40}}) {
    const std::vector<float> a = native.score(prompt), b = dequant->score(prompt);
    ASSERT_EQ(a.size(), b.size());
    ASSERT_EQ(a.size(), prompt.size() * static_cast<size_t>(V));
    double scale = 0.0, worst = 0.0;
    for (size_t i = 0; i < a.size(); ++i) {
      scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
      const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
      worst = d <= worst ? worst : d;  // a NaN sticks (std::max would drop it)
    }
    std::printf("prompt of %zu tokens: max |logit| %.4g, max |delta| %.4g (%.3g%%)\n", prompt.size(), scale, worst,
                100.0 * worst / scale);
    EXPECT_GT(worst, 0.0) << "the native path must really differ (quantized activations)";
    EXPECT_LE(worst, 0.05 * scale);
    EXPECT_EQ(greedy(native, prompt, 12), greedy(*dequant, prompt, 12));
  }
  // Resident weights: the file's block bytes for every quantized matrix, f32 for the rest.
  auto f = GgufFile::open(kMixed);
  uint64_t expect_native = 0, expect_dequant = 0;
  for (const auto& name : f->tensor_order()) {
    const TensorInfo& t = *f->find(name);
    const uint64_t numel = t.shape.size() == 1 ? t.shape[0] : t.shape[0] * t.shape[1];
    const bool block_matrix = dtype_info(t.dtype).is_quantized;  // the Q8_0 embedding included
    expect_native += block_matrix ? t.nbytes : numel * 4;
    expect_dequant += numel * 4;
  }
  EXPECT_EQ(native.info().memory.weights_bytes, expect_native);
  EXPECT_EQ(dequant->info().memory.weights_bytes, expect_dequant);
}

}  // namespace
}  // namespace eli
