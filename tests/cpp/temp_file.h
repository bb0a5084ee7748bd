// tests/cpp/temp_file.h: TempFile, a temporary file holding given bytes, removed at scope end. It is
// made in `dir` when given and writable (e.g. a real disk filesystem, where O_DIRECT usually works),
// else in /tmp (which may be tmpfs).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace eli {

class TempFile {
 public:
  explicit TempFile(const std::vector<uint8_t>& bytes, const std::string& dir = "") {
    int fd = -1;
    if (!dir.empty()) fd = make(dir + "/eli_test_XXXXXX");
    if (fd < 0) fd = make("/tmp/eli_test_XXXXXX");
    EXPECT_GE(fd, 0);
    if (fd < 0) return;
    if (!bytes.empty()) EXPECT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    close(fd);
  }
  ~TempFile() {
    if (!path_.empty()) std::remove(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int make(const std::string& tmpl) {
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back(0);
    const int fd = mkstemp(buf.data());
    if (fd >= 0) path_ = buf.data();
    return fd;
  }
  std::string path_;
};

}  // namespace eli
