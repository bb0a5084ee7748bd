// kernels/ops.cc: names of the ops (for error messages, tests and benchmarks).
#include "kernels/ops.h"

namespace eli {

size_t attention_workspace_bytes(int64_t n_tokens, int64_t n_heads, int64_t head_dim) {
  if (n_tokens <= 0 || n_heads <= 0 || head_dim <= 0) return 0;
  return static_cast<size_t>(n_tokens) * static_cast<size_t>(n_heads) * kAttentionMaxSplits *
         static_cast<size_t>(head_dim + 2) * sizeof(float);
}

const char* op_name(Op op) {
  switch (op) {
    case Op::kEmbedding: return "embedding";
    case Op::kAttention: return "attention";
    case Op::kDequant: return "dequant";
    case Op::kGemv: return "gemv";
    case Op::kGemm: return "gemm";
    case Op::kNormCast: return "norm_cast";
    case Op::kGatedAct: return "gated_act";
    case Op::kRopeKvWrite: return "rope_kv_write";
    case Op::kSample: return "sample";
    case Op::kScatterTokens: return "scatter_tokens";
    case Op::kCount: break;
  }
  return "unknown_op";
}

const char* gated_act_name(GatedAct act) {
  switch (act) {
    case GatedAct::kNone: return "none";
    case GatedAct::kSilu: return "silu";
    case GatedAct::kGeluTanh: return "gelu_tanh";
  }
  return "unknown";
}

}  // namespace eli
