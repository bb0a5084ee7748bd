// tests/fuzz/fuzz_safetensors.cc: libFuzzer harness of open_safetensors (runtime/model/
// safetensors.h) on a single file. The input is written to <tmpfs scratch>/model.safetensors and
// opened both as the file and as its directory.
//
// Accepted outcomes: a WeightSource, or eli::Error(kModelLoad). For an accepted file the header
// invariants of safetensors.h are re-checked independently: a dtype the reader knows, every dim > 0,
// nbytes == product(shape) * element size, and the tensors tile the data section exactly
// ([8 + header_len, file size), no gaps, no overlaps); every byte range is then read.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "runtime/model/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

namespace {

void check_source(const eli::WeightSource& src, const uint8_t* data, size_t size) {
  if (size < 8) eli_fuzz::report("safetensors", "accepted a file under 8 bytes");
  uint64_t header_len = 0;
  std::memcpy(&header_len, data, 8);  // little-endian host (x86-64 / aarch64)
  if (header_len > size - 8) eli_fuzz::report("safetensors", "accepted a header longer than the file");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_bytes = size - data_start;

  const uint8_t* base = nullptr;  // start of the data section in the map: lowest tensor pointer
  std::vector<std::pair<const uint8_t*, uint64_t>> ranges;
  for (const auto& [name, t] : src.tensors()) {
    // The dtypes runtime/model/safetensors.cc reads (the 16/32-bit floats and the integer / fp8
    // containers of quantized checkpoints).
    static const eli::DType kRead[] = {eli::DType::kF32, eli::DType::kF16, eli::DType::kBF16, eli::DType::kI32,
                                       eli::DType::kI64, eli::DType::kI8,  eli::DType::kU8,   eli::DType::kF8E4M3};
    if (std::find(std::begin(kRead), std::end(kRead), t.dtype) == std::end(kRead))
      eli_fuzz::report("safetensors", "accepted a dtype safetensors.cc does not read");
    unsigned __int128 n = 1;
    for (int64_t d : t.shape) {
      if (d <= 0) eli_fuzz::report("safetensors", "accepted a dim <= 0");
      n *= static_cast<unsigned __int128>(d);
      if (n > (static_cast<unsigned __int128>(1) << 64)) eli_fuzz::report("safetensors", "element count overflow accepted");
    }
    n *= static_cast<unsigned __int128>(eli::dtype_info(t.dtype).block_bytes);
    if (n != t.nbytes) eli_fuzz::report("safetensors", "nbytes != product(shape) * element size");
    if (t.nbytes > 0 && t.data == nullptr) eli_fuzz::report("safetensors", "null data");
    if (t.data != nullptr && (base == nullptr || t.data < base)) base = t.data;
    ranges.emplace_back(t.data, t.nbytes);
  }
  uint64_t total = 0;
  for (const auto& [p, n] : ranges) {
    if (p == nullptr) continue;
    uint64_t off = static_cast<uint64_t>(p - base);
    if (off > data_bytes || n > data_bytes - off) eli_fuzz::report("safetensors", "tensor range past the file end");
    total += n;
    (void)eli_fuzz::touch(p, n);
  }
  if (!ranges.empty() && total != data_bytes) eli_fuzz::report("safetensors", "tensors do not tile the data section");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = eli_fuzz::scratch_dir();
  const std::string path = dir + "/model.safetensors";
  eli_fuzz::write_file(path, data, size);

  bool file_ok = eli_fuzz::expect_only(eli::ErrorKind::kModelLoad, [&] {
    auto src = eli::open_safetensors(path);
    check_source(*src, data, size);
  });
  bool dir_ok = eli_fuzz::expect_only(eli::ErrorKind::kModelLoad, [&] {
    auto src = eli::open_safetensors(dir);
    check_source(*src, data, size);
  });
  if (file_ok != dir_ok) eli_fuzz::report("safetensors", "file and directory forms disagree");
  return 0;
}
