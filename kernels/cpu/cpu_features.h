// kernels/cpu/cpu_features.h: runtime probe of the SIMD features the CPU kernels need, and the
// environment switch that caps them.
//
// Invariants: a feature reads true only if the CPU has it AND the OS saves its register state
// (XSAVE/XGETBV check), so a kernel gated on it cannot fault. Probed once; thread-safe. On
// non-x86 builds everything reads false.
// ELI_CPU_ISA=generic|avx2|avx512 caps the instruction set the kernel registry may choose (to test
// every variant on one machine: CI runs the CPU suites again with avx2 and generic); a cap never
// adds a feature the CPU lacks; unset, empty or "native" is no cap; anything else is an
// eli::Error (kInvalidArgument) at the first probe. ELI_CPU_NO_SIMD=1 is the older spelling of
// ELI_CPU_ISA=generic.
#pragma once

namespace eli {

struct CpuFeatures {
  bool avx2_fma = false;  // AVX2 + FMA + F16C with OS AVX state
  bool avx512 = false;    // AVX-512 F/BW/VL/DQ with OS opmask/ZMM state
};

// What the registry may use: the hardware's features under the ELI_CPU_ISA cap.
const CpuFeatures& cpu_features();
// What the CPU and OS support, uncapped.
const CpuFeatures& cpu_hardware_features();
// Registry predicates (KernelEntry::usable).
bool cpu_has_avx2();
bool cpu_has_avx512();

// The features of `hw` allowed by an ELI_CPU_ISA value (nullptr: no cap); throws eli::Error
// (kInvalidArgument) naming the accepted values for anything else.
CpuFeatures cap_cpu_features(CpuFeatures hw, const char* isa);

}  // namespace eli
