// runtime/core/phase_timer.h: wall-clock timing of the phases of a long operation (engine
// construction), printed to stderr when the environment variable named at construction is set to
// anything but "" or "0" (ELI_LOAD_TRACE=1 for model loading). Silent and nearly free otherwise.
//
// Output, one line per mark(): "eli <what>: <phase> <ms> ms[ <extra>]", the time since the
// previous mark (or construction); done() adds a "total" line.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace eli {

class PhaseTimer {
 public:
  using Clock = std::chrono::steady_clock;

  PhaseTimer(const char* env_var, const char* what) : what_(what) {
    const char* v = std::getenv(env_var);
    enabled_ = v != nullptr && v[0] != '\0' && std::string(v) != "0";
    start_ = last_ = Clock::now();
  }

  bool enabled() const { return enabled_; }
  // Seconds since the previous mark (or construction), without marking.
  double lap_seconds() const { return std::chrono::duration<double>(Clock::now() - last_).count(); }

  // "<GB> GB, <GB/s> GB/s" for `bytes` moved since the previous mark (an extra for mark()).
  std::string bytes_and_rate(uint64_t bytes) const {
    char buf[96];
    const double gb = static_cast<double>(bytes) / 1e9, s = lap_seconds();
    std::snprintf(buf, sizeof(buf), "%.3f GB, %.2f GB/s", gb, s > 0 ? gb / s : 0.0);
    return buf;
  }

  void mark(const char* phase, const std::string& extra = std::string()) {
    if (!enabled_) return;
    const Clock::time_point now = Clock::now();
    print(phase, std::chrono::duration<double, std::milli>(now - last_).count(), extra);
    last_ = now;
  }
  void done() {
    if (!enabled_) return;
    print("total", std::chrono::duration<double, std::milli>(Clock::now() - start_).count(), "");
  }

 private:
  void print(const char* phase, double ms, const std::string& extra) const {
    std::fprintf(stderr, "eli %s: %-22s %9.1f ms%s%s\n", what_, phase, ms, extra.empty() ? "" : "  ", extra.c_str());
  }

  const char* what_;
  bool enabled_ = false;
  Clock::time_point start_, last_;
};

}  // namespace eli
