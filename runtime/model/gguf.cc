// runtime/model/gguf.cc: GGUF v2/v3 parsing with every size from the file checked before use.
//
// Layout: "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv x (string key, u32 type, value);
// n_tensors x (string name, u32 n_dims, u64 dims[n_dims] innermost first, u32 ggml type,
// u64 offset); padding to general.alignment; tensor data (offsets relative to its start).
// Strings are u64 length + bytes (no terminator). All little-endian.
//
// Memory: every count is checked against the bytes left and a hard cap, and the memory that the
// parsed form will take (vector slots, string heap bytes, map nodes: an estimate that errs high)
// is charged against GgufLimits::max_metadata_bytes BEFORE it is reserved or built. A KV costs
// ~250 bytes in memory for 13 in the file and a tensor entry ~500 for 32, so bytes-left checks
// alone would let a 63 MB file take ~1 GB.
#include "runtime/model/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "eli/error.h"
#include "runtime/core/checked_math.h"
#include "runtime/core/mapped_file.h"

namespace eli {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747u;  // "GGUF" read little-endian
constexpr uint64_t kMaxKeyLength = 65535;
constexpr uint32_t kMaxDims = 4;
// Total array elements over all metadata (real files: ~1M, e.g. 3 tokenizer arrays of 256K). Bounds
// the DOM: a u8 array element costs 8 bytes here and a string 32+, so bytes-left checks alone
// would let a large file amplify 8-32x in memory.
constexpr uint64_t kMaxMetadataArrayElements = uint64_t{1} << 24;
constexpr uint64_t kMaxAlignment = 1ull << 30;
// Smallest possible encodings, used to bound counts by the bytes left.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;          // empty key, type, u8 value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // empty name, 1 dim, type, offset

// Returns n if p[0, n) is valid UTF-8 (no overlong forms, no encoded surrogates, nothing past
// U+10FFFF), else the offset of the first bad byte. GGUF strings are UTF-8 by the format; a string
// that is not could not be handed to Python (or a tokenizer) as text.
uint64_t invalid_utf8_at(const uint8_t* p, uint64_t n) {
  uint64_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    if (c < 0x80) { ++i; continue; }
    uint64_t len = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1Fu; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0Fu; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07u; }
    else return i;
    if (n - i < len) return i;
    for (uint64_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3Fu);
    }
    static constexpr uint32_t kMinCp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinCp[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return i;
    i += len;
  }
  return n;
}

// Memory of a std::string of n bytes: the object, plus a heap block past the 15 bytes libstdc++
// keeps inline (n + 1, rounded up, plus the allocator's header: counted as n + 32).
constexpr uint64_t string_cost(uint64_t n) { return sizeof(std::string) + (n > 15 ? n + 32 : 0); }
// Per-entry overhead of a node-based map beyond key and value: node links, cached hash, the
// allocator's header and rounding, bucket slots (up to 2 per entry after growth).
constexpr uint64_t kMapNodeBytes = 64;

constexpr const char* kSupportedTensorTypes =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS";

// ggml type codes -> (name, eli dtype or none).
struct GgmlType {
  const char* name;
  bool supported;
  DType dtype;
};
GgmlType ggml_type(uint32_t code) {
  switch (code) {
    case 0: return {"F32", true, DType::kF32};
    case 1: return {"F16", true, DType::kF16};
    case 2: return {"Q4_0", true, DType::kQ4_0};
    case 3: return {"Q4_1", true, DType::kQ4_1};
    case 6: return {"Q5_0", true, DType::kQ5_0};
    case 7: return {"Q5_1", true, DType::kQ5_1};
    case 8: return {"Q8_0", true, DType::kQ8_0};
    case 10: return {"Q2_K", true, DType::kQ2_K};
    case 11: return {"Q3_K", true, DType::kQ3_K};
    case 12: return {"Q4_K", true, DType::kQ4_K};
    case 13: return {"Q5_K", true, DType::kQ5_K};
    case 14: return {"Q6_K", true, DType::kQ6_K};
    case 20: return {"IQ4_NL", true, DType::kIQ4_NL};
    case 23: return {"IQ4_XS", true, DType::kIQ4_XS};
    case 30: return {"BF16", true, DType::kBF16};
    case 4: return {"Q4_2 (removed)", false, DType::kF32};
    case 5: return {"Q4_3 (removed)", false, DType::kF32};
    case 9: return {"Q8_1", false, DType::kF32};
    case 15: return {"Q8_K", false, DType::kF32};
    case 16: return {"IQ2_XXS", false, DType::kF32};
    case 17: return {"IQ2_XS", false, DType::kF32};
    case 18: return {"IQ3_XXS", false, DType::kF32};
    case 19: return {"IQ1_S", false, DType::kF32};
    case 21: return {"IQ3_S", false, DType::kF32};
    case 22: return {"IQ2_S", false, DType::kF32};
    case 24: return {"I8", false, DType::kF32};
    case 25: return {"I16", false, DType::kF32};
    case 26: return {"I32", false, DType::kF32};
    case 27: return {"I64", false, DType::kF32};
    case 28: return {"F64", false, DType::kF32};
    case 29: return {"IQ1_M", false, DType::kF32};
    case 34: return {"TQ1_0", false, DType::kF32};
    case 35: return {"TQ2_0", false, DType::kF32};
    case 39: return {"MXFP4", false, DType::kF32};
    default: return {nullptr, false, DType::kF32};
  }
}

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kF64); }

uint64_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::kU8: case GgufType::kI8: case GgufType::kBool: return 1;
    case GgufType::kU16: case GgufType::kI16: return 2;
    case GgufType::kU32: case GgufType::kI32: case GgufType::kF32: return 4;
    case GgufType::kU64: case GgufType::kI64: case GgufType::kF64: return 8;
    case GgufType::kString: return 8;  // at least the length field
    case GgufType::kArray: return 12;  // at least type + count
  }
  return 1;
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  static const char* kNames[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                 "bool", "string", "array", "u64", "i64", "f64"};
  auto i = static_cast<uint32_t>(type);
  return i < sizeof(kNames) / sizeof(kNames[0]) ? kNames[i] : "unknown";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::kU8: case GgufType::kI8: case GgufType::kU16: case GgufType::kI16:
    case GgufType::kU32: case GgufType::kI32: case GgufType::kU64: case GgufType::kI64:
    case GgufType::kBool:
      return true;
    default:
      return false;
  }
}

size_t GgufValue::array_size() const {
  if (!is_array()) return 0;
  return strings.size() + ints.size() + floats.size();
}

// Reads the mapped bytes with bounds checks; every failure names the file and the check.
class GgufParser {
 public:
  GgufParser(GgufFile& out, const MappedFile& file, const GgufLimits& limits)
      : out_(out), limits_(limits), path_(file.path()), data_(file.data()), size_(file.size()) {}

  void parse();

 private:
  template <typename... Args>
  [[noreturn]] void fail(const Args&... parts) const {
    ELI_THROW(kModelLoad, path_, ": GGUF ", parts...);
  }
  uint64_t remaining() const { return size_ - pos_; }
  void need(uint64_t n, const char* what) const {
    if (n > remaining())
      fail("truncated: ", what, " needs ", n, " bytes at offset ", pos_, ", file has ", size_, " bytes");
  }
  // Adds `bytes` to the memory the parsed metadata will take; fails past the limit.
  void charge(uint64_t bytes, const char* what) {
    if (bytes > limits_.max_metadata_bytes - memory_)
      fail("metadata would take more than the limit of ", limits_.max_metadata_bytes, " bytes of memory (at ", what,
           ", offset ", pos_, "): the file declares far more metadata than a real model has");
    memory_ += bytes;
    out_.metadata_memory_ = memory_;
  }
  void charge_n(uint64_t count, uint64_t each, const char* what) {
    uint64_t bytes = 0;
    if (!checked_mul_u64(count, each, &bytes)) bytes = std::numeric_limits<uint64_t>::max();
    charge(bytes, what);
  }
  // Checks a declared count: at most `cap`, and at most what the bytes left can encode at
  // `min_bytes` each.
  void check_count(const char* what, uint64_t count, uint64_t cap, uint64_t min_bytes) const {
    if (count > cap) fail(what, " ", count, " exceeds the limit of ", cap);
    if (count > remaining() / min_bytes)
      fail(what, " ", count, " cannot fit in the file (", remaining(), " bytes left)");
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what, uint64_t max_len = std::numeric_limits<uint64_t>::max()) {
    const uint64_t len = read<uint64_t>(what);
    if (len > remaining())
      fail(what, " length ", len, " at offset ", pos_ - 8, " runs past the end of the file (", remaining(),
           " bytes left)");
    if (len > max_len) fail(what, " length ", len, " exceeds the limit ", max_len);
    charge(string_cost(len) - sizeof(std::string), what);  // the slot itself is charged by the caller
    const uint64_t bad = invalid_utf8_at(data_ + pos_, len);
    if (bad != len) fail(what, " at offset ", pos_, " is not valid UTF-8 (bad byte at offset ", pos_ + bad, ")");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }
  GgufType read_type(const std::string& key) {
    const uint32_t t = read<uint32_t>("value type");
    if (!valid_value_type(t)) fail("unknown value type ", t, " for key '", key, "'");
    return static_cast<GgufType>(t);
  }
  void read_scalar(GgufType t, GgufValue& v, const std::string& key);
  void read_array(GgufValue& v, const std::string& key);
  void parse_tensor_infos(uint64_t n_tensors);

  GgufFile& out_;
  const GgufLimits limits_;
  uint64_t memory_ = 0;          // bytes charged so far (<= limits_.max_metadata_bytes)
  uint64_t array_elements_ = 0;  // metadata array elements read so far (<= kMaxMetadataArrayElements)
  std::string path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  struct Pending {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t offset, nbytes;
  };
  std::vector<Pending> pending_;
};

void GgufParser::read_scalar(GgufType t, GgufValue& v, const std::string& key) {
  v.type = t;
  switch (t) {
    case GgufType::kU8: v.i = read<uint8_t>("u8 value"); break;
    case GgufType::kI8: v.i = read<int8_t>("i8 value"); break;
    case GgufType::kU16: v.i = read<uint16_t>("u16 value"); break;
    case GgufType::kI16: v.i = read<int16_t>("i16 value"); break;
    case GgufType::kU32: v.i = read<uint32_t>("u32 value"); break;
    case GgufType::kI32: v.i = read<int32_t>("i32 value"); break;
    case GgufType::kI64: v.i = read<int64_t>("i64 value"); break;
    case GgufType::kU64:
      v.u = read<uint64_t>("u64 value");
      if (v.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) v.u_big = true;
      else v.i = static_cast<int64_t>(v.u);
      break;
    case GgufType::kF32: v.f = read<float>("f32 value"); break;
    case GgufType::kF64: v.f = read<double>("f64 value"); break;
    case GgufType::kBool: {
      const uint8_t b = read<uint8_t>("bool value");
      if (b > 1) fail("bool value ", int(b), " for key '", key, "' is not 0 or 1");
      v.i = b;
      break;
    }
    case GgufType::kString: v.s = read_string("string value"); break;
    case GgufType::kArray: read_array(v, key); break;
  }
}

void GgufParser::read_array(GgufValue& v, const std::string& key) {
  v.type = GgufType::kArray;
  const uint32_t et = read<uint32_t>("array element type");
  if (!valid_value_type(et)) fail("unknown array element type ", et, " for key '", key, "'");
  v.elem_type = static_cast<GgufType>(et);
  if (v.elem_type == GgufType::kArray) fail("nested array for key '", key, "' is not supported");
  const uint64_t count = read<uint64_t>("array length");
  uint64_t min_bytes = 0;
  if (!checked_mul_u64(count, scalar_size(v.elem_type), &min_bytes) || min_bytes > remaining())
    fail("array length ", count, " of ", gguf_type_name(v.elem_type), " for key '", key,
         "' overflows or runs past the end of the file (", remaining(), " bytes left)");
  if (count > kMaxMetadataArrayElements - array_elements_)
    fail("array length ", count, " for key '", key, "' exceeds the limit of ", kMaxMetadataArrayElements,
         " metadata array elements per file");
  array_elements_ += count;
  const size_t n = static_cast<size_t>(count);
  charge_n(count, v.elem_type == GgufType::kString ? sizeof(std::string) : uint64_t{8}, "array elements");
  GgufValue elem;
  if (v.elem_type == GgufType::kString) {
    v.strings.reserve(n);
    for (size_t k = 0; k < n; ++k) v.strings.push_back(read_string("array string"));
  } else if (v.elem_type == GgufType::kF32 || v.elem_type == GgufType::kF64) {
    v.floats.reserve(n);
    for (size_t k = 0; k < n; ++k) {
      read_scalar(v.elem_type, elem, key);
      v.floats.push_back(elem.f);
    }
  } else {
    v.ints.reserve(n);
    for (size_t k = 0; k < n; ++k) {
      read_scalar(v.elem_type, elem, key);
      if (elem.u_big) fail("u64 array element ", elem.u, " for key '", key, "' exceeds int64");
      v.ints.push_back(elem.i);
    }
  }
}

void GgufParser::parse() {
  if (size_ < 24) fail("truncated header: file has ", size_, " bytes, the header needs 24");
  const uint32_t magic = read<uint32_t>("magic");
  if (magic != kGgufMagic) ELI_THROW(kModelLoad, path_, ": not a GGUF file (bad magic)");
  const uint32_t version = read<uint32_t>("version");
  if (version != 2 && version != 3) fail("unsupported version ", version, " (expected 2 or 3)");
  out_.version_ = version;
  const uint64_t n_tensors = read<uint64_t>("tensor count");
  const uint64_t n_kv = read<uint64_t>("kv count");
  check_count("kv count", n_kv, limits_.max_kvs, kMinKvBytes);
  check_count("tensor count", n_tensors, limits_.max_tensors, kMinTensorInfoBytes);

  // Each KV: its slot in kvs_, and an index node holding a copy of the key.
  charge_n(n_kv, sizeof(std::pair<std::string, GgufValue>) + sizeof(std::string) + kMapNodeBytes, "the kv table");
  out_.kvs_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = read_string("key", kMaxKeyLength);
    charge(string_cost(key.size()) - sizeof(std::string), "key");  // the index's copy of the key
    if (out_.kv_index_.count(key)) fail("duplicate key '", key, "'");
    GgufValue value;
    const GgufType t = read_type(key);
    read_scalar(t, value, key);
    out_.kv_index_.emplace(key, out_.kvs_.size());
    out_.kvs_.emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* a = out_.find_value("general.alignment")) {
    if (!a->is_integer() || a->u_big) fail("general.alignment is not an integer");
    const int64_t al = a->i;
    if (al <= 0 || (al & (al - 1)) != 0 || static_cast<uint64_t>(al) > kMaxAlignment)
      fail("general.alignment ", al, " is not a power of two in [1, ", kMaxAlignment, "]");
    out_.alignment_ = static_cast<uint64_t>(al);
  }

  parse_tensor_infos(n_tensors);
}

void GgufParser::parse_tensor_infos(uint64_t n_tensors) {
  check_count("tensor count", n_tensors, limits_.max_tensors, kMinTensorInfoBytes);
  // Each tensor: a Pending, a TensorInfo in the name map, the names in `seen` and tensor_order_
  // (the name's heap bytes are charged as it is read, times the 4 further copies below).
  constexpr uint64_t kPerTensor = sizeof(Pending) + sizeof(TensorInfo) + 5 * sizeof(std::string) +
                                  kMaxDims * sizeof(int64_t) + 16 + 2 * kMapNodeBytes;
  // (kPerTensor plus each TensorInfo's copy of the file name; tensor_order_ grows by doubling.)
  charge_n(n_tensors, kPerTensor + string_cost(path_.size()), "the tensor table");
  pending_.reserve(static_cast<size_t>(n_tensors));
  std::unordered_map<std::string, size_t> seen;
  for (uint64_t t = 0; t < n_tensors; ++t) {
    Pending p;
    p.name = read_string("tensor name", kMaxKeyLength);
    charge(4 * (string_cost(p.name.size()) - sizeof(std::string)), "tensor name");
    if (seen.count(p.name)) fail("duplicate tensor name '", p.name, "'");
    const uint32_t n_dims = read<uint32_t>("tensor n_dims");
    if (n_dims == 0 || n_dims > kMaxDims)
      fail("tensor '", p.name, "' has ", n_dims, " dims (expected 1..", kMaxDims, ")");
    uint64_t dims[kMaxDims];
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      dims[d] = read<uint64_t>("tensor dim");
      if (dims[d] == 0 || dims[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("tensor '", p.name, "' dim ", d, " is ", static_cast<int64_t>(dims[d]), " (must be > 0)");
      if (!checked_mul(numel, static_cast<int64_t>(dims[d]), &numel))
        fail("tensor '", p.name, "' element count overflows");
    }
    const uint32_t type_code = read<uint32_t>("tensor type");
    const GgmlType gt = ggml_type(type_code);
    if (!gt.supported) {
      fail("tensor '", p.name, "' has type ", gt.name != nullptr ? gt.name : "unknown", " (ggml type ", type_code,
           "), which eli cannot load (supported: ", kSupportedTensorTypes, ")");
    }
    p.dtype = gt.dtype;
    const DTypeInfo& info = dtype_info(p.dtype);
    if (static_cast<int64_t>(dims[0]) % info.block_elems != 0)
      fail("tensor '", p.name, "' innermost dim ", dims[0], " is not a multiple of the ", gt.name,
           " block size ", info.block_elems);
    int64_t nbytes = 0;
    if (!checked_mul(numel / info.block_elems, info.block_bytes, &nbytes))
      fail("tensor '", p.name, "' byte size overflows");
    p.nbytes = static_cast<uint64_t>(nbytes);
    p.offset = read<uint64_t>("tensor offset");
    if (p.offset % out_.alignment_ != 0)
      fail("tensor '", p.name, "' offset ", p.offset, " is not aligned to ", out_.alignment_);
    for (int d = static_cast<int>(n_dims) - 1; d >= 0; --d) p.shape.push_back(static_cast<int64_t>(dims[d]));
    seen.emplace(p.name, pending_.size());
    pending_.push_back(std::move(p));
  }

  // Data section: aligned start; every range inside the file; no overlaps.
  uint64_t start = pos_;
  const uint64_t pad = (out_.alignment_ - start % out_.alignment_) % out_.alignment_;
  if (!checked_add_u64(start, pad, &start)) fail("data section offset overflows");
  out_.data_offset_ = start;
  uint64_t max_end = start;
  for (const Pending& p : pending_) {
    uint64_t begin = 0, end = 0;
    if (!checked_add_u64(start, p.offset, &begin) || !checked_add_u64(begin, p.nbytes, &end))
      fail("tensor '", p.name, "' data range overflows");
    max_end = std::max(max_end, end);
  }
  if (!pending_.empty() && max_end > size_)
    fail("truncated: expected ", max_end, " bytes, got ", size_);
  std::vector<const Pending*> by_offset;
  by_offset.reserve(pending_.size());
  for (const Pending& p : pending_) by_offset.push_back(&p);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Pending* a, const Pending* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const Pending& a = *by_offset[k - 1];
    const Pending& b = *by_offset[k];
    if (a.offset + a.nbytes > b.offset)
      fail("overlapping tensor ranges: '", a.name, "' [", a.offset, ", ", a.offset + a.nbytes, ") and '", b.name,
           "' starting at ", b.offset);
  }

  for (Pending& p : pending_) {
    TensorInfo info;
    info.name = p.name;
    info.dtype = p.dtype;
    info.shape = std::move(p.shape);
    info.data = data_ + start + p.offset;
    info.nbytes = p.nbytes;
    info.file = path_;
    out_.tensor_order_.push_back(p.name);
    out_.tensors_.emplace(p.name, std::move(info));
  }
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path, const GgufLimits& limits,
                                         const std::string& display) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  std::shared_ptr<MappedFile> mapped = MappedFile::open(path, display);
  f->path_ = mapped->path();
  f->files_.push_back(mapped);
  GgufParser parser(*f, *mapped, limits);
  parser.parse();
  return f;
}

const GgufValue* GgufFile::find_value(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].second;
}

const GgufValue& GgufFile::require(const std::string& key) const {
  const GgufValue* v = find_value(key);
  if (v == nullptr) ELI_THROW(kModelLoad, path_, ": GGUF missing metadata key '", key, "'");
  return *v;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = require(key);
  ELI_CHECK_KIND(kModelLoad, v.type == GgufType::kString, path_, ": GGUF key '", key, "' is ",
                 gguf_type_name(v.type), ", expected string");
  return v.s;
}
std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = require(key);
  ELI_CHECK_KIND(kModelLoad, v.is_integer(), path_, ": GGUF key '", key, "' is ", gguf_type_name(v.type),
                 ", expected an integer");
  ELI_CHECK_KIND(kModelLoad, !v.u_big, path_, ": GGUF key '", key, "' value ", v.u, " exceeds int64");
  return v.i;
}
int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = require(key);
  if (v.is_float()) return v.f;
  if (v.is_integer() && v.type != GgufType::kBool) return v.u_big ? static_cast<double>(v.u) : static_cast<double>(v.i);
  ELI_THROW(kModelLoad, path_, ": GGUF key '", key, "' is ", gguf_type_name(v.type), ", expected a number");
}
double GgufFile::get_float(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}

bool GgufFile::get_bool(const std::string& key, bool fallback) const {
  const GgufValue* v = find_value(key);
  if (v == nullptr) return fallback;
  ELI_CHECK_KIND(kModelLoad, v->type == GgufType::kBool, path_, ": GGUF key '", key, "' is ",
                 gguf_type_name(v->type), ", expected bool");
  return v->i != 0;
}

const std::vector<std::string>& GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& v = require(key);
  ELI_CHECK_KIND(kModelLoad, v.is_array() && (v.elem_type == GgufType::kString || v.array_size() == 0), path_,
                 ": GGUF key '", key, "' is not an array of strings");
  return v.strings;
}

const std::vector<int64_t>& GgufFile::get_int_array(const std::string& key) const {
  const GgufValue& v = require(key);
  const bool ok = v.is_array() && (v.array_size() == 0 || (v.strings.empty() && v.floats.empty()));
  ELI_CHECK_KIND(kModelLoad, ok, path_, ": GGUF key '", key, "' is not an array of integers");
  return v.ints;
}

const std::vector<double>& GgufFile::get_float_array(const std::string& key) const {
  const GgufValue& v = require(key);
  const bool ok = v.is_array() && (v.array_size() == 0 || v.elem_type == GgufType::kF32 ||
                                   v.elem_type == GgufType::kF64);
  ELI_CHECK_KIND(kModelLoad, ok, path_, ": GGUF key '", key, "' is not an array of floats");
  return v.floats;
}

}  // namespace eli
