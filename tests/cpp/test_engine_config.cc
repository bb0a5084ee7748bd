// tests/cpp/test_engine_config.cc: the engine option table (include/eli/engine_options.def) on the
// C++ side: defaults validate; every bounded option is refused just past each bound with an
// argument error naming it and the value; n_threads is bounded by the machine; string choices and
// non-finite numbers are refused; the Engine validates before it opens anything; "auto" devices
// resolve; the CPU's default weight dtype per checkpoint dtype; the CPU KV pool's default size
// (from the model, capped by a fraction of the available memory) and explicit sizes past the
// available memory.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <vector>
#include <string>

#include "eli/engine.h"
#include "eli/error.h"
#include "runtime/device/device.h"
#include "runtime/engine/memory_plan.h"

namespace eli {
namespace {

template <typename Fn>
std::string error_of(ErrorKind kind, Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no eli::Error thrown";
  return "";
}

#define EXPECT_HAS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << "want '" << (part) << "' in: " << (text)

// Sets a numeric option by name (the X-macro gives every field; non-numeric ones are left alone).
template <typename T>
void assign(T& field, long double v) {
  field = static_cast<T>(v);
}
void assign(bool&, long double) {}
void assign(std::string&, long double) {}

bool set_number(EngineConfig& c, const std::string& name, long double v) {
#define ELI_ENGINE_OPTION(KIND, NAME, ...) \
  if (name == #NAME) {                     \
    assign(c.NAME, v);                     \
    return true;                           \
  }
#include "eli/engine_options.def"
#undef ELI_ENGINE_OPTION
  return false;
}

template <typename T>
long double as_number(const T& v) {
  return static_cast<long double>(v);
}
long double as_number(const std::string&) { return 0; }

long double default_of(const std::string& name) {
  const EngineConfig d;
#define ELI_ENGINE_OPTION(KIND, NAME, ...) \
  if (name == #NAME) return as_number(d.NAME);
#include "eli/engine_options.def"
#undef ELI_ENGINE_OPTION
  return 0;
}

TEST(EngineConfig, DefaultsValidate) {
  EXPECT_NO_THROW(validate_engine_config(EngineConfig{}));
}

TEST(EngineConfig, TableListsEveryFieldOnce) {
  std::set<std::string> names;
  for (const EngineOptionInfo& o : engine_option_infos()) {
    EXPECT_TRUE(names.insert(o.name).second) << o.name;
    EXPECT_GT(std::string(o.doc).size(), 5u) << o.name;
  }
  int n_fields = 0;
#define ELI_ENGINE_OPTION(...) ++n_fields;
#include "eli/engine_options.def"
#undef ELI_ENGINE_OPTION
  EXPECT_EQ(static_cast<int>(names.size()), n_fields);
  EXPECT_TRUE(names.count("n_threads") && names.count("block_size") && names.count("kv_cache_bytes"));
}

// Every bounded option, one past each bound (where that is not its "auto" default): an argument
// error that names the option and the value.
TEST(EngineConfig, EveryBoundedOptionRefusedPastItsBounds) {
  int checked = 0;
  for (const EngineOptionInfo& o : engine_option_infos()) {
    const std::string kind = o.kind;
    if (kind == "BOOL" || kind == "STR" || (o.min == 0 && o.max == 0)) continue;
    const std::string limit = o.limit;
    const long double step = kind == "F64" ? 0.5L : 1.0L;
    long double hi = o.max;
    if (limit == "CPU_THREADS") hi = std::min<long double>(hi, kMaxThreadsPerCpu * hardware_threads());
    std::vector<long double> bad = {hi + step};
    if (limit == "OPEN_MIN") {
      bad.push_back(o.min);
    } else if (o.min - step != default_of(o.name) && !(kind == "U64" && o.min == 0)) {
      bad.push_back(o.min - step);
    }
    for (long double v : bad) {
      EngineConfig c;
      ASSERT_TRUE(set_number(c, o.name, v)) << o.name;
      const std::string msg = error_of(ErrorKind::kInvalidArgument, [&] { validate_engine_config(c); });
      EXPECT_HAS(msg, o.name);
      EXPECT_HAS(msg, "must be in");
      ++checked;
    }
    // The bounds themselves are fine.
    EngineConfig c;
    set_number(c, o.name, hi);
    EXPECT_NO_THROW(validate_engine_config(c)) << o.name;
  }
  EXPECT_GE(checked, 8);
}

TEST(EngineConfig, ThreadsBoundedByTheMachine) {
  EngineConfig c;
  c.n_threads = kMaxThreadsPerCpu * hardware_threads();
  EXPECT_NO_THROW(validate_engine_config(c));
  c.n_threads = 100000;  // issue 19: 100,000 threads exhausted the process limit
  const std::string msg = error_of(ErrorKind::kInvalidArgument, [&] { validate_engine_config(c); });
  EXPECT_HAS(msg, "n_threads");
  EXPECT_HAS(msg, "100000");
  EXPECT_HAS(msg, "hardware thread");
  c.n_threads = -3;
  error_of(ErrorKind::kInvalidArgument, [&] { validate_engine_config(c); });
  c.n_threads = 0;  // the default: one per hardware thread
  EXPECT_NO_THROW(validate_engine_config(c));
}

TEST(EngineConfig, ChoicesAndNonFiniteRefused) {
  EngineConfig c;
  c.dtype = "fp8";
  EXPECT_HAS(error_of(ErrorKind::kInvalidArgument, [&] { validate_engine_config(c); }), "dtype must be one of");
  c = EngineConfig{};
  c.kv_cache_dtype = "int4";
  EXPECT_HAS(error_of(ErrorKind::kInvalidArgument, [&] { validate_engine_config(c); }), "kv_cache_dtype");
  c = EngineConfig{};
  for (const char* ok : {"auto", "cpu", "cuda", "cuda:0", "cuda:12"}) {
    c.device = ok;
    EXPECT_NO_THROW(validate_engine_config(c)) << ok;
  }
  for (const char* bad : {"gpu", "cuda:", "cuda:12345", "cuda:x", "cpu "}) {
    c.device = bad;
    EXPECT_HAS(error_of(ErrorKind::kInvalidArgument, [&] { validate_engine_config(c); }), "device");
  }
  c = EngineConfig{};
  c.gpu_memory_utilization = std::numeric_limits<double>::quiet_NaN();
  EXPECT_HAS(error_of(ErrorKind::kInvalidArgument, [&] { validate_engine_config(c); }), "gpu_memory_utilization");
  c.gpu_memory_utilization = std::numeric_limits<double>::infinity();
  error_of(ErrorKind::kInvalidArgument, [&] { validate_engine_config(c); });
}

// The Engine checks its options before it opens the model (a missing path would be kModelLoad).
TEST(EngineConfig, EngineValidatesBeforeLoading) {
  EngineConfig c;
  c.model = "/nonexistent/eli-model";
  c.n_threads = 100000;
  EXPECT_HAS(error_of(ErrorKind::kInvalidArgument, [&] { Engine e(c); }), "n_threads");
  c = EngineConfig{};
  c.model = "/nonexistent/eli-model";
  c.block_size = 0;
  EXPECT_HAS(error_of(ErrorKind::kInvalidArgument, [&] { Engine e(c); }), "block_size");
}

TEST(EngineConfig, ResolveDeviceName) {
  EXPECT_EQ(resolve_device_name("auto"), cuda_device_count() > 0 ? "cuda" : "cpu");
  EXPECT_EQ(resolve_device_name("cpu"), "cpu");
  EXPECT_EQ(resolve_device_name("cuda:1"), "cuda:1");
}

std::string cpu_weight_dtype(const std::string& model) {
  EngineConfig c;
  c.model = std::string(ELI_TEST_DATA_DIR) + "/models/" + model;
  c.n_threads = 1;
  c.num_kv_blocks = 8;
  c.block_size = 4;
  Engine e(c);
  return e.info().weight_dtype;
}

// dtype "auto" on the CPU: bf16 checkpoints stay bf16, f32 and f16 ones run in f32 (the quantized
// GGUF case, bf16, is tests/python/test_engine.py's, on the default Q4_1 model).
TEST(EngineConfig, CpuAutoDtypeFollowsTheCheckpoint) {
  EXPECT_EQ(cpu_weight_dtype("llama_base"), "f32");
  EXPECT_EQ(cpu_weight_dtype("llama_bf16"), "bf16");
  EXPECT_EQ(cpu_weight_dtype("llama_f16"), "f32");
}

ModelSpec small_spec() {
  ModelSpec s;
  s.architecture = "llama";
  s.vocab_size = 1000;
  s.hidden_size = 64;
  s.intermediate_size = 128;
  s.n_layers = 2;
  s.n_heads = 4;
  s.n_kv_heads = 2;
  s.head_dim = 16;
  s.max_position = 1024;
  return s;
}

KvCacheShape f32_shape(const ModelSpec& spec, int64_t block_size) {
  KvCacheShape s;
  s.n_layers = spec.n_layers;
  s.block_size = block_size;
  s.n_kv_heads = spec.n_kv_heads;
  s.head_dim = spec.head_dim;
  s.dtype = DType::kF32;
  return s;
}

// The CPU default: max_num_seqs full contexts, capped by 1/8 of the available memory (no fixed
// 4 GiB), at least one context when that fits in half of it.
TEST(EngineConfig, CpuDefaultKvBytesFollowTheModel) {
  const ModelSpec spec = small_spec();
  const KvCacheShape s = f32_shape(spec, 16);
  const uint64_t per_token = 2 * 2 * 2 * 16 * 4;  // K and V x layers x kv heads x head_dim x f32
  const uint64_t context = per_token * 1024;
  EngineConfig c;
  c.max_num_seqs = 4;
  const uint64_t big = uint64_t{1} << 40;
  EXPECT_EQ(default_kv_bytes(c, spec, s, big), 4 * context);  // what the model needs, far below 4 GiB
  c.max_num_seqs = 64;
  const uint64_t avail = 64 * context;  // 1/8 of it is 8 contexts
  EXPECT_EQ(default_kv_bytes(c, spec, s, avail), avail / 8);
  EXPECT_EQ(default_kv_bytes(c, spec, s, 4 * context), context);  // one context, within half
  EXPECT_EQ(default_kv_bytes(c, spec, s, context), context / 2);  // never past half of it
  c.max_model_len = 256;
  c.max_num_seqs = 2;
  EXPECT_EQ(default_kv_bytes(c, spec, s, big), 2 * per_token * 256);
}

TEST(EngineConfig, CpuKvSizesPastAvailableMemoryRefused) {
  auto cpu = create_cpu_device();
  const ModelSpec spec = small_spec();
  EngineConfig c;
  c.kv_cache_bytes = uint64_t{1} << 50;
  EXPECT_HAS(error_of(ErrorKind::kOutOfMemory, [&] { plan_kv_cache(c, spec, *cpu); }), "kv_cache_bytes");
  c = EngineConfig{};
  c.block_size = 1024;
  c.num_kv_blocks = (int64_t{1} << 30) - 1;  // 512 KiB per block here: 512 TiB in all
  EXPECT_HAS(error_of(ErrorKind::kOutOfMemory, [&] { plan_kv_cache(c, spec, *cpu); }), "num_kv_blocks");
  c = EngineConfig{};
  KvPlan plan = plan_kv_cache(c, spec, *cpu);
  EXPECT_GE(plan.shape.n_blocks, 1024 / 16);  // at least one full context
  EXPECT_LE(plan.shape.n_blocks, 64 * 1024 / 16);
}

}  // namespace
}  // namespace eli
