// kernels/cpu/cpu_features.h: runtime probe of the SIMD features the CPU kernels need.
//
// Invariants: a feature reads true only if the CPU has it AND the OS saves its register state
// (XSAVE/XGETBV check), so a kernel gated on it cannot fault. Probed once; thread-safe. On
// non-x86 builds everything reads false. ELI_CPU_NO_SIMD=1 in the environment turns all off
// (to test the fallbacks).
#pragma once

namespace eli {

struct CpuFeatures {
  bool avx2_fma = false;  // AVX2 + FMA + F16C with OS AVX state
  bool avx512 = false;    // AVX-512 F/BW/VL/DQ with OS opmask/ZMM state
};

const CpuFeatures& cpu_features();
// Registry predicates (KernelEntry::usable).
bool cpu_has_avx2();
bool cpu_has_avx512();

}  // namespace eli
