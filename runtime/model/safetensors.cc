// runtime/model/safetensors.cc: safetensors reader (see safetensors.h for the invariants).
//
// File layout: u64 little-endian header length N, N bytes of JSON header, then the data section.
// Header: {"__metadata__": {str: str}?, NAME: {"dtype": "F32", "shape": [..],
// "data_offsets": [begin, end]}, ...}, offsets relative to the data section.
// Every number from the file is checked (checked_math.h) before it is used; every file opened in a
// model directory (model.safetensors, the index, its shards) must stay inside it (lexically for
// shard paths, and after resolving symlinks, except for the Hugging Face cache's snapshots/REV ->
// blobs/ links: model_dir.h) and be a regular file. No message quotes file bytes: a header length
// that fails a check is not printed (for a file that is not safetensors at all, those 8 bytes are
// whatever the file holds).
#include "runtime/model/safetensors.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "eli/error.h"
#include "runtime/core/checked_math.h"
#include "runtime/core/json.h"
#include "runtime/core/mapped_file.h"
#include "runtime/model/model_dir.h"

namespace eli {
namespace {

constexpr uint64_t kMaxIndexBytes = uint64_t{64} << 20;
constexpr size_t kMaxDims = 8;

template <typename... Args>
[[noreturn]] void fail(const std::string& file, const Args&... parts) {
  // Thrown directly: the message names the file and the check; a helper line adds nothing.
  throw Error(ErrorKind::kModelLoad, detail::concat(file, ": ", parts...));
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_pickle_name(const std::string& name) {
  for (const char* ext : {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}) {
    if (ends_with(name, ext)) return true;
  }
  return false;
}

[[noreturn]] void fail_pickle(const std::string& path) {
  fail(path, "pickle weights (.bin/.pt): eli never unpickles (unpickling can execute code); "
             "convert the model to safetensors");
}

bool exists(const std::string& p, bool* is_dir = nullptr) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return false;
  if (is_dir != nullptr) *is_dir = S_ISDIR(st.st_mode);
  return true;
}

std::string parent_dir(const std::string& p) {
  size_t slash = p.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

struct DtypeEntry {
  const char* name;
  DType dtype;
  int64_t bytes;
};
// Float weights, plus the integer / FP8 tensors of quantized checkpoints (AWQ / GPTQ int32 packs,
// g_idx, compressed-tensors int8 / e4m3 weights and weight_shape); only quantized LinearMethods read
// the latter (reading one as a float weight is a typed error).
constexpr DtypeEntry kDtypes[] = {{"F32", DType::kF32, 4},  {"F16", DType::kF16, 2},
                                  {"BF16", DType::kBF16, 2}, {"I32", DType::kI32, 4},
                                  {"I64", DType::kI64, 8},  {"I8", DType::kI8, 1},
                                  {"U8", DType::kU8, 1},    {"F8_E4M3", DType::kF8E4M3, 1}};

struct RawTensor {
  TensorInfo info;
  uint64_t begin = 0;
  uint64_t end = 0;
};

int64_t shape_dim(const std::string& file, const std::string& name, const JsonValue& d) {
  if (!d.is_int64()) {
    if (d.is_number() && d.as_double() < 0) fail(file, "tensor '", name, "': negative dimension in shape");
    fail(file, "tensor '", name, "': shape entries must be integers (got ", d.type_name(), ")");
  }
  int64_t v = d.as_int64();
  if (v < 0) fail(file, "tensor '", name, "': negative dimension ", v, " in shape");
  if (v == 0) fail(file, "tensor '", name, "': zero dimension in shape (empty tensors are not allowed)");
  return v;
}

uint64_t offset_value(const std::string& file, const std::string& name, const JsonValue& d) {
  if (!d.is_int64() || d.as_int64() < 0) {
    fail(file, "tensor '", name, "': data_offsets must be non-negative integers");
  }
  return static_cast<uint64_t>(d.as_int64());
}

RawTensor parse_entry(const std::string& file, const std::string& name, const JsonValue& e) {
  if (name.empty()) fail(file, "empty tensor name in header");
  if (!e.is_object()) fail(file, "tensor '", name, "': header entry must be an object");
  const JsonValue* dtype = e.find("dtype");
  const JsonValue* shape = e.find("shape");
  const JsonValue* offsets = e.find("data_offsets");
  if (dtype == nullptr || !dtype->is_string()) fail(file, "tensor '", name, "': missing or non-string dtype");
  if (shape == nullptr || !shape->is_array()) fail(file, "tensor '", name, "': missing or non-array shape");
  if (offsets == nullptr || !offsets->is_array() || offsets->size() != 2) {
    fail(file, "tensor '", name, "': data_offsets must be an array [begin, end]");
  }
  RawTensor t;
  t.info.name = name;
  t.info.file = file;
  int64_t elem_bytes = 0;
  for (const DtypeEntry& d : kDtypes) {
    if (dtype->as_string() == d.name) {
      t.info.dtype = d.dtype;
      elem_bytes = d.bytes;
    }
  }
  if (elem_bytes == 0) {
    fail(file, "tensor '", name, "': unsupported dtype '", dtype->as_string(),
         "' (eli reads F32, F16, BF16, I32, I64, I8, U8 and F8_E4M3 safetensors)");
  }
  if (shape->size() > kMaxDims) fail(file, "tensor '", name, "': more than ", kMaxDims, " dims");
  int64_t n = 1;
  for (const JsonValue& d : shape->array()) {
    int64_t v = shape_dim(file, name, d);
    t.info.shape.push_back(v);
    if (!checked_mul(n, v, &n)) fail(file, "tensor '", name, "': element count overflows");
  }
  int64_t nbytes = 0;
  if (!checked_mul(n, elem_bytes, &nbytes)) fail(file, "tensor '", name, "': byte size overflows");
  t.info.nbytes = static_cast<uint64_t>(nbytes);
  t.begin = offset_value(file, name, offsets->array()[0]);
  t.end = offset_value(file, name, offsets->array()[1]);
  if (t.end < t.begin) {
    fail(file, "tensor '", name, "': data_offsets end ", t.end, " before start ", t.begin);
  }
  if (t.end - t.begin != t.info.nbytes) {
    fail(file, "tensor '", name, "': data_offsets span ", t.end - t.begin, " bytes but shape x dtype needs ",
         t.info.nbytes);
  }
  return t;
}

struct ParsedFile {
  std::shared_ptr<MappedFile> map;
  std::vector<TensorInfo> tensors;
};

// open_path: what to map (a resolved path); file: the name in messages and TensorInfo::file.
ParsedFile parse_file(const std::string& open_path, const std::string& file) {
  if (is_pickle_name(file)) fail_pickle(file);
  ParsedFile out;
  out.map = MappedFile::open(open_path, file);
  const uint64_t size = out.map->size();
  const uint8_t* base = out.map->data();
  if (size < 8) fail(file, "truncated: expected at least 8 bytes (header length), got ", size);
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | base[k];
  uint64_t header_end = 0;
  // The length is not quoted: in a file that is not safetensors these are arbitrary content bytes.
  if (!checked_add_u64(n, 8, &header_end)) fail(file, "header length (first 8 bytes) overflows when 8 is added");
  if (n > kSafetensorsMaxHeaderBytes) fail(file, "header length (first 8 bytes) exceeds the 100 MiB limit");
  if (n < 2) fail(file, "header length (first 8 bytes) is too small (under 2)");
  if (header_end > size) fail(file, "header length (first 8 bytes) is larger than the file (", size, " bytes)");
  std::string_view text(reinterpret_cast<const char*>(base + 8), static_cast<size_t>(n));
  if (text[0] != '{') fail(file, "header does not start with '{'");
  JsonLimits limits;
  limits.max_bytes = static_cast<size_t>(n);
  limits.max_depth = 8;
  JsonValue header = parse_json_as(text, file + ": invalid header JSON", ErrorKind::kModelLoad, limits);

  std::vector<RawTensor> raw;
  for (const JsonMember& m : header.items()) {
    if (m.key == "__metadata__") {
      if (!m.value.is_object()) fail(file, "__metadata__ must be an object of strings");
      for (const JsonMember& kv : m.value.items()) {
        if (!kv.value.is_string()) fail(file, "__metadata__ value of '", kv.key, "' is not a string");
      }
      continue;
    }
    raw.push_back(parse_entry(file, m.key, m.value));
  }
  // Tensors must tile the data section: start at 0, no gaps, no overlaps, end at its end.
  std::sort(raw.begin(), raw.end(), [](const RawTensor& a, const RawTensor& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const uint64_t data_len = size - header_end;
  uint64_t cursor = 0;
  const std::string* prev = nullptr;
  for (const RawTensor& t : raw) {
    if (t.begin < cursor) {
      fail(file, "tensor '", t.info.name, "' overlaps tensor '", *prev, "' (data_offsets [", t.begin, ", ",
           t.end, "))");
    }
    if (t.begin > cursor) {
      if (prev == nullptr) fail(file, "data does not start at offset 0 (first tensor '", t.info.name,
                                "' starts at ", t.begin, ")");
      fail(file, "gap of ", t.begin - cursor, " bytes between tensors '", *prev, "' and '", t.info.name, "'");
    }
    cursor = t.end;
    prev = &t.info.name;
  }
  if (cursor > data_len) {
    uint64_t expected = 0;
    if (!checked_add_u64(header_end, cursor, &expected)) fail(file, "data_offsets overflow");
    fail(file, "truncated: expected ", expected, " bytes, got ", size);
  }
  if (cursor < data_len) {
    fail(file, "trailing bytes: tensors end at data offset ", cursor, " but the data section has ", data_len,
         " bytes");
  }
  for (RawTensor& t : raw) {
    t.info.data = base + header_end + t.begin;
    out.tensors.push_back(std::move(t.info));
  }
  return out;
}

// A shard: the path shown (dir/shard) and the resolved path to open.
struct ShardPath {
  std::string shown, real;
};

// Checks an index's shard path. Lexical rules first (no absolute path, no '..'), then the resolved
// path must stay in the model directory (or the HF cache's blobs/) and be a regular file.
ShardPath shard_path(const std::string& index, const ModelRoot& root, const std::string& shard) {
  if (shard.empty()) fail(index, "empty shard path in weight_map");
  if (shard.find('\0') != std::string::npos || shard.find('\\') != std::string::npos) {
    fail(index, "invalid characters in shard path '", shard, "'");
  }
  if (shard[0] == '/') fail(index, "shard path '", shard, "' is absolute: outside the model directory");
  size_t start = 0;
  while (start <= shard.size()) {
    size_t slash = shard.find('/', start);
    if (slash == std::string::npos) slash = shard.size();
    if (shard.compare(start, slash - start, "..") == 0 && slash - start == 2) {
      fail(index, "shard path '", shard, "' uses '..': outside the model directory");
    }
    start = slash + 1;
  }
  ShardPath p;
  p.shown = root.dir + "/" + shard;
  if (!entry_exists(root, shard)) fail(index, "shard '", shard, "' listed in the index is missing (", p.shown, ")");
  p.real = contained_path(root, shard, index + ": shard '" + shard + "'");
  return p;
}

class SafetensorsSource : public WeightSource {
 public:
  explicit SafetensorsSource(std::string path) { path_ = std::move(path); }

  void add_file(ParsedFile parsed, const std::map<std::string, std::string>* owner) {
    for (TensorInfo& t : parsed.tensors) {
      auto it = tensors_.find(t.name);
      if (it != tensors_.end()) {
        fail(t.file, "tensor '", t.name, "' appears in two shards (", it->second.file, " and ", t.file, ")");
      }
      if (owner != nullptr) {
        auto o = owner->find(t.name);
        if (o == owner->end()) fail(t.file, "tensor '", t.name, "' is not listed in the index weight_map");
        if (o->second != t.file) {
          fail(t.file, "tensor '", t.name, "' appears in two shards: here, but the index puts it in ", o->second);
        }
      }
      std::string name = t.name;
      tensors_.emplace(std::move(name), std::move(t));
    }
    files_.push_back(std::move(parsed.map));
  }

  // index: the index's name in messages; index_real: the path to read; root: the shards' directory.
  void open_index(const std::string& index, const std::string& index_real, const ModelRoot& dir_root) {
    JsonLimits limits;
    limits.max_bytes = kMaxIndexBytes;
    limits.max_depth = 8;
    JsonValue root = parse_json_as(read_regular_file(index_real, kMaxIndexBytes, index), index,
                                   ErrorKind::kModelLoad, limits);
    if (!root.is_object()) fail(index, "index must be a JSON object");
    const JsonValue* map = root.find("weight_map");
    if (map == nullptr || !map->is_object()) fail(index, "missing or non-object weight_map");
    if (map->size() == 0) fail(index, "weight_map is empty");
    std::map<std::string, std::string> owner;        // tensor -> shown shard path
    std::vector<ShardPath> shard_order;              // unique shards, first-seen order
    std::set<std::string> seen;
    for (const JsonMember& m : map->items()) {
      if (!m.value.is_string()) fail(index, "weight_map value for '", m.key, "' is not a string");
      ShardPath shard = shard_path(index, dir_root, m.value.as_string());
      owner[m.key] = shard.shown;
      if (seen.insert(shard.shown).second) shard_order.push_back(std::move(shard));
    }
    for (const ShardPath& shard : shard_order) add_file(parse_file(shard.real, shard.shown), &owner);
    for (const auto& [name, shard] : owner) {
      if (tensors_.count(name) == 0) {
        fail(index, "tensor '", name, "' listed in the index is absent from its shard ", shard);
      }
    }
  }
};

}  // namespace

bool has_safetensors(const std::string& dir) {
  struct stat st {};
  return ::lstat((dir + "/model.safetensors.index.json").c_str(), &st) == 0 ||
         ::lstat((dir + "/model.safetensors").c_str(), &st) == 0;
}

std::unique_ptr<WeightSource> open_safetensors(const std::string& path) {
  bool is_dir = false;
  if (!exists(path, &is_dir)) fail(path, "not found");
  auto source = std::make_unique<SafetensorsSource>(path);
  if (is_dir) {
    const ModelRoot root = model_root(path);
    const std::string index = path + "/model.safetensors.index.json";
    const std::string single = path + "/model.safetensors";
    if (entry_exists(root, "model.safetensors.index.json")) {
      source->open_index(index, contained_path(root, "model.safetensors.index.json"), root);
    } else if (entry_exists(root, "model.safetensors")) {
      source->add_file(parse_file(contained_path(root, "model.safetensors"), single), nullptr);
    } else {
      // Name the pickle file if that is all there is, so the user knows what to convert.
      if (DIR* d = ::opendir(path.c_str())) {
        std::string pickle;
        while (dirent* e = ::readdir(d)) {
          std::string name = e->d_name;
          if (pickle.empty() && (is_pickle_name(name) || name == "pytorch_model.bin.index.json")) {
            pickle = path + "/" + name;
          }
        }
        ::closedir(d);
        if (!pickle.empty()) fail_pickle(pickle);
      }
      fail(path, "no model.safetensors or model.safetensors.index.json in this directory");
    }
  } else if (is_pickle_name(path)) {
    fail_pickle(path);
  } else if (ends_with(path, ".index.json")) {
    // A file the user named may live anywhere; its shards must stay in its directory.
    if (ends_with(path, ".bin.index.json")) fail_pickle(path);
    source->open_index(path, path, model_root(parent_dir(path)));
  } else {
    source->add_file(parse_file(path, path), nullptr);
  }
  return source;
}

}  // namespace eli
