// tests/cpp/test_model_files.cc: open_model_files (runtime/model/model_files.h) as a whole:
//   - containment (model_dir.h, issue 20 item 7): a symlink out of the model directory is refused
//     for every file eli opens there (config.json, model.safetensors, the index, a .gguf), without
//     quoting a byte of the target; FIFOs are refused without blocking; links that stay inside,
//     and the Hugging Face cache's snapshots/REV -> ../../blobs links, load;
//   - every failure to open a model is kModelLoad with a clear message (issue 19): missing path,
//     empty directory, weights without config, unreadable entries, link loops, two .gguf files;
//   - tensors against the config (issue 20 item 18): the committed corpus cases of stage "model".
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <string>
#include <vector>

#include "eli/error.h"
#include "runtime/core/json.h"
#include "runtime/model/model_files.h"

namespace eli {
namespace {

const std::string kData = ELI_TEST_DATA_DIR;
const std::string kCorpus = kData + "/malformed/hf";

std::string make_temp_dir() {
  std::string tmpl = ::testing::TempDir() + "eli_mf_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  const char* d = ::mkdtemp(buf.data());
  EXPECT_NE(d, nullptr);
  return d ? std::string(d) : std::string();
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void copy_file(const std::string& from, const std::string& to) { write_file(to, read_all(from)); }

// A copy of the corpus's valid tiny model (config.json + model.safetensors) in a fresh directory.
std::string tiny_model_dir() {
  const std::string dir = make_temp_dir();
  copy_file(kCorpus + "/valid_tiny/config.json", dir + "/config.json");
  copy_file(kCorpus + "/valid_tiny/model.safetensors", dir + "/model.safetensors");
  return dir;
}

// A file outside every model directory, shaped like /etc/passwd.
const char kSecret[] = "root:x:0:0:eli-test-secret:/root:/bin/bash\n";
std::string secret_file() {
  static const std::string path = [] {
    const std::string p = make_temp_dir() + "/passwd";
    write_file(p, kSecret);
    return p;
  }();
  return path;
}

// Runs open_model_files(path) on another thread (so that a regression that blocks on a FIFO fails
// instead of hanging the suite); expects kModelLoad containing `expect`; returns the message.
std::string expect_load_error(const std::string& path, const std::string& expect,
                              const std::string& fifo_to_release = "") {
  auto result = std::async(std::launch::async, [path]() -> std::string {
    try {
      open_model_files(path);
    } catch (const Error& e) {
      return std::string(e.kind() == ErrorKind::kModelLoad ? "" : "WRONG KIND: ") + e.what();
    } catch (const std::exception& e) {
      return std::string("NOT AN eli::Error: ") + e.what();
    }
    return "NO ERROR";
  });
  if (result.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    // A watchdog, not a timing check: the open blocked (on a FIFO). Unblock it, then fail.
    if (!fifo_to_release.empty()) ::close(::open(fifo_to_release.c_str(), O_WRONLY | O_NONBLOCK));
    ADD_FAILURE() << path << ": the open blocked";
    result.wait();
    return "";
  }
  const std::string msg = result.get();
  EXPECT_EQ(msg.find("WRONG KIND"), std::string::npos) << msg;
  EXPECT_NE(msg.find(expect), std::string::npos) << path << ": expected '" << expect << "' in: " << msg;
  return msg;
}

void expect_no_secret(const std::string& msg) {
  EXPECT_EQ(msg.find("root:x"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("eli-test-secret"), std::string::npos) << msg;
  // Nor the first 8 bytes read as a little-endian u64 (what the safetensors header length was).
  uint64_t n = 0;
  std::memcpy(&n, kSecret, 8);
  EXPECT_EQ(msg.find(std::to_string(n)), std::string::npos) << msg;
}

// ---- containment -------------------------------------------------------------------------------

TEST(ModelFilesContainment, SymlinkOutOfTheDirectoryIsRefusedForEveryFile) {
  for (const char* entry : {"model.safetensors", "config.json"}) {
    SCOPED_TRACE(entry);
    const std::string dir = tiny_model_dir();
    const std::string link = dir + "/" + entry;
    ASSERT_EQ(::unlink(link.c_str()), 0);
    ASSERT_EQ(::symlink(secret_file().c_str(), link.c_str()), 0);
    const std::string msg = expect_load_error(dir, "outside the model directory (symlink)");
    EXPECT_NE(msg.find(link), std::string::npos) << msg;  // names the entry
    expect_no_secret(msg);
  }
  // The index of a sharded model, and a .gguf found in a directory.
  const std::string sharded = make_temp_dir();
  copy_file(kCorpus + "/valid_tiny/config.json", sharded + "/config.json");
  ASSERT_EQ(::symlink(secret_file().c_str(), (sharded + "/model.safetensors.index.json").c_str()), 0);
  expect_no_secret(expect_load_error(sharded, "outside the model directory (symlink)"));
  const std::string gguf_dir = make_temp_dir();
  ASSERT_EQ(::symlink(secret_file().c_str(), (gguf_dir + "/model.gguf").c_str()), 0);
  expect_no_secret(expect_load_error(gguf_dir, "outside the model directory (symlink)"));
}

TEST(ModelFilesContainment, CorpusCasesNeverQuoteTheTarget) {
  JsonValue manifest = read_json_file(kCorpus + "/manifest.json");
  const std::string secret = read_all(kCorpus + "/" + manifest.find("secret_file")->as_string());
  ASSERT_EQ(secret.compare(0, 8, "root:x:0"), 0);
  int n = 0;
  for (const JsonValue& c : manifest.find("cases")->array()) {
    const std::string name = c.find("path")->as_string();
    if (name.compare(0, 10, "h5_symlink") != 0) continue;
    const std::string msg = expect_load_error(kCorpus + "/" + name, c.find("expect")->as_string());
    EXPECT_EQ(msg.find("root:x"), std::string::npos) << msg;
    ++n;
  }
  EXPECT_GE(n, 5);
}

TEST(ModelFilesContainment, FifosAreRefusedWithoutBlocking) {
  // model.safetensors, config.json and a .gguf as FIFOs inside the directory, and a FIFO named
  // directly: none may block (nothing ever writes to them).
  for (const char* entry : {"model.safetensors", "config.json"}) {
    SCOPED_TRACE(entry);
    const std::string dir = tiny_model_dir();
    const std::string fifo = dir + "/" + entry;
    ASSERT_EQ(::unlink(fifo.c_str()), 0);
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    expect_load_error(dir, "not a regular file", fifo);
  }
  const std::string dir = make_temp_dir();
  const std::string fifo = dir + "/model.gguf";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_load_error(dir, "not a regular file", fifo);
  expect_load_error(fifo, "not a regular file", fifo);
  // A symlink (inside) to a FIFO (inside) is no better.
  const std::string linked = tiny_model_dir();
  ASSERT_EQ(::unlink((linked + "/model.safetensors").c_str()), 0);
  ASSERT_EQ(::mkfifo((linked + "/weights.fifo").c_str(), 0600), 0);
  ASSERT_EQ(::symlink("weights.fifo", (linked + "/model.safetensors").c_str()), 0);
  expect_load_error(linked, "not a regular file", linked + "/weights.fifo");
}

TEST(ModelFilesContainment, LinksThatStayInsideLoad) {
  const std::string dir = make_temp_dir();
  ASSERT_EQ(::mkdir((dir + "/v1").c_str(), 0755), 0);
  copy_file(kCorpus + "/valid_tiny/config.json", dir + "/v1/config.json");
  copy_file(kCorpus + "/valid_tiny/model.safetensors", dir + "/v1/weights.safetensors");
  ASSERT_EQ(::symlink("v1/config.json", (dir + "/config.json").c_str()), 0);
  ASSERT_EQ(::symlink("v1/weights.safetensors", (dir + "/model.safetensors").c_str()), 0);
  ModelFiles m = open_model_files(dir);
  EXPECT_EQ(m.weights->tensors().size(), 11u);
  // Messages and TensorInfo::file use the name in the model directory, not the link target.
  EXPECT_EQ(m.weights->get("model.norm.weight").file, dir + "/model.safetensors");
  // A model directory that is itself a symlink is the user's choice.
  const std::string alias = make_temp_dir() + "/alias";
  ASSERT_EQ(::symlink(dir.c_str(), alias.c_str()), 0);
  EXPECT_EQ(open_model_files(alias).weights->tensors().size(), 11u);
  // So is a .gguf file named directly, wherever its link points.
  const std::string named = make_temp_dir() + "/named.gguf";
  ASSERT_EQ(::symlink((kData + "/gguf/tiny_llama.gguf").c_str(), named.c_str()), 0);
  EXPECT_EQ(open_model_files(named).format, "gguf");
}

// models--ORG--NAME/snapshots/REV/FILE -> ../../blobs/HASH, as huggingface_hub writes it.
std::string hf_cache_snapshot(const std::string& repo_name, const std::vector<std::string>& files,
                              const std::string& src_dir, std::string* repo_out = nullptr) {
  const std::string repo = make_temp_dir() + "/" + repo_name;
  EXPECT_EQ(::mkdir(repo.c_str(), 0755), 0);
  EXPECT_EQ(::mkdir((repo + "/blobs").c_str(), 0755), 0);
  EXPECT_EQ(::mkdir((repo + "/snapshots").c_str(), 0755), 0);
  const std::string snap = repo + "/snapshots/0123abcd";
  EXPECT_EQ(::mkdir(snap.c_str(), 0755), 0);
  for (const std::string& f : files) {
    const std::string blob = "sha256_" + f;
    copy_file(src_dir + "/" + f, repo + "/blobs/" + blob);
    EXPECT_EQ(::symlink(("../../blobs/" + blob).c_str(), (snap + "/" + f).c_str()), 0);
  }
  if (repo_out != nullptr) *repo_out = repo;
  return snap;
}

TEST(ModelFilesContainment, HuggingFaceCacheSnapshotsLoad) {
  const std::string snap =
      hf_cache_snapshot("models--org--tiny", {"config.json", "model.safetensors"}, kCorpus + "/valid_tiny");
  ModelFiles m = open_model_files(snap);
  EXPECT_EQ(m.format, "safetensors");
  EXPECT_EQ(m.weights->tensors().size(), 11u);
  const std::string sharded = hf_cache_snapshot(
      "models--org--sharded",
      {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
       "model-00002-of-00002.safetensors"},
      kCorpus + "/valid_sharded");
  EXPECT_EQ(open_model_files(sharded).weights->tensors().size(), 11u);
  std::string repo;
  const std::string gguf = hf_cache_snapshot("models--org--tiny-gguf", {"tiny_llama.gguf"}, kData + "/gguf", &repo);
  ModelFiles g = open_model_files(gguf);
  EXPECT_EQ(g.format, "gguf");
  EXPECT_EQ(g.path, gguf + "/tiny_llama.gguf");  // the snapshot's name, not the blob's
  // A snapshot link that leaves the repo is refused, even through blobs/.
  ASSERT_EQ(::symlink(secret_file().c_str(), (repo + "/blobs/evil").c_str()), 0);
  ASSERT_EQ(::unlink((gguf + "/tiny_llama.gguf").c_str()), 0);
  ASSERT_EQ(::symlink("../../blobs/evil", (gguf + "/tiny_llama.gguf").c_str()), 0);
  expect_no_secret(expect_load_error(gguf, "outside the model directory (symlink)"));
}

TEST(ModelFilesContainment, BlobsAreOnlyTrustedInsideAHuggingFaceRepo) {
  // The same layout under a directory not named models--*: blobs/ is outside the model directory.
  const std::string snap =
      hf_cache_snapshot("not-a-cache-repo", {"config.json", "model.safetensors"}, kCorpus + "/valid_tiny");
  expect_load_error(snap, "outside the model directory (symlink)");
}

// ---- every failure to open is kModelLoad -----------------------------------------------------

TEST(ModelFilesErrors, EveryOpenFailureIsModelLoad) {
  expect_load_error("/nonexistent/eli/model", "no such file or directory");
  expect_load_error("", "empty model path");
  const std::string empty = make_temp_dir();
  expect_load_error(empty, "not a model directory: it holds neither a config.json");
  const std::string no_config = tiny_model_dir();
  ASSERT_EQ(::unlink((no_config + "/config.json").c_str()), 0);
  expect_load_error(no_config, "has safetensors weights but no config.json");
  const std::string no_weights = tiny_model_dir();
  ASSERT_EQ(::unlink((no_weights + "/model.safetensors").c_str()), 0);
  expect_load_error(no_weights, "no model.safetensors or model.safetensors.index.json");
  const std::string two = make_temp_dir();
  copy_file(kData + "/gguf/tiny_llama.gguf", two + "/a.gguf");
  copy_file(kData + "/gguf/tiny_qwen2.gguf", two + "/b.gguf");
  expect_load_error(two, "holds 2 .gguf files (a.gguf, b.gguf); name one of them");
  const std::string loop = tiny_model_dir();
  ASSERT_EQ(::unlink((loop + "/model.safetensors").c_str()), 0);
  ASSERT_EQ(::symlink("model.safetensors", (loop + "/model.safetensors").c_str()), 0);
  expect_load_error(loop, "cannot be resolved (a broken symlink)");
  const std::string dangling = tiny_model_dir();
  ASSERT_EQ(::unlink((dangling + "/config.json").c_str()), 0);
  ASSERT_EQ(::symlink("gone.json", (dangling + "/config.json").c_str()), 0);
  expect_load_error(dangling, "a broken symlink");
  const std::string dir_entry = tiny_model_dir();
  ASSERT_EQ(::unlink((dir_entry + "/config.json").c_str()), 0);
  ASSERT_EQ(::mkdir((dir_entry + "/config.json").c_str(), 0755), 0);
  expect_load_error(dir_entry, "is a directory, not a file");
  const std::string weights_dir = tiny_model_dir();
  ASSERT_EQ(::unlink((weights_dir + "/model.safetensors").c_str()), 0);
  ASSERT_EQ(::mkdir((weights_dir + "/model.safetensors").c_str(), 0755), 0);
  expect_load_error(weights_dir, "is a directory, not a file");
  const std::string not_gguf = make_temp_dir() + "/x.gguf";
  write_file(not_gguf, "definitely not a model file");
  expect_load_error(not_gguf, "bad magic");
  // Permissions (root reads everything, so only an unprivileged run can exercise them).
  if (::geteuid() != 0) {
    const std::string locked = tiny_model_dir();
    ASSERT_EQ(::chmod((locked + "/model.safetensors").c_str(), 0), 0);
    expect_load_error(locked, "cannot open: Permission denied");
    const std::string unlisted = make_temp_dir();
    ASSERT_EQ(::chmod(unlisted.c_str(), 0300), 0);
    expect_load_error(unlisted, "cannot list the directory: Permission denied");
  }
}

// ---- tensors against the config: the corpus cases of stage "model" ----------------------------

TEST(ModelFilesCorpus, ModelStageCasesFail) {
  int n = 0;
  JsonValue hf = read_json_file(kCorpus + "/manifest.json");
  for (const JsonValue& c : hf.find("cases")->array()) {
    if (c.find("stage")->as_string() != "model") continue;
    const std::string path = kCorpus + "/" + c.find("path")->as_string();
    EXPECT_NE(expect_load_error(path, c.find("expect")->as_string()).find(c.find("path")->as_string()),
              std::string::npos);
    ++n;
  }
  const std::string gguf_dir = kData + "/malformed/gguf/";
  JsonValue gguf = read_json_file(gguf_dir + "manifest.json");
  for (const JsonValue& c : gguf.array()) {
    if (c.find("stage")->as_string() != "model") continue;
    expect_load_error(gguf_dir + c.find("path")->as_string(), c.find("expect")->as_string());
    ++n;
  }
  EXPECT_GE(n, 5);
}

TEST(ModelFilesCorpus, ExtraTensorsAndInnerLinksLoad) {
  JsonValue manifest = read_json_file(kCorpus + "/manifest.json");
  for (const JsonValue& name : manifest.find("valid_extra")->array()) {
    ModelFiles m = open_model_files(kCorpus + "/" + name.as_string());
    EXPECT_GE(m.weights->tensors().size(), 11u) << name.as_string();
  }
  // The extra tensors are there, and simply not read.
  ModelFiles m = open_model_files(kCorpus + "/valid_extra_tensors");
  EXPECT_NE(m.weights->find("model.layers.0.self_attn.rotary_emb.inv_freq"), nullptr);
  EXPECT_NE(m.weights->find("vision_tower.blocks.40.weight"), nullptr);
}

}  // namespace
}  // namespace eli
