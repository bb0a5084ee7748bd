// runtime/model/safetensors.h: zero-copy reader of safetensors model weights, single-file or
// sharded (model.safetensors.index.json), with every check of RELIABILITY items 1-5 and 7.
//
// Invariants of the returned source: each TensorInfo.data points into a read-only memory map
// held by the source; tensors of one file tile its data section exactly (start at 0, no gaps, no
// overlaps, end at the file's end); dtype is F32, F16 or BF16; every dim > 0; nbytes ==
// product(shape) * element size with no overflow. data is NOT guaranteed to be aligned beyond 1
// byte (the format does not promise it); readers copy or use unaligned loads.
// Pickle weights (.bin/.pt/.pth/.ckpt) are refused: eli never unpickles.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/model/weight_source.h"

namespace eli {

constexpr uint64_t kSafetensorsMaxHeaderBytes = uint64_t{100} << 20;  // 100 MiB

// `path`: a .safetensors file, a model.safetensors.index.json, or a directory holding
// model.safetensors.index.json (preferred) or model.safetensors.
// Throws eli::Error(kModelLoad) naming the file and the failed check.
std::unique_ptr<WeightSource> open_safetensors(const std::string& path);

// True if `dir` holds something open_safetensors can read (an index or model.safetensors).
bool has_safetensors(const std::string& dir);

}  // namespace eli
