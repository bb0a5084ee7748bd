// runtime/engine/engine_config.cc: the engine option table (eli/engine_options.def) turned into
// its C++ uses: validate_engine_config() checks every field against the bounds, limits and choices
// of its row; engine_option_infos() lists the rows for the bindings. Nothing here knows an option
// by name except through the table, so a new option needs a new row only.
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "eli/engine.h"
#include "eli/error.h"
#include "runtime/device/device.h"

namespace eli {
namespace {

// The bound that applies now: MAX, lowered by the machine for CPU_THREADS.
double effective_max(const char* limit, double max) {
  if (std::string(limit) == "CPU_THREADS") {
    const double cap = static_cast<double>(kMaxThreadsPerCpu) * hardware_threads();
    return std::min(max, cap);
  }
  return max;
}

std::string bound_text(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

template <typename T>
void check_number(const char* name, T value, T auto_value, double min, double max, const char* limit) {
  if (min == 0.0 && max == 0.0) return;  // the type's range only
  if (value == auto_value) return;        // the default is valid (outside [min, max]: "auto")
  const double v = static_cast<double>(value);
  const bool open_min = std::string(limit) == "OPEN_MIN";
  const double hi = effective_max(limit, max);
  const bool ok = (open_min ? v > min : v >= min) && v <= hi;  // written so that NaN fails
  if (ok) return;
  std::string why = std::string(open_min ? "(" : "[") + bound_text(min) + ", " + bound_text(hi) + "]";
  if (std::string(limit) == "CPU_THREADS") {
    why += " (at most " + std::to_string(kMaxThreadsPerCpu) + " per hardware thread; this machine has " +
           std::to_string(hardware_threads()) + ")";
  }
  const double d = static_cast<double>(auto_value);
  if (!(d >= min && d <= max)) why += " or " + bound_text(d) + " (the default)";
  std::ostringstream os;
  os.precision(17);
  os << value;
  ELI_THROW(kInvalidArgument, name, " must be in ", why, ", got ", os.str());
}

bool choice_matches(const std::string& value, const std::string& choice) {
  // "prefix:N" stands for prefix:0, prefix:1, ... (up to 4 digits).
  const size_t n = choice.size();
  if (n >= 2 && choice.compare(n - 2, 2, ":N") == 0) {
    const std::string prefix = choice.substr(0, n - 1);  // "cuda:"
    if (value.size() <= prefix.size() || value.size() > prefix.size() + 4) return false;
    if (value.compare(0, prefix.size(), prefix) != 0) return false;
    for (size_t i = prefix.size(); i < value.size(); ++i) {
      if (value[i] < '0' || value[i] > '9') return false;
    }
    return true;
  }
  return value == choice;
}

void check_choice(const char* name, const std::string& value, const char* choices) {
  const std::string all = choices;
  if (all.empty()) return;
  size_t start = 0;
  while (start <= all.size()) {
    size_t bar = all.find('|', start);
    if (bar == std::string::npos) bar = all.size();
    if (choice_matches(value, all.substr(start, bar - start))) return;
    start = bar + 1;
  }
  std::string expected = all;
  for (char& c : expected) {
    if (c == '|') c = ',';
  }
  ELI_THROW(kInvalidArgument, name, " must be one of ", expected, "; got '", value.substr(0, 64), "'");
}

void check_option(const char* name, bool, bool, double, double, const char*, const char*) {}
void check_option(const char* name, int v, int d, double min, double max, const char* limit, const char*) {
  check_number(name, v, d, min, max, limit);
}
void check_option(const char* name, int64_t v, int64_t d, double min, double max, const char* limit, const char*) {
  check_number(name, v, d, min, max, limit);
}
void check_option(const char* name, uint64_t v, uint64_t d, double min, double max, const char* limit, const char*) {
  check_number(name, v, d, min, max, limit);
}
void check_option(const char* name, double v, double d, double min, double max, const char* limit, const char*) {
  // Bounds fail NaN and infinities too (and name the range); unbounded doubles must be finite.
  if (min == 0.0 && max == 0.0) ELI_CHECK_ARG(std::isfinite(v), name, " must be a finite number, got ", v);
  check_number(name, v, d, min, max, limit);
}
void check_option(const char* name, const std::string& v, const std::string&, double, double, const char*,
                  const char* choices) {
  check_choice(name, v, choices);
}

}  // namespace

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

const std::vector<EngineOptionInfo>& engine_option_infos() {
  static const std::vector<EngineOptionInfo> infos = {
#define ELI_ENGINE_OPTION(KIND, NAME, DEFAULT, MIN, MAX, LIMIT, PY_DEFAULT, CHOICES, FLAG, GROUP, DOC) \
  EngineOptionInfo{#NAME, #KIND, static_cast<double>(MIN), static_cast<double>(MAX), #LIMIT, CHOICES, DOC},
#include "eli/engine_options.def"
#undef ELI_ENGINE_OPTION
  };
  return infos;
}

void validate_engine_config(const EngineConfig& c) {
  const EngineConfig defaults;
#define ELI_ENGINE_OPTION(KIND, NAME, DEFAULT, MIN, MAX, LIMIT, PY_DEFAULT, CHOICES, FLAG, GROUP, DOC) \
  check_option(#NAME, c.NAME, defaults.NAME, static_cast<double>(MIN), static_cast<double>(MAX), #LIMIT, CHOICES);
#include "eli/engine_options.def"
#undef ELI_ENGINE_OPTION
}

std::string resolve_device_name(const std::string& name) {
  if (name != "auto") return name;
  return cuda_device_count() > 0 ? "cuda" : "cpu";
}

}  // namespace eli
