// tests/cpp/test_safetensors.cc: the safetensors reader (runtime/model/safetensors.h): valid
// single and sharded files load zero-copy; every malformed case of the committed corpus
// (tests/data/malformed/hf/manifest.json, stage "weights") fails with kModelLoad and its message.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/core/json.h"
#include "runtime/model/safetensors.h"

namespace eli {
namespace {

const std::string kCorpus = std::string(ELI_TEST_DATA_DIR) + "/malformed/hf";

std::string make_temp_dir() {
  std::string tmpl = ::testing::TempDir() + "eli_st_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  const char* d = ::mkdtemp(buf.data());
  EXPECT_NE(d, nullptr);
  return d ? std::string(d) : std::string();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors file from header text and data bytes.
std::string st_file(std::string header, const std::string& data) {
  while (header.size() % 8 != 0) header += ' ';
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int k = 0; k < 8; ++k) out[k] = static_cast<char>((n >> (8 * k)) & 0xff);
  return out + header + data;
}

std::string floats(std::vector<float> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// Runs fn, expects an eli::Error of kind kModelLoad whose message holds `expect`; returns it.
template <typename Fn>
std::string expect_model_load_error(Fn fn, const std::string& expect, const std::string& what) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kModelLoad) << what << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find(expect), std::string::npos)
        << what << ": expected '" << expect << "' in: " << e.what();
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": not an eli::Error: " << e.what();
    return "";
  }
  ADD_FAILURE() << what << ": no error (expected '" << expect << "')";
  return "";
}

TEST(SafetensorsOpen, SingleFileZeroCopy) {
  std::string dir = make_temp_dir();
  std::string header = R"({"__metadata__":{"format":"pt"},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]},)"
                       R"("a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]}})";
  std::string data = std::string(12, '\x01') + floats({1.5f, -2.0f});
  write_file(dir + "/model.safetensors", st_file(header, data));
  for (const std::string& p : {dir, dir + "/model.safetensors"}) {
    auto src = open_safetensors(p);
    EXPECT_EQ(src->path(), p);
    ASSERT_EQ(src->tensors().size(), 2u);
    const TensorInfo& a = src->get("a");
    EXPECT_EQ(a.dtype, DType::kBF16);
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(a.nbytes, 12u);
    EXPECT_EQ(a.file, dir + "/model.safetensors");
    const TensorInfo& b = src->get("b");
    EXPECT_EQ(b.dtype, DType::kF32);
    ASSERT_EQ(b.nbytes, 8u);
    float vals[2];
    std::memcpy(vals, b.data, 8);
    EXPECT_EQ(vals[0], 1.5f);
    EXPECT_EQ(vals[1], -2.0f);
    EXPECT_EQ(b.data, a.data + 12);  // both point into the same map
    EXPECT_EQ(src->find("c"), nullptr);
    expect_model_load_error([&] { src->get("c"); }, "missing tensor c in " + p, "get");
  }
}

TEST(SafetensorsOpen, ScalarAndEmptyFile) {
  std::string dir = make_temp_dir();
  write_file(dir + "/s.safetensors",
             st_file(R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})", floats({3.0f})));
  auto src = open_safetensors(dir + "/s.safetensors");
  EXPECT_TRUE(src->get("s").shape.empty());
  EXPECT_EQ(src->get("s").nbytes, 4u);
  write_file(dir + "/e.safetensors", st_file("{}", ""));
  EXPECT_TRUE(open_safetensors(dir + "/e.safetensors")->tensors().empty());
}

TEST(SafetensorsOpen, MissingPathAndEmptyDir) {
  expect_model_load_error([] { open_safetensors("/nonexistent/eli/model"); }, "not found", "missing");
  std::string dir = make_temp_dir();
  expect_model_load_error([&] { open_safetensors(dir); }, "no model.safetensors", "empty dir");
  EXPECT_FALSE(has_safetensors(dir));
}

TEST(SafetensorsOpen, PickleFileRefused) {
  std::string dir = make_temp_dir();
  write_file(dir + "/model.pt", "junk");
  expect_model_load_error([&] { open_safetensors(dir + "/model.pt"); }, "never unpickles", "pt");
  write_file(dir + "/pytorch_model.bin.index.json", "{}");
  expect_model_load_error([&] { open_safetensors(dir + "/pytorch_model.bin.index.json"); }, "never unpickles",
                          "bin index");
}

TEST(SafetensorsCorpus, ValidDirsLoad) {
  auto single = open_safetensors(kCorpus + "/valid_tiny");
  EXPECT_EQ(single->tensors().size(), 11u);
  auto sharded = open_safetensors(kCorpus + "/valid_sharded");
  ASSERT_EQ(sharded->tensors().size(), 11u);
  // Same bytes whether read from one file or from shards.
  for (const auto& [name, t] : single->tensors()) {
    const TensorInfo& s = sharded->get(name);
    EXPECT_EQ(s.shape, t.shape) << name;
    ASSERT_EQ(s.nbytes, t.nbytes) << name;
    EXPECT_EQ(std::memcmp(s.data, t.data, t.nbytes), 0) << name;
  }
  // The index file itself may be named.
  EXPECT_EQ(open_safetensors(kCorpus + "/valid_sharded/model.safetensors.index.json")->tensors().size(), 11u);
}

TEST(SafetensorsCorpus, EveryWeightsCaseFails) {
  JsonValue manifest = read_json_file(kCorpus + "/manifest.json");
  int n = 0;
  for (const JsonValue& c : manifest.find("cases")->array()) {
    if (c.find("stage")->as_string() != "weights") continue;
    const std::string path = kCorpus + "/" + c.find("path")->as_string();
    std::string msg = expect_model_load_error([&] { open_safetensors(path); }, c.find("expect")->as_string(), path);
    // The message names the file (or directory) that failed.
    EXPECT_NE(msg.find(c.find("path")->as_string()), std::string::npos) << msg;
    ++n;
  }
  EXPECT_GE(n, 25);
}

TEST(SafetensorsSharded, HfCacheSymlinksAllowed) {
  // models--x/snapshots/REV/FILE -> ../../blobs/HASH is the Hugging Face cache layout.
  std::string root = make_temp_dir() + "/models--org--tiny";
  ASSERT_EQ(::mkdir(root.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((root + "/blobs").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((root + "/snapshots").c_str(), 0755), 0);
  std::string snap = root + "/snapshots/abc123";
  ASSERT_EQ(::mkdir(snap.c_str(), 0755), 0);
  const std::string src = kCorpus + "/valid_sharded/";
  for (const char* f : {"model.safetensors.index.json", "model-00001-of-00002.safetensors",
                        "model-00002-of-00002.safetensors"}) {
    std::ifstream in(src + f, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string blob = std::string("hash_") + f;
    write_file(root + "/blobs/" + blob, bytes);
    ASSERT_EQ(::symlink(("../../blobs/" + blob).c_str(), (snap + "/" + f).c_str()), 0);
  }
  EXPECT_EQ(open_safetensors(snap)->tensors().size(), 11u);
  // A link out of the cache entry is still refused.
  std::string other = make_temp_dir();
  std::string evil = snap + "/model-00002-of-00002.safetensors";
  ASSERT_EQ(::unlink(evil.c_str()), 0);
  write_file(other + "/x.safetensors", "x");
  ASSERT_EQ(::symlink((other + "/x.safetensors").c_str(), evil.c_str()), 0);
  expect_model_load_error([&] { open_safetensors(snap); }, "outside the model directory", "escape");
}

}  // namespace
}  // namespace eli
