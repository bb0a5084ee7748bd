// runtime/core/error.cc: eli::Error and the text its what() carries (see eli/error.h).
//
// Invariant: what() never contains a source location or a check's condition unless debug mode is
// on; a kInternal error always names itself as one and asks for a report, exactly once even when
// an internal error's text is wrapped in another Error (the async engine re-throws with a prefix).
#include "eli/error.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace eli {

namespace {
// -1: follow the environment; 0 / 1: a test's override.
std::atomic<int> g_debug_override{-1};

constexpr const char* kInternalPrefix = "internal error: ";
constexpr const char* kReportNote = " (a bug in eli: please report it; ELI_DEBUG=1 adds the source location)";
}  // namespace

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalidArgument: return "invalid argument";
    case ErrorKind::kModelLoad: return "model load error";
    case ErrorKind::kOutOfMemory: return "out of memory";
    case ErrorKind::kUnsupported: return "unsupported";
    case ErrorKind::kNotCompiled: return "not compiled";
    case ErrorKind::kDevice: return "device error";
    case ErrorKind::kInternal: return "internal error";
    case ErrorKind::kIO: return "I/O error";
  }
  return "error";
}

bool error_debug() {
  const int o = g_debug_override.load(std::memory_order_relaxed);
  if (o >= 0) return o == 1;
  const char* v = std::getenv("ELI_DEBUG");
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}
void set_error_debug(bool on) { g_debug_override.store(on ? 1 : 0, std::memory_order_relaxed); }
void reset_error_debug() { g_debug_override.store(-1, std::memory_order_relaxed); }

std::string format_error_text(ErrorKind kind, const std::string& message, const std::string& location,
                              const std::string& condition, bool debug) {
  std::string text = message.empty() ? std::string(error_kind_name(kind)) : message;
  if (kind == ErrorKind::kInternal && text.find("internal error") == std::string::npos) {
    text = kInternalPrefix + text + kReportNote;
  }
  if (debug && (!location.empty() || !condition.empty())) {
    text += " [";
    text += location;
    if (!condition.empty()) {
      if (!location.empty()) text += ": ";
      text += "check failed: " + condition;
    }
    text += "]";
  }
  return text;
}

Error::Error(ErrorKind kind, const std::string& message, std::string location, std::string condition)
    : std::runtime_error(format_error_text(kind, message, location, condition, error_debug())),
      kind_(kind),
      message_(message),
      location_(std::move(location)),
      condition_(std::move(condition)) {}

namespace detail {
[[noreturn]] void throw_error(ErrorKind kind, const char* file, int line, const char* cond,
                              const std::string& message) {
  const char* base = std::strrchr(file, '/');
  std::string location = base ? base + 1 : file;
  location += ":" + std::to_string(line);
  throw Error(kind, message, std::move(location), cond != nullptr ? std::string(cond) : std::string());
}
}  // namespace detail

}  // namespace eli
