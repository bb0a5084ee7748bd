// runtime/core/error.cc: formatting of eli::Error messages.
#include "eli/error.h"

#include <cstring>

namespace eli {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalidArgument: return "invalid argument";
    case ErrorKind::kModelLoad: return "model load error";
    case ErrorKind::kOutOfMemory: return "out of memory";
    case ErrorKind::kUnsupported: return "unsupported";
    case ErrorKind::kNotCompiled: return "not compiled";
    case ErrorKind::kDevice: return "device error";
    case ErrorKind::kInternal: return "internal error";
  }
  return "error";
}

namespace detail {
[[noreturn]] void throw_error(ErrorKind kind, const char* file, int line, const char* cond,
                              const std::string& message) {
  // The user-facing text comes first; the source location is appended for bug reports.
  const char* base = std::strrchr(file, '/');
  std::string text = message.empty() ? std::string(error_kind_name(kind)) : message;
  text += " [";
  text += base ? base + 1 : file;
  text += ":" + std::to_string(line);
  if (cond != nullptr) {
    text += ": check failed: ";
    text += cond;
  }
  text += "]";
  throw Error(kind, text);
}
}  // namespace detail

}  // namespace eli
