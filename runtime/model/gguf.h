// runtime/model/gguf.h: a checked reader of GGUF v2/v3 model files (metadata + tensor table),
// memory-mapped, exposing tensors as a WeightSource.
//
// Invariants (all checked at open, every failure is eli::Error(kModelLoad) naming the file and the
// check): magic "GGUF", version 2 or 3; every count, string and array length is bounded by the bytes
// left in the file before anything is reserved, and by hard caps (GgufLimits): KV and tensor counts,
// metadata array elements, and the memory the parsed metadata and tensor table take (charged
// before each reservation, so a small file cannot make eli allocate many times its size); value
// types known, arrays not nested; keys and tensor names unique; 1..4 dims, each > 0, element and byte counts without overflow, innermost dim
// a multiple of the block size; general.alignment a power of two; tensor offsets aligned, ranges
// inside the file ("truncated: expected X bytes, got Y") and not overlapping. Tensor shapes are
// row-major outermost first (GGUF stores innermost first; reversed here).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/model/weight_source.h"

namespace eli {

// GGUF metadata value types, with their on-disk codes.
enum class GgufType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};
const char* gguf_type_name(GgufType type);

// One metadata value. Scalars: integers (and bool) in `i` (u64 above INT64_MAX: in `u` with
// `u_big` set), floats in `f`, strings in `s`. Arrays (type kArray, element type `elem_type`):
// strings in `strings`, integer/bool elements in `ints`, float elements in `floats`.
struct GgufValue {
  GgufType type = GgufType::kU8;
  GgufType elem_type = GgufType::kU8;  // arrays only
  int64_t i = 0;
  uint64_t u = 0;
  bool u_big = false;
  double f = 0.0;
  std::string s;
  std::vector<std::string> strings;
  std::vector<int64_t> ints;
  std::vector<double> floats;

  bool is_array() const { return type == GgufType::kArray; }
  bool is_integer() const;  // integer or bool scalar
  bool is_float() const { return type == GgufType::kF32 || type == GgufType::kF64; }
  size_t array_size() const;
};

// Hard caps of GgufFile::open. Real files: tens of KVs, a few thousand tensors, tens of MB of
// parsed metadata (a 256K-token vocabulary with merges is about 40 MB).
struct GgufLimits {
  uint64_t max_kvs = uint64_t{1} << 16;
  uint64_t max_tensors = uint64_t{1} << 16;
  uint64_t max_metadata_bytes = uint64_t{256} << 20;  // parsed KVs + tensor table, in memory
};

class GgufFile : public WeightSource {
 public:
  // Maps and checks the file; throws eli::Error(kModelLoad) on any failed check. `display` names
  // the file in messages and path() (default: path; e.g. the model directory's name of a resolved
  // Hugging Face cache blob).
  static std::unique_ptr<GgufFile> open(const std::string& path, const GgufLimits& limits = GgufLimits(),
                                        const std::string& display = "");

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the tensor data section
  // Estimated memory of the parsed metadata and tensor table (what GgufLimits bounds; errs high).
  uint64_t metadata_memory() const { return metadata_memory_; }

  // Metadata. (Not named find(): WeightSource::find looks up tensors.)
  const GgufValue* find_value(const std::string& key) const;
  bool has(const std::string& key) const { return find_value(key) != nullptr; }
  // All keys with their values, in file order.
  const std::vector<std::pair<std::string, GgufValue>>& kvs() const { return kvs_; }

  // Typed getters. The one-argument forms throw kModelLoad when the key is missing; all throw
  // kModelLoad when the value has the wrong type (ints accept any integer type or bool; floats
  // accept float or integer types).
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  // Arrays; throw kModelLoad when missing or of another element kind. An empty array of any
  // element type is returned as an empty vector.
  const std::vector<std::string>& get_string_array(const std::string& key) const;
  const std::vector<int64_t>& get_int_array(const std::string& key) const;
  const std::vector<double>& get_float_array(const std::string& key) const;

  // Tensor names in file order (tensors() is sorted by name).
  const std::vector<std::string>& tensor_order() const { return tensor_order_; }

 private:
  GgufFile() = default;
  const GgufValue& require(const std::string& key) const;

  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  uint64_t metadata_memory_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kvs_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<std::string> tensor_order_;

  friend class GgufParser;
};

}  // namespace eli
