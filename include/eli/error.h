// eli/error.h: the one exception type of the engine and the checking macros.
//
// Invariants: library code reports failures by throwing eli::Error (or a subclass) or by returning
// a Status for expected conditions; it never terminates the process. Every Error carries a kind,
// so bindings can map it to a typed Python exception (ModelLoadError -> eli.ModelLoadError).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace eli {

enum class ErrorKind {
  kInvalidArgument,  // caller passed something impossible (-> ValueError)
  kModelLoad,        // a model file or config failed a check (-> eli.ModelLoadError)
  kOutOfMemory,      // a budget or an allocation could not be met (-> MemoryError)
  kUnsupported,      // valid input this build cannot run (-> NotImplementedError)
  kNotCompiled,      // backend absent from this build, e.g. CUDA in a CPU-only wheel
  kDevice,           // a device/driver call failed (CUDA error, ...)
  kInternal,         // a broken invariant inside eli: a bug
};

const char* error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// Status is for expected outcomes that the caller handles (no free KV blocks, request aborted).
enum class Status {
  kOk = 0,
  kNoFreeBlocks,
  kAborted,
  kInvalid,
};

namespace detail {
inline void append_all(std::ostringstream&) {}
template <typename T, typename... Rest>
void append_all(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append_all(os, rest...);
}
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  append_all(os, args...);
  return os.str();
}
[[noreturn]] void throw_error(ErrorKind kind, const char* file, int line, const char* cond,
                              const std::string& message);
}  // namespace detail

}  // namespace eli

// ELI_CHECK(cond, parts...): throws eli::Error(kInternal-free kind: kInvalidArgument) naming the
// failed condition, the file and line, and the message built from `parts` (streamed together).
#define ELI_CHECK(cond, ...)                                                                    \
  do {                                                                                          \
    if (!(cond))                                                                                \
      ::eli::detail::throw_error(::eli::ErrorKind::kInvalidArgument, __FILE__, __LINE__, #cond, \
                                 ::eli::detail::concat(__VA_ARGS__));                           \
  } while (0)

// ELI_CHECK_KIND(kind, cond, parts...): as ELI_CHECK with an explicit ErrorKind.
#define ELI_CHECK_KIND(kind, cond, ...)                                                        \
  do {                                                                                         \
    if (!(cond))                                                                               \
      ::eli::detail::throw_error(::eli::ErrorKind::kind, __FILE__, __LINE__, #cond,            \
                                 ::eli::detail::concat(__VA_ARGS__));                          \
  } while (0)

// ELI_THROW(kind, parts...): unconditional typed error.
#define ELI_THROW(kind, ...)                                                             \
  ::eli::detail::throw_error(::eli::ErrorKind::kind, __FILE__, __LINE__, nullptr,        \
                             ::eli::detail::concat(__VA_ARGS__))
