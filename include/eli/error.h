// eli/error.h: the one exception type of the engine and the checking macros.
//
// Invariants: library code reports failures by throwing eli::Error (or a subclass) or by returning
// a Status for expected conditions; it never terminates the process. Every Error carries a kind,
// so bindings can map it to a typed Python exception (ModelLoadError -> eli.ModelLoadError).
//
// What users see: what() is the message alone. The source location (file:line) and the failed
// condition of a check stay on the object (location(), condition()) for logs and bug reports, and
// appear in what() only in debug mode (environment ELI_DEBUG=1, or set_error_debug(true)). An
// internal error (kInternal, a bug in eli) always says so: "internal error: ... please report it".
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
  kIO,               // a file read failed while running (the disk tier of weight offloading): the
                     //   step's requests end with an error, the engine goes on (-> eli.EliError)
};

const char* error_kind_name(ErrorKind kind);

// Debug mode: what() also carries the source location and the failed condition. Off unless the
// environment sets ELI_DEBUG to a value other than "" or "0" (read at each throw), or a test
// overrides it (set_error_debug(true/false); reset_error_debug() returns to the environment).
bool error_debug();
void set_error_debug(bool on);
void reset_error_debug();

class Error : public std::runtime_error {
 public:
  // message: what went wrong, in the user's terms. location: "file.cc:32" (empty when thrown
  // without one); condition: the source text of a failed check (empty for ELI_THROW).
  Error(ErrorKind kind, const std::string& message, std::string location = {}, std::string condition = {});
  ErrorKind kind() const { return kind_; }
  const std::string& message() const { return message_; }      // the user text, never a location
  const std::string& location() const { return location_; }    // "file.cc:32" or ""
  const std::string& condition() const { return condition_; }  // "n > 0" or ""

 private:
  ErrorKind kind_;
  std::string message_, location_, condition_;
};

// The text what() returns for these parts (debug: whether the location and condition are added).
std::string format_error_text(ErrorKind kind, const std::string& message, const std::string& location,
                              const std::string& condition, bool debug);

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

// ELI_CHECK_ARG(cond, parts...): a check on what the caller passed: throws eli::Error of kind
// kInvalidArgument with the message built from `parts` (streamed together); the failed condition
// and the file:line ride along on the Error (location(), condition()).
#define ELI_CHECK_ARG(cond, ...)                                                                \
  do {                                                                                          \
    if (!(cond))                                                                                \
      ::eli::detail::throw_error(::eli::ErrorKind::kInvalidArgument, __FILE__, __LINE__, #cond, \
                                 ::eli::detail::concat(__VA_ARGS__));                           \
  } while (0)

// ELI_CHECK(cond, parts...): an invariant inside eli (values eli computed itself, e.g. the sizes a
// kernel receives from the model): throws eli::Error of kind kInternal, so a failure reads
// "internal error: ... please report it" (Python eli.EliError, HTTP 500) and is never blamed on
// the caller. Checks on what a caller or user supplied use ELI_CHECK_ARG instead. Spelled out
// rather than forwarded so that #cond is the source text, not its macro expansion.
#define ELI_CHECK(cond, ...)                                                             \
  do {                                                                                   \
    if (!(cond))                                                                         \
      ::eli::detail::throw_error(::eli::ErrorKind::kInternal, __FILE__, __LINE__, #cond, \
                                 ::eli::detail::concat(__VA_ARGS__));                    \
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
