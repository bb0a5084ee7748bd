// kernels/cpu/quant_matmul.h: the CPU kGemv / kGemm kernels of GGUF block weights
// (WeightFormat::kGgufBlocks; GemvArgs / GemmArgs with `workspace` holding the quantized x rows:
// at least m * k / 32 * 40 bytes, see quant_dot.h). Semantics are those of the reference
// (dequantize, then the f32 product) within the activation-quantization error.
#pragma once

#include "eli/dtype.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/registry.h"

namespace eli {

// The kernel of (op, block type) whose dot products use `isa` (kGeneric, or kAvx2 on x86 builds);
// nullptr where op is not kGemv / kGemm or wtype is not a GGUF block type.
KernelFn quant_matmul_cpu_kernel(Op op, DType wtype, CpuIsaKind isa);

}  // namespace eli
