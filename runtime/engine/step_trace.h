// runtime/engine/step_trace.h: where the engine's step loop spends its wall time, summed per kind
// of step and printed to stderr each time the engine runs out of work (one summary per burst of
// requests: a warm-up and the measured run print apart) and at destruction, if ELI_STEP_TRACE is
// set to anything but "" or "0" (silent and nearly free otherwise: one branch per step).
//
// A step() call is split into: schedule (the scheduler's pick), launch (batch building, uploads and
// kernel queueing: the host's cost of a step; it includes the device wait of a step sampled
// synchronously, one that cannot run ahead), wait (blocked on the device for a step's samples:
// the device's share that the host could not hide) and complete (applying samples, outputs); "gap"
// is the time between step() calls (the caller's own work). Steps are grouped by whether they carry
// prefill tokens ("prefill" = any sequence with more than one new token) or only decode rows.
// Used by the offline-throughput analysis (bench/gpu/bench_throughput.py runs with it on).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace eli {

class StepTrace {
 public:
  using Clock = std::chrono::steady_clock;

  StepTrace() {
    const char* v = std::getenv("ELI_STEP_TRACE");
    enabled_ = v != nullptr && v[0] != '\0' && std::string(v) != "0";
  }
  StepTrace(const StepTrace&) = delete;
  StepTrace& operator=(const StepTrace&) = delete;
  ~StepTrace() { flush(); }

  // Prints the sums so far (if any) and starts new ones.
  void flush() {
    if (!enabled_) return;
    print();
    decode_ = Sum{};
    prefill_ = Sum{};
    last_end_ns_ = 0;
    ++bursts_;
  }

  bool enabled() const { return enabled_; }
  static int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
  }

  // One finished step() call: its phases in ns, what it launched (tokens, rows sampled, sequences).
  struct Step {
    int64_t begin_ns = 0, schedule_ns = 0, launch_ns = 0, wait_ns = 0, complete_ns = 0, end_ns = 0;
    int64_t tokens = 0, rows = 0, seqs = 0;
    bool prefill = false;
  };
  void record(const Step& s) {
    if (!enabled_) return;
    Sum& g = s.prefill ? prefill_ : decode_;
    ++g.steps;
    g.tokens += s.tokens;
    g.rows += s.rows;
    g.seqs += s.seqs;
    g.schedule += s.schedule_ns;
    g.launch += s.launch_ns;
    g.wait += s.wait_ns;
    g.complete += s.complete_ns;
    g.total += s.end_ns - s.begin_ns;
    if (last_end_ns_ > 0) g.gap += s.begin_ns - last_end_ns_;
    last_end_ns_ = s.end_ns;
  }

 private:
  struct Sum {
    int64_t steps = 0, tokens = 0, rows = 0, seqs = 0;
    int64_t schedule = 0, launch = 0, wait = 0, complete = 0, total = 0, gap = 0;
  };
  void print() const {
    if (!enabled_) return;
    for (const auto& [name, g] : {std::pair<const char*, const Sum&>{"decode", decode_}, {"prefill", prefill_}}) {
      if (g.steps == 0) continue;
      const double n = static_cast<double>(g.steps);
      auto ms = [&](int64_t ns) { return static_cast<double>(ns) / 1e6 / n; };
      std::fprintf(stderr,
                   "eli step trace #%d %-7s: %6lld steps, per step: %7.1f tokens %6.1f rows %6.1f seqs | "
                   "ms: schedule %.3f launch %.3f wait %.3f complete %.3f step %.3f gap %.3f | total %.2f s\n",
                   bursts_, name, static_cast<long long>(g.steps), static_cast<double>(g.tokens) / n,
                   static_cast<double>(g.rows) / n, static_cast<double>(g.seqs) / n, ms(g.schedule), ms(g.launch),
                   ms(g.wait), ms(g.complete), ms(g.total), ms(g.gap), static_cast<double>(g.total + g.gap) / 1e9);
    }
  }

  bool enabled_ = false;
  int bursts_ = 0;
  int64_t last_end_ns_ = 0;
  Sum decode_, prefill_;
};

}  // namespace eli
