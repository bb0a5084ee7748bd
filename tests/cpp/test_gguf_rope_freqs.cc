// tests/cpp/test_gguf_rope_freqs.cc: Llama-3.x RoPE scaling carried as the GGUF tensor
// rope_freqs.weight (llama.cpp's converter form): spec_from_gguf reads and checks it, and
// compute_rope_table gives the same inv_freq as the HF checkpoint's `rope_scaling: llama3`.
//
// The GGUF files are written byte by byte into the test temp dir (metadata only, plus the one
// tensor), so every malformed variant is one call. The expected divisors are computed here the way
// convert_hf_to_gguf.py does (float32 arithmetic), independently of runtime/model/rope.cc.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "eli/error.h"
#include "eli/model_spec.h"
#include "runtime/model/gguf.h"
#include "runtime/model/gguf_spec.h"
#include "runtime/model/rope.h"

namespace eli {
namespace {

constexpr uint32_t kGgmlF32 = 0, kGgmlF16 = 1;

// A GGUF v3 file assembled in memory (little-endian host assumed, as the reader does).
class GgufBytes {
 public:
  void kv_u32(const std::string& key, uint32_t v) {
    kv_head(key, 4);
    put(kvs_, v);
  }
  void kv_f32(const std::string& key, float v) {
    kv_head(key, 6);
    put(kvs_, v);
  }
  void kv_str(const std::string& key, const std::string& v) {
    kv_head(key, 8);
    str(kvs_, v);
  }
  // dims: GGUF order (innermost first).
  void tensor(const std::string& name, const std::vector<uint64_t>& dims, uint32_t ggml_type, const std::string& bytes) {
    data_.append((32 - data_.size() % 32) % 32, '\0');
    str(infos_, name);
    put(infos_, static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) put(infos_, d);
    put(infos_, ggml_type);
    put(infos_, static_cast<uint64_t>(data_.size()));
    data_ += bytes;
    ++n_tensors_;
  }
  std::string finish() const {
    std::string out = "GGUF";
    put(out, static_cast<uint32_t>(3));
    put(out, n_tensors_);
    put(out, n_kv_);
    out += kvs_ + infos_;
    out.append((32 - out.size() % 32) % 32, '\0');
    return out + data_;
  }

 private:
  template <typename T>
  static void put(std::string& o, T v) {
    o.append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  static void str(std::string& o, const std::string& s) {
    put(o, static_cast<uint64_t>(s.size()));
    o += s;
  }
  void kv_head(const std::string& key, uint32_t type) {
    str(kvs_, key);
    put(kvs_, type);
    ++n_kv_;
  }
  std::string kvs_, infos_, data_;
  uint64_t n_kv_ = 0, n_tensors_ = 0;
};

std::string floats_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

struct Llama3Rope {
  double theta, factor, low, high;
  int64_t orig_max, head_dim;
};

// convert_hf_to_gguf.py (LlamaModel, rope_type llama3): base freqs in float32, then per pair 1
// (short wavelengths), factor (long), or 1 / ((1 - smooth) / factor + smooth) in between.
std::vector<float> converter_divisors(const Llama3Rope& r) {
  std::vector<float> out;
  const float low_wavelen = static_cast<float>(r.orig_max / r.low), high_wavelen = static_cast<float>(r.orig_max / r.high);
  for (int64_t i = 0; i < r.head_dim; i += 2) {
    const float freq = 1.0f / std::pow(static_cast<float>(r.theta), static_cast<float>(i) / static_cast<float>(r.head_dim));
    const float wavelen = 2.0f * static_cast<float>(M_PI) / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(static_cast<float>(r.factor));
    } else {
      const float smooth = (static_cast<float>(r.orig_max) / wavelen - static_cast<float>(r.low)) /
                           static_cast<float>(r.high - r.low);
      out.push_back(1.0f / ((1.0f - smooth) / static_cast<float>(r.factor) + smooth));
    }
  }
  return out;
}

// Metadata of a llama GGUF with n_heads 4 (hidden = 4 * head_dim), as the converter writes a
// Llama-3.x file: no rope.scaling.type, the scaling lives in rope_freqs.weight.
GgufBytes llama3_gguf(const Llama3Rope& r, int64_t rope_dims = 0) {
  GgufBytes g;
  g.kv_str("general.architecture", "llama");
  g.kv_u32("llama.block_count", 1);
  g.kv_u32("llama.context_length", 131072);
  g.kv_u32("llama.embedding_length", static_cast<uint32_t>(4 * r.head_dim));
  g.kv_u32("llama.feed_forward_length", 64);
  g.kv_u32("llama.attention.head_count", 4);
  g.kv_u32("llama.attention.head_count_kv", 2);
  g.kv_u32("llama.vocab_size", 32);
  g.kv_f32("llama.rope.freq_base", static_cast<float>(r.theta));
  g.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  g.kv_u32("llama.rope.dimension_count", static_cast<uint32_t>(rope_dims > 0 ? rope_dims : r.head_dim));
  return g;
}

class TempGguf {
 public:
  explicit TempGguf(const std::string& bytes) {
    static int counter = 0;
    path_ = testing::TempDir() + "eli_rope_freqs_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".gguf";
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  ~TempGguf() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

ModelSpec hf_llama3_spec(const Llama3Rope& r) {
  ModelSpec s;
  s.architecture = "llama";
  s.head_dim = r.head_dim;
  s.max_position = 131072;
  s.rope.theta = r.theta;
  s.rope.scaling = RopeScaling::kLlama3;
  s.rope.factor = r.factor;
  s.rope.low_freq_factor = r.low;
  s.rope.high_freq_factor = r.high;
  s.rope.original_max_position = r.orig_max;
  return s;
}

void expect_rel_close(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_LE(std::fabs(static_cast<double>(got[i]) - want[i]), tol * std::fabs(static_cast<double>(want[i])))
        << what << "[" << i << "]: got " << got[i] << " want " << want[i];
  }
}

// Llama-3.1-8B (head_dim 128, factor 8), Llama-3.2-1B (head_dim 64, factor 32) and a small one
// whose pairs fall in all three bands.
const Llama3Rope kConfigs[] = {
    {500000.0, 8.0, 1.0, 4.0, 8192, 128},
    {500000.0, 32.0, 1.0, 4.0, 8192, 64},
    {10000.0, 8.0, 1.0, 4.0, 64, 12},
};

TEST(GgufRopeFreqs, SpecCarriesDivisorsAndMatchesHfLlama3) {
  for (const Llama3Rope& r : kConfigs) {
    SCOPED_TRACE("head_dim " + std::to_string(r.head_dim) + " factor " + std::to_string(r.factor));
    const std::vector<float> div = converter_divisors(r);
    int n_one = 0, n_factor = 0;
    for (float d : div) {
      n_one += d == 1.0f;
      n_factor += d == static_cast<float>(r.factor);
    }
    EXPECT_GT(n_one, 0);  // the configs exercise every band
    EXPECT_GT(n_factor, 0);
    EXPECT_LT(n_one + n_factor, static_cast<int>(div.size()));

    GgufBytes g = llama3_gguf(r);
    g.tensor("rope_freqs.weight", {div.size()}, kGgmlF32, floats_bytes(div));
    TempGguf file(g.finish());
    auto f = GgufFile::open(file.path());
    const ModelSpec s = spec_from_gguf(*f);
    EXPECT_EQ(s.rope.scaling, RopeScaling::kNone);
    EXPECT_EQ(s.rope.freq_divisors, div);
    EXPECT_EQ(hf_name_for_gguf_tensor("rope_freqs.weight"), "");  // not a weight of the HF model

    const RopeTable from_gguf = compute_rope_table(s);
    const RopeTable from_hf = compute_rope_table(hf_llama3_spec(r));
    EXPECT_EQ(from_gguf.attention_scaling, 1.0f);
    expect_rel_close(from_gguf.inv_freq, from_hf.inv_freq, 1e-6, "inv_freq");
    // And the divisors really change something: without them the table is the unscaled one.
    ModelSpec unscaled = s;
    unscaled.rope.freq_divisors.clear();
    const RopeTable plain = compute_rope_table(unscaled);
    EXPECT_NE(plain.inv_freq.back(), from_gguf.inv_freq.back());
    EXPECT_EQ(plain.inv_freq.front(), from_gguf.inv_freq.front());
  }
}

TEST(GgufRopeFreqs, AbsentTensorLeavesNoDivisors) {
  auto f = GgufFile::open(std::string(ELI_TEST_DATA_DIR) + "/gguf/tiny_llama.gguf");
  EXPECT_TRUE(spec_from_gguf(*f).rope.freq_divisors.empty());
}

TEST(GgufRopeFreqs, PartialRotaryUsesRotDim) {
  const Llama3Rope r = kConfigs[1];  // head_dim 64; rotate 32 dims -> 16 divisors
  const std::vector<float> div(16, 2.0f);
  GgufBytes g = llama3_gguf(r, 32);
  g.tensor("rope_freqs.weight", {16}, kGgmlF32, floats_bytes(div));
  TempGguf file(g.finish());
  auto f = GgufFile::open(file.path());
  const ModelSpec s = spec_from_gguf(*f);
  EXPECT_EQ(rope_rot_dim(s), 32);
  EXPECT_EQ(s.rope.freq_divisors, div);
  EXPECT_EQ(compute_rope_table(s).inv_freq.size(), 16u);
}

TEST(GgufRopeFreqs, MalformedTensorIsModelLoad) {
  const Llama3Rope r = kConfigs[1];  // 32 divisors
  const std::vector<float> good = converter_divisors(r);
  auto with = [&](size_t i, float v) {
    std::vector<float> d = good;
    d[i] = v;
    return d;
  };
  struct Case {
    const char* what;
    std::vector<uint64_t> dims;
    uint32_t type;
    std::string bytes;
    const char* expect;
  };
  const std::vector<float> short_d(good.begin(), good.end() - 1);
  std::vector<float> long_d = good;
  long_d.push_back(1.0f);
  const std::vector<Case> cases = {
      {"too short", {31}, kGgmlF32, floats_bytes(short_d), "has 31 values, must have rot_dim / 2 = 32"},
      {"too long", {33}, kGgmlF32, floats_bytes(long_d), "has 33 values, must have rot_dim / 2 = 32"},
      {"2-D", {32, 1}, kGgmlF32, floats_bytes(good), "has 2 dims, must be 1-D"},
      {"f16", {32}, kGgmlF16, std::string(64, '\x3c'), "must be F32"},
      {"nan", {32}, kGgmlF32, floats_bytes(with(5, std::numeric_limits<float>::quiet_NaN())), "value [5]"},
      {"inf", {32}, kGgmlF32, floats_bytes(with(31, std::numeric_limits<float>::infinity())), "value [31]"},
      {"zero", {32}, kGgmlF32, floats_bytes(with(0, 0.0f)), "value [0] = 0 must be finite and > 0"},
      {"negative", {32}, kGgmlF32, floats_bytes(with(7, -2.0f)), "value [7] = -2 must be finite and > 0"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    GgufBytes g = llama3_gguf(r);
    g.tensor("rope_freqs.weight", c.dims, c.type, c.bytes);
    TempGguf file(g.finish());
    auto f = GgufFile::open(file.path());  // the container is valid; the spec is not
    try {
      spec_from_gguf(*f);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kModelLoad);
      const std::string msg = e.what();
      EXPECT_NE(msg.find(file.path()), std::string::npos) << msg;
      EXPECT_NE(msg.find("rope_freqs.weight"), std::string::npos) << msg;
      EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
    }
  }
}

// Divisors apply on top of every scaling type: inv_freq = scaled / divisor, pair by pair.
TEST(RopeFreqDivisors, AppliedAfterEveryScaling) {
  ModelSpec s;
  s.architecture = "llama";
  s.head_dim = 24;
  s.max_position = 128;
  s.rope.theta = 20000.0;
  s.rope.factor = 3.0;
  s.rope.original_max_position = 64;
  const std::vector<float> div = {1.0f, 1.5f, 0.25f, 7.0f, 2.0f, 3.0f, 1.0f, 11.0f, 0.5f, 1.25f, 4.0f, 9.0f};
  for (RopeScaling sc : {RopeScaling::kNone, RopeScaling::kLinear, RopeScaling::kDynamic, RopeScaling::kLlama3,
                         RopeScaling::kYarn}) {
    SCOPED_TRACE(static_cast<int>(sc));
    s.rope.scaling = sc;
    s.rope.freq_divisors.clear();
    const RopeTable plain = compute_rope_table(s, 300);
    s.rope.freq_divisors = div;
    const RopeTable scaled = compute_rope_table(s, 300);
    std::vector<float> want(div.size());
    for (size_t i = 0; i < div.size(); ++i) want[i] = plain.inv_freq[i] / div[i];
    expect_rel_close(scaled.inv_freq, want, 3e-7, "inv_freq");
    EXPECT_EQ(scaled.attention_scaling, plain.attention_scaling);
  }
}

TEST(RopeFreqDivisors, InvalidDivisorsThrowModelLoad) {
  ModelSpec s;
  s.architecture = "llama";
  s.head_dim = 8;
  s.max_position = 64;
  for (const std::vector<float>& bad : std::vector<std::vector<float>>{
           {1.0f, 2.0f, 3.0f}, {1.0f, 2.0f, 3.0f, 4.0f, 5.0f}, {1.0f, 0.0f, 1.0f, 1.0f},
           {1.0f, 1.0f, std::numeric_limits<float>::quiet_NaN(), 1.0f}}) {
    s.rope.freq_divisors = bad;
    try {
      compute_rope_table(s);
      ADD_FAILURE() << "accepted " << bad.size() << " divisors";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kModelLoad) << e.what();
    }
  }
}

}  // namespace
}  // namespace eli
