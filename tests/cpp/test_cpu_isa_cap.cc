// tests/cpp/test_cpu_isa_cap.cc: the ELI_CPU_ISA switch (kernels/cpu/cpu_features.h) that caps the
// instruction set the kernel registry may choose. The cap function is tested directly; the
// registry test reads the switch of the environment this binary runs under, so CI's passes with
// ELI_CPU_ISA=avx2 and =generic (.ci/run) check that the registry then picks the capped variant.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "eli/error.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/registry.h"

namespace eli {
namespace {

constexpr CpuFeatures kAll{true, true};
constexpr CpuFeatures kAvx2Only{true, false};

void expect_features(const CpuFeatures& got, bool avx2, bool avx512) {
  EXPECT_EQ(got.avx2_fma, avx2);
  EXPECT_EQ(got.avx512, avx512);
}

TEST(CpuIsaCap, NoCapKeepsTheHardware) {
  for (const char* isa : {static_cast<const char*>(nullptr), "", "native", "avx512"}) {
    expect_features(cap_cpu_features(kAll, isa), true, true);
    expect_features(cap_cpu_features(kAvx2Only, isa), true, false);
  }
}

TEST(CpuIsaCap, CapsLowerButNeverAdd) {
  expect_features(cap_cpu_features(kAll, "avx2"), true, false);
  expect_features(cap_cpu_features(kAll, "generic"), false, false);
  expect_features(cap_cpu_features(CpuFeatures{}, "avx2"), false, false);
  expect_features(cap_cpu_features(CpuFeatures{}, "avx512"), false, false);
}

TEST(CpuIsaCap, UnknownValueIsATypedError) {
  for (const char* isa : {"AVX2", "sse4", "avx2 ", "1"}) {
    try {
      cap_cpu_features(kAll, isa);
      FAIL() << "expected eli::Error for " << isa;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      const std::string msg = e.what();
      EXPECT_NE(msg.find("ELI_CPU_ISA"), std::string::npos) << msg;
      EXPECT_NE(msg.find("generic, avx2 or avx512"), std::string::npos) << msg;
    }
  }
}

// The variant the registry picks for a CPU op is the best the capped features allow.
TEST(CpuIsaCap, RegistryPicksTheCappedVariant) {
  const CpuFeatures& hw = cpu_hardware_features();
  const char* no_simd = std::getenv("ELI_CPU_NO_SIMD");
  const CpuFeatures want = no_simd != nullptr && std::strcmp(no_simd, "1") == 0
                               ? CpuFeatures{}
                               : cap_cpu_features(hw, std::getenv("ELI_CPU_ISA"));
  expect_features(cpu_features(), want.avx2_fma, want.avx512);
  std::string expect = "generic";
#ifdef ELI_X86
  if (want.avx512) {
    expect = "avx512";
  } else if (want.avx2_fma) {
    expect = "avx2";
  }
#endif
  for (Op op : {Op::kGemm, Op::kAttention, Op::kNormCast}) {
    const KernelEntry* e = find_kernel(op, DeviceKind::kCPU, DType::kF32);
    ASSERT_NE(e, nullptr) << op_name(op);
    EXPECT_EQ(std::string(e->variant), expect) << op_name(op);
  }
  const char* isa = std::getenv("ELI_CPU_ISA");
  std::printf("ELI_CPU_ISA=%s: CPU kernels run %s\n", isa != nullptr ? isa : "(unset)", expect.c_str());
}

}  // namespace
}  // namespace eli
