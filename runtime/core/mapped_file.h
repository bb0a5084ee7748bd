// runtime/core/mapped_file.h: a read-only memory map of a whole file.
//
// Invariants: size() is the size observed by fstat at open time, and the mapping covers exactly
// that; data() stays valid for the object's lifetime. Open failures throw eli::Error(kModelLoad)
// naming the path. An empty file maps to data() == nullptr, size() == 0.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace eli {

class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace eli
