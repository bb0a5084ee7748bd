// kernels/cpu/cpu_features.cc: see cpu_features.h. Uses __builtin_cpu_supports for the CPU side
// and CPUID.OSXSAVE + XGETBV(0) for the OS side, then applies the ELI_CPU_ISA cap.
#include "kernels/cpu/cpu_features.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "eli/error.h"

#if defined(ELI_X86) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#define ELI_CPU_PROBE_X86 1
#endif

namespace eli {

namespace {

#ifdef ELI_CPU_PROBE_X86
uint64_t os_xcr0() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
  if ((ecx & (1u << 27)) == 0) return 0;  // OSXSAVE: the OS enabled XGETBV
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}
#endif

CpuFeatures probe_hardware() {
  CpuFeatures f;
#ifdef ELI_CPU_PROBE_X86
  __builtin_cpu_init();
  const uint64_t xcr0 = os_xcr0();
  const bool os_avx = (xcr0 & 0x6) == 0x6;        // XMM + YMM state
  const bool os_avx512 = (xcr0 & 0xe6) == 0xe6;   // + opmask, ZMM_Hi256, Hi16_ZMM
  f.avx2_fma = os_avx && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
  f.avx512 = f.avx2_fma && os_avx512 && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq");
#endif
  return f;
}

CpuFeatures probe() {
  const char* off = std::getenv("ELI_CPU_NO_SIMD");
  if (off != nullptr && std::strcmp(off, "1") == 0) return CpuFeatures{};
  return cap_cpu_features(cpu_hardware_features(), std::getenv("ELI_CPU_ISA"));
}

}  // namespace

CpuFeatures cap_cpu_features(CpuFeatures hw, const char* isa) {
  if (isa == nullptr || *isa == '\0' || std::strcmp(isa, "native") == 0 || std::strcmp(isa, "avx512") == 0) {
    return hw;
  }
  if (std::strcmp(isa, "avx2") == 0) {
    hw.avx512 = false;
    return hw;
  }
  if (std::strcmp(isa, "generic") == 0) return CpuFeatures{};
  ELI_THROW(kInvalidArgument, "ELI_CPU_ISA=", isa,
            ": expected generic, avx2 or avx512 (the highest instruction set the CPU kernels may use), or native");
}

const CpuFeatures& cpu_hardware_features() {
  static const CpuFeatures kFeatures = probe_hardware();
  return kFeatures;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures kFeatures = probe();
  return kFeatures;
}

bool cpu_has_avx2() { return cpu_features().avx2_fma; }
bool cpu_has_avx512() { return cpu_features().avx512; }

}  // namespace eli
