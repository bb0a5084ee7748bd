// tests/fuzz/fuzz_gguf.cc: libFuzzer harness of GgufFile::open (runtime/model/gguf.h) and
// spec_from_gguf (gguf_spec.h), i.e. what eli.inspect_model does with a .gguf. The input is
// written to <tmpfs scratch>/model.gguf.
//
// Accepted outcomes: success or eli::Error(kModelLoad) at every stage: open, every typed getter
// on every key, spec_from_gguf + validate_model_spec, tensor-name mapping. For an accepted file:
// every tensor has 1..4 dims > 0 (stored as 1..4 here), nbytes matching its dtype's blocks, and a
// byte range that is read in full (an out-of-map range faults).
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/model/gguf.h"
#include "runtime/model/gguf_spec.h"
#include "runtime/model/model_spec_check.h"
#include "tests/fuzz/fuzz_common.h"

namespace {

void check_tensors(const eli::GgufFile& f, size_t file_size) {
  for (const auto& [name, t] : f.tensors()) {
    if (t.shape.empty() || t.shape.size() > 4) eli_fuzz::report("gguf", "accepted a tensor with 0 or > 4 dims");
    unsigned __int128 n = 1;
    for (int64_t d : t.shape) {
      if (d <= 0) eli_fuzz::report("gguf", "accepted a dim <= 0");
      n *= static_cast<unsigned __int128>(d);
      if (n > (static_cast<unsigned __int128>(1) << 64)) eli_fuzz::report("gguf", "element count overflow accepted");
    }
    const eli::DTypeInfo& info = eli::dtype_info(t.dtype);
    if (info.block_elems <= 0 || n % static_cast<unsigned __int128>(info.block_elems) != 0)
      eli_fuzz::report("gguf", "element count not a multiple of the block size");
    n = n / static_cast<unsigned __int128>(info.block_elems) * static_cast<unsigned __int128>(info.block_bytes);
    if (n != t.nbytes) eli_fuzz::report("gguf", "nbytes does not match shape and dtype");
    if (t.nbytes > file_size) eli_fuzz::report("gguf", "tensor larger than the file");
    (void)eli_fuzz::touch(t.data, t.nbytes);
    (void)eli::hf_name_for_gguf_tensor(name);
  }
}

void read_every_key(const eli::GgufFile& f) {
  for (const auto& kv : f.kvs()) {
    const std::string& key = kv.first;
    const eli::GgufValue& v = kv.second;
    if (f.find_value(key) != &v) eli_fuzz::report("gguf", "find_value does not return the key's value");
    // Each getter either returns or refuses the type with kModelLoad.
    eli_fuzz::expect_only(eli::ErrorKind::kModelLoad, [&] { (void)f.get_string(key); });
    eli_fuzz::expect_only(eli::ErrorKind::kModelLoad, [&] { (void)f.get_int(key); });
    eli_fuzz::expect_only(eli::ErrorKind::kModelLoad, [&] { (void)f.get_float(key); });
    eli_fuzz::expect_only(eli::ErrorKind::kModelLoad, [&] { (void)f.get_bool(key, false); });
    eli_fuzz::expect_only(eli::ErrorKind::kModelLoad, [&] { (void)f.get_string_array(key); });
    eli_fuzz::expect_only(eli::ErrorKind::kModelLoad, [&] { (void)f.get_int_array(key); });
    eli_fuzz::expect_only(eli::ErrorKind::kModelLoad, [&] { (void)f.get_float_array(key); });
    if (v.is_array() && v.array_size() != v.strings.size() + v.ints.size() + v.floats.size())
      eli_fuzz::report("gguf", "array_size() does not match the stored elements");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = eli_fuzz::scratch_dir() + "/model.gguf";
  eli_fuzz::write_file(path, data, size);
  eli_fuzz::expect_only(eli::ErrorKind::kModelLoad, [&] {
    std::unique_ptr<eli::GgufFile> f = eli::GgufFile::open(path);
    // A file without tensors may end before its (aligned) data offset: nothing points there.
    if (!f->tensors().empty() && f->data_offset() > size)
      eli_fuzz::report("gguf", "data offset past the file end");
    if (f->alignment() == 0 || (f->alignment() & (f->alignment() - 1)) != 0)
      eli_fuzz::report("gguf", "accepted an alignment that is not a power of two");
    check_tensors(*f, size);
    read_every_key(*f);
    eli::ModelSpec spec = eli::spec_from_gguf(*f);
    eli::validate_model_spec(spec, path);
  });
  return 0;
}
