// runtime/core/dtype.cc: the dtype table. Block sizes of GGUF types follow the GGUF specification.
#include "eli/dtype.h"

#include <algorithm>
#include <cctype>

#include "eli/error.h"

namespace eli {

const DTypeInfo& dtype_info(DType dtype) {
  static const DTypeInfo kTable[] = {
      {"f32", 1, 4, true, false},    {"f16", 1, 2, true, false},    {"bf16", 1, 2, true, false},
      {"i32", 1, 4, false, false},   {"i64", 1, 8, false, false},   {"u8", 1, 1, false, false},
      {"q8_0", 32, 34, false, true}, {"q4_0", 32, 18, false, true}, {"q4_1", 32, 20, false, true},
      {"q5_0", 32, 22, false, true}, {"q5_1", 32, 24, false, true}, {"q4_k", 256, 144, false, true},
      {"q5_k", 256, 176, false, true}, {"q6_k", 256, 210, false, true},
      {"q2_k", 256, 84, false, true},  {"q3_k", 256, 110, false, true},
      {"iq4_nl", 32, 18, false, true}, {"iq4_xs", 256, 136, false, true},
      {"i8", 1, 1, false, false},      {"f8_e4m3", 1, 1, true, false},
  };
  auto index = static_cast<size_t>(dtype);
  ELI_CHECK_KIND(kInternal, index < sizeof(kTable) / sizeof(kTable[0]), "bad dtype ", index);
  return kTable[index];
}

DType parse_dtype(const std::string& name) {
  std::string s = name;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "f32" || s == "float32" || s == "float") return DType::kF32;
  if (s == "f16" || s == "float16" || s == "half") return DType::kF16;
  if (s == "bf16" || s == "bfloat16") return DType::kBF16;
  ELI_THROW(kInvalidArgument, "unknown dtype '", name, "' (expected float32, bfloat16 or float16)");
}

}  // namespace eli
