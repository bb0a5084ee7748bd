// runtime/model/model_files.h: opens whatever the user named as a model (a HF directory with
// config.json + safetensors, a .gguf file, or a directory holding one .gguf) and normalises it to a
// ModelSpec plus a WeightSource read through canonical HF tensor names.
//
// Invariants: the spec passed validate_model_spec and the tensor names passed check_tensor_names
// (model_spec_check.h: no layer beyond the layer count; GGUF: only names eli reads); every file
// opened inside a model directory resolved inside it (or its Hugging Face cache blobs/) and is a
// regular file (model_dir.h); nothing is read beyond the headers, metadata and GGUF `rope_freqs`
// (other tensor data stays memory-mapped and untouched until weights are placed). Every failure,
// whatever the cause (missing path, empty or unreadable directory, permissions, a FIFO, a hostile
// symlink, a malformed file), is eli::Error(kModelLoad) naming the path.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "eli/model_spec.h"
#include "runtime/model/quant_config.h"
#include "runtime/model/weight_source.h"

namespace eli {

class GgufFile;

struct ModelFiles {
  std::string path;
  std::string format;                      // "safetensors" or "gguf"
  ModelSpec spec;
  std::shared_ptr<WeightSource> weights;
  std::shared_ptr<GgufFile> gguf;          // set for GGUF (metadata: tokenizer, chat template)
  std::function<std::string(const std::string&)> name_of;  // canonical HF name -> source name
  bool gguf_llama_permuted = false;        // Q/K rows need un-permuting
  QuantConfig quant;                       // config.json's quantization_config (none for GGUF)
};

ModelFiles open_model_files(const std::string& path);

}  // namespace eli
