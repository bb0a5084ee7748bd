// tests/cpp/kernel_test_util.h: helpers of the kernel parity tests (test_kernels*.cc): which
// registry entries to test, staging host buffers onto the entry's device, random data (f32, and
// 16-bit weights holding exactly the values of their f32 twin), and the tolerance check. Every
// candidate is compared with the "ref" entry of the same (op, weight format, dtype).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "eli/error.h"
#include "kernels/ref/ref_kernels.h"
#include "kernels/registry.h"
#include "runtime/core/thread_pool.h"
#include "runtime/device/device.h"

namespace eli::ktest {

// True when bench/device_sanitize.sh runs the tests (ELI_TEST_UNDER_SANITIZER=1). Tests whose
// size serves statistics or coverage of many vocabularies (not the code paths a sanitizer checks)
// shrink then: racecheck slows kernels 100-1000x, and the same paths run at the smaller sizes.
inline bool under_sanitizer() {
  const char* v = std::getenv("ELI_TEST_UNDER_SANITIZER");
  return v != nullptr && v[0] == '1';
}

inline std::string entry_name(const KernelEntry& e) {
  return std::string(op_name(e.op)) + "/" + (e.device == DeviceKind::kCUDA ? "cuda" : "cpu") + "/" +
         (e.format == WeightFormat::kDense ? "" : std::string(weight_format_name(e.format)) + "/") +
         dtype_name(e.dtype) + "/" + e.variant;
}

// Registry entries to check against the reference: every usable non-ref entry of `op` for weights
// in `format` whose device is present (CUDA entries only when a GPU is visible).
inline std::vector<const KernelEntry*> candidates(Op op, WeightFormat format = WeightFormat::kDense) {
  std::vector<const KernelEntry*> out;
  for (const KernelEntry& e : all_kernels()) {
    if (e.op != op || e.format != format || std::string(e.variant) == "ref") continue;
    if (e.usable != nullptr && !e.usable()) continue;
    if (e.device == DeviceKind::kCUDA && cuda_device_count() == 0) continue;
    out.push_back(&e);
  }
  return out;
}

// Every usable non-ref CPU entry of `op`. The ops whose CUDA kernels take other argument dtypes
// than the CPU ones (GEMM's 16-bit x, 16-bit outputs, ...) are checked on the CPU here and on the
// GPU by their own suites (test_cuda_gemm.cc, test_cuda_mixed_elementwise.cc).
inline std::vector<const KernelEntry*> cpu_candidates(Op op, WeightFormat format = WeightFormat::kDense) {
  std::vector<const KernelEntry*> out;
  for (const KernelEntry* e : candidates(op, format))
    if (e->device == DeviceKind::kCPU) out.push_back(e);
  return out;
}

inline const KernelEntry& ref_of(const KernelEntry& e) {
  return get_kernel(e.op, DeviceKind::kCPU, e.format, e.dtype, "ref");
}

// Staging of host vectors for one kernel call on `kind`: CPU kernels use the host memory itself;
// CUDA kernels get device copies, and outputs are copied back by finish().
class Stage {
 public:
  explicit Stage(DeviceKind kind) {
    if (kind == DeviceKind::kCUDA) dev_ = create_device(DeviceId{DeviceKind::kCUDA, 0});
  }
  ~Stage() {
    if (dev_) for (void* p : allocs_) dev_->free(p);
  }
  template <typename T>
  const T* in(const std::vector<T>& host) {
    if (!dev_ || host.empty()) return host.data();
    return static_cast<const T*>(upload(host.data(), host.size() * sizeof(T)));
  }
  template <typename T>
  T* inout(std::vector<T>& host) {
    if (!dev_ || host.empty()) return host.data();
    void* d = upload(host.data(), host.size() * sizeof(T));
    back_.push_back({host.data(), d, host.size() * sizeof(T)});
    return static_cast<T*>(d);
  }
  void finish() {
    if (!dev_) return;
    dev_->synchronize();
    for (const auto& b : back_) dev_->copy_device_to_host(b.host, b.dev, b.bytes);
    dev_->synchronize();
  }

 private:
  void* upload(const void* src, size_t bytes) {
    void* d = dev_->allocate(bytes);
    allocs_.push_back(d);
    dev_->copy_host_to_device(d, src, bytes);
    return d;
  }
  struct Back {
    void* host;
    void* dev;
    size_t bytes;
  };
  std::unique_ptr<Device> dev_;
  std::vector<void*> allocs_;
  std::vector<Back> back_;
};

// Thread pools to run CPU candidates with: none (calling thread) and a 3-thread pool.
inline std::vector<ThreadPool*> pools_for(const KernelEntry& e) {
  static ThreadPool pool(3);
  if (e.device != DeviceKind::kCPU) return {nullptr};
  return {nullptr, &pool};
}

inline std::vector<float> rand_vec(std::mt19937& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}
inline std::vector<uint16_t> rand_bf16(std::mt19937& rng, size_t n) {
  std::vector<float> f = rand_vec(rng, n);
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = f32_to_bf16(f[i]);
  return v;
}

// A weight matrix of dtype dt (f32, bf16 or f16): f holds the values (exactly representable in
// dt), h their 16-bit bits (empty for f32). ptr() is what a kernel of that dtype reads.
struct Weights {
  DType dt = DType::kF32;
  std::vector<float> f;
  std::vector<uint16_t> h;
  const void* ptr() const { return dt == DType::kF32 ? static_cast<const void*>(f.data()) : h.data(); }
};
inline Weights rand_weights(std::mt19937& rng, DType dt, size_t n, float lo = -1.0f, float hi = 1.0f) {
  Weights w;
  w.dt = dt;
  w.f = rand_vec(rng, n, lo, hi);
  if (dt == DType::kF32) return w;
  w.h.resize(n);
  for (size_t i = 0; i < n; ++i) {
    w.h[i] = dt == DType::kF16 ? f32_to_f16(w.f[i]) : f32_to_bf16(w.f[i]);
    w.f[i] = dt == DType::kF16 ? f16_to_f32(w.h[i]) : bf16_to_f32(w.h[i]);
  }
  return w;
}

// Expects fn() to throw eli::Error of kind `kind`.
template <typename Fn>
void expect_error_kind(ErrorKind kind, Fn&& fn, const std::string& what) {
  try {
    fn();
    ADD_FAILURE() << what << ": no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << what << ": " << e.what();
  }
}

constexpr float kSentinel = 12345.0f;  // fills padding of strided outputs: must stay untouched

// Every element within tol * max(|ref|) (sentinels excluded from the scale) (at least
// tol * min_scale); NaN in either side fails. min_scale: the magnitude of the terms an output is
// computed from, where outputs can be far smaller than those (cancellation).
inline void expect_close(const std::vector<float>& got, const std::vector<float>& ref, double tol,
                         const std::string& what, double min_scale = 1e-3) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double scale = min_scale;
  for (float r : ref)
    if (r != kSentinel) scale = std::max(scale, static_cast<double>(std::fabs(r)));
  size_t bad = 0, first = 0;
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (!(err <= tol * scale)) {
      if (bad++ == 0) first = i;
      if (!(err <= worst)) worst = err;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " elements off (first at " << first
                     << ": got " << (got.empty() ? 0.f : got[first]) << ", ref " << (ref.empty() ? 0.f : ref[first])
                     << "; worst error " << worst << ", allowed " << tol * scale << ")";
}

}  // namespace eli::ktest
