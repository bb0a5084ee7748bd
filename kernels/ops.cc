// kernels/ops.cc: names of the ops (for error messages, tests and benchmarks).
#include "kernels/ops.h"

namespace eli {

const char* op_name(Op op) {
  switch (op) {
    case Op::kEmbedding: return "embedding";
    case Op::kRmsNorm: return "rms_norm";
    case Op::kMatmul: return "matmul";
    case Op::kRope: return "rope";
    case Op::kSwiglu: return "swiglu";
    case Op::kKvWrite: return "kv_write";
    case Op::kAttention: return "attention";
    case Op::kDequant: return "dequant";
    case Op::kCount: break;
  }
  return "unknown_op";
}

}  // namespace eli
