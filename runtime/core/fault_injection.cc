// runtime/core/fault_injection.cc: the fault-point registry (see fault_injection.h): per-point
// spec, counters and RNG under one mutex; the global armed mask that the inline hook reads.
//
// Invariants: bit i of g_fault_mask is set iff state[i].armed (both changed under g_mu); a point
// that has fired `times` times is disarmed in the same critical section as its last firing.
#include "runtime/core/fault_injection.h"

#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <random>
#include <utility>

#include "eli/error.h"

namespace eli {
namespace detail {
std::atomic<uint32_t> g_fault_mask{0};
}  // namespace detail

namespace {

const char* const kNames[kNumFaultPoints] = {"device_alloc", "preempt_storm", "kernel_poison", "slow_step_ms",
                                             "step_oom", "thread_start", "disk_read",
                                             "kv_disk_write", "kv_disk_read"};

struct PointState {
  bool armed = false;
  FaultSpec spec;
  FaultCounts counts;
  std::mt19937_64 rng;
};

std::mutex g_mu;
PointState g_state[kNumFaultPoints];

PointState& state_of(FaultPoint p) { return g_state[static_cast<int>(p)]; }
uint32_t bit_of(FaultPoint p) { return 1u << static_cast<int>(p); }

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

// Splits on any character of `seps`; drops empty (after trimming) pieces.
std::vector<std::string> split(const std::string& s, const char* seps) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    bool sep = false;
    for (const char* p = seps; *p; ++p) sep = sep || c == *p;
    if (sep) {
      if (!trim(cur).empty()) out.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!trim(cur).empty()) out.push_back(trim(cur));
  return out;
}

int64_t parse_int(const std::string& key, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  ELI_CHECK_ARG(!v.empty() && end == v.c_str() + v.size() && errno == 0, "fault spec: ", key, "=", v,
                " is not an integer");
  return static_cast<int64_t>(x);
}

}  // namespace

const char* fault_point_name(FaultPoint point) {
  const int i = static_cast<int>(point);
  return i >= 0 && i < kNumFaultPoints ? kNames[i] : "?";
}

std::vector<std::string> fault_point_names() { return std::vector<std::string>(kNames, kNames + kNumFaultPoints); }

FaultPoint fault_point_from_name(const std::string& name) {
  for (int i = 0; i < kNumFaultPoints; ++i) {
    if (name == kNames[i]) return static_cast<FaultPoint>(i);
  }
  std::string known;
  for (int i = 0; i < kNumFaultPoints; ++i) known += (i ? ", " : "") + std::string(kNames[i]);
  ELI_THROW(kInvalidArgument, "unknown fault point '", name, "' (known: ", known, ")");
}

FaultSpec parse_fault_spec(const std::string& spec) {
  FaultSpec s;
  for (const std::string& item : split(spec, ":,")) {
    const size_t eq = item.find('=');
    ELI_CHECK_ARG(eq != std::string::npos, "fault spec: '", item, "' is not key=value");
    const std::string key = trim(item.substr(0, eq)), v = trim(item.substr(eq + 1));
    if (key == "after") {
      s.after = parse_int(key, v);
      ELI_CHECK_ARG(s.after >= 0, "fault spec: after must be >= 0, got ", s.after);
    } else if (key == "times") {
      s.times = parse_int(key, v);
      ELI_CHECK_ARG(s.times == -1 || s.times >= 1, "fault spec: times must be -1 (unlimited) or >= 1, got ", s.times);
    } else if (key == "prob") {
      char* end = nullptr;
      s.prob = std::strtod(v.c_str(), &end);
      ELI_CHECK_ARG(!v.empty() && end == v.c_str() + v.size() && s.prob >= 0.0 && s.prob <= 1.0,
                    "fault spec: prob must be a number in [0, 1], got '", v, "'");
    } else if (key == "seed") {
      s.seed = static_cast<uint64_t>(parse_int(key, v));
    } else if (key == "value" || key == "ms") {
      s.value = parse_int(key, v);
      ELI_CHECK_ARG(s.value >= 0, "fault spec: value must be >= 0, got ", s.value);
    } else {
      ELI_THROW(kInvalidArgument, "fault spec: unknown key '", key, "' (after, times, prob, seed, value)");
    }
  }
  return s;
}

void arm_fault(FaultPoint point, const FaultSpec& spec) {
  const int i = static_cast<int>(point);
  ELI_CHECK(i >= 0 && i < kNumFaultPoints, "bad fault point ", i);
  std::lock_guard<std::mutex> lk(g_mu);
  PointState& s = state_of(point);
  s.armed = true;
  s.spec = spec;
  s.counts = FaultCounts{};
  s.rng.seed(spec.seed);
  detail::g_fault_mask.fetch_or(bit_of(point), std::memory_order_relaxed);
}

void arm_fault(const std::string& name, const std::string& spec) {
  const FaultPoint p = fault_point_from_name(trim(name));
  arm_fault(p, parse_fault_spec(spec));
}

void arm_faults(const std::string& list) {
  // Parse everything first: a bad entry arms nothing.
  std::vector<std::pair<FaultPoint, std::string>> entries;
  for (const std::string& item : split(list, ",;")) {
    const size_t colon = item.find(':');
    if (colon == std::string::npos && item.find('=') != std::string::npos) {
      ELI_CHECK_ARG(!entries.empty(), "fault list: '", item, "' comes before any fault name");
      entries.back().second += ":" + item;
      continue;
    }
    const std::string name = trim(item.substr(0, colon));
    entries.emplace_back(fault_point_from_name(name), colon == std::string::npos ? "" : item.substr(colon + 1));
  }
  std::vector<std::pair<FaultPoint, FaultSpec>> parsed;
  for (const auto& e : entries) {
    try {
      parsed.emplace_back(e.first, parse_fault_spec(e.second));
    } catch (const Error& err) {
      throw Error(err.kind(), std::string(fault_point_name(e.first)) + ": " + err.what());
    }
  }
  for (const auto& p : parsed) arm_fault(p.first, p.second);
}

void disarm_fault(FaultPoint point) {
  std::lock_guard<std::mutex> lk(g_mu);
  state_of(point).armed = false;
  detail::g_fault_mask.fetch_and(~bit_of(point), std::memory_order_relaxed);
}

void disarm_all_faults() {
  std::lock_guard<std::mutex> lk(g_mu);
  for (PointState& s : g_state) s.armed = false;
  detail::g_fault_mask.store(0, std::memory_order_relaxed);
}

bool fault_armed(FaultPoint point) {
  std::lock_guard<std::mutex> lk(g_mu);
  return state_of(point).armed;
}

FaultCounts fault_counts(FaultPoint point) {
  std::lock_guard<std::mutex> lk(g_mu);
  return state_of(point).counts;
}

bool detail::fault_fires_slow(FaultPoint point, int64_t* value) {
  std::lock_guard<std::mutex> lk(g_mu);
  PointState& s = state_of(point);
  if (!s.armed) return false;
  ++s.counts.checks;
  if (s.counts.checks <= s.spec.after) return false;
  if (s.spec.prob < 1.0 && std::uniform_real_distribution<double>(0.0, 1.0)(s.rng) >= s.spec.prob) return false;
  ++s.counts.fires;
  if (value != nullptr) *value = s.spec.value;
  if (s.spec.times >= 0 && s.counts.fires >= s.spec.times) {
    s.armed = false;
    g_fault_mask.fetch_and(~bit_of(point), std::memory_order_relaxed);
  }
  return true;
}

bool fault_env_enabled() {
#if defined(ELI_FAULT_INJECTION) && ELI_FAULT_INJECTION
  return true;
#else
  return false;
#endif
}

void load_faults_from_env() {
  if (!fault_env_enabled()) return;
  static std::mutex env_mu;
  static std::atomic<bool> done{false};
  if (done.load(std::memory_order_acquire)) return;
  std::lock_guard<std::mutex> lk(env_mu);
  if (done.load(std::memory_order_relaxed)) return;
  const char* v = std::getenv("ELI_FAULTS");
  if (v != nullptr && *v != '\0') {
    try {
      arm_faults(v);
    } catch (const Error& e) {
      throw Error(ErrorKind::kInvalidArgument, std::string("ELI_FAULTS: ") + e.what());
    }
  }
  done.store(true, std::memory_order_release);
}

#if !defined(ELI_WITH_CUDA)
// The CUDA build defines this in kernels/cuda/fault_kernel.cu.
std::string poison_cuda_context(int device) {
  ELI_THROW(kNotCompiled, "poison_cuda_context(", device, "): this build has no CUDA backend");
}
#endif

}  // namespace eli
