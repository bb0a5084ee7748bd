// tests/cpp/device_test_util.h: helpers shared by the device (CUDA) kernel tests: a device buffer
// that frees itself, seeded random data, and an element-wise closeness check that reports the
// first few mismatches. Uses only the Device API, so it compiles in every build.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "runtime/device/device.h"

namespace eli {

// A device buffer of n T's; filled from / read back to host vectors.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer(Device& dev, size_t n)
      : dev_(dev), n_(n), p_(static_cast<T*>(dev.allocate(std::max<size_t>(1, n) * sizeof(T)))) {}
  DeviceBuffer(Device& dev, const std::vector<T>& host) : DeviceBuffer(dev, host.size()) { upload(host); }
  ~DeviceBuffer() { dev_.free(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<T>& host) {
    if (!host.empty()) dev_.copy_host_to_device(p_, host.data(), host.size() * sizeof(T));
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    if (n_) dev_.copy_device_to_host(host.data(), p_, n_ * sizeof(T));
    return host;
  }
  T* get() const { return p_; }

 private:
  Device& dev_;
  size_t n_;
  T* p_;
};

inline std::vector<float> random_floats(size_t n, std::mt19937& rng, float lo = -2.f, float hi = 2.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// |got - want| <= atol + rtol * |want| for every element.
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want, float rtol, float atol,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= atol + rtol * std::fabs(want[i]))) {
      if (++bad <= 3) ADD_FAILURE() << what << ": [" << i << "] got " << got[i] << " want " << want[i];
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

}  // namespace eli
