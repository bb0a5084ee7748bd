// kernels/cuda/attention_kvquant.cu: the general path of Op::kAttention over an int8 / fp8 e4m3 KV
// cache (registry dtypes kI8 / kF8E4M3; the entry points attention_i8_cuda / attention_fp8_cuda in
// attention_bf16.cu send decode batches to the split-K decode kernel and everything else here):
// checks the arguments as the 16-bit path does, flattens them into attn_kvq::Params and launches
// attention_kvquant_kernel.cuh's kernel for the cache type (prefill, mixed and decode batches
// alike; dequantization happens inside the kernel). q and out may each be f32, bf16 or f16.
#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>

#include "eli/dtype.h"
#include "eli/error.h"
#include "kernels/cuda/attention_kvquant_kernel.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {

namespace {

constexpr int64_t kMaxGridYZ = 65535;

int act_kind(DType dt, const char* what) {
  if (dt == DType::kF32) return 0;
  if (dt == DType::kBF16) return 1;
  if (dt == DType::kF16) return 2;
  ELI_THROW(kUnsupported, "attention: ", what, " must be float32, bfloat16 or float16, not ", dtype_name(dt));
}

template <typename C>
void attention_kvquant_cuda(const AttentionArgs& a, const ExecContext& ctx, DType cache) {
  ELI_CHECK(a.n_kv_heads > 0 && a.n_heads > 0 && a.n_heads % a.n_kv_heads == 0, "attention: n_heads ", a.n_heads,
            " not a positive multiple of n_kv_heads ", a.n_kv_heads);
  ELI_CHECK(a.block_size > 0 && a.block_size <= INT32_MAX && a.head_dim > 0, "attention: bad block_size/head_dim");
  ELI_CHECK_KIND(kUnsupported, a.head_dim <= attn_kvq::kMaxHeadDim, "attention: head_dim ", a.head_dim,
                 " exceeds the CUDA compressed-KV kernel's limit of ", attn_kvq::kMaxHeadDim);
  ELI_CHECK(a.k_scale != nullptr && a.v_scale != nullptr, "attention: a ", dtype_name(cache),
            " KV cache needs k_scale and v_scale");
  ELI_CHECK(a.n_seqs >= 0 && a.max_blocks_per_seq >= 0 && a.max_query_len >= 0, "attention: negative size");
  attn_kvq::Params p{};
  p.q_kind = act_kind(a.q_dtype, "q");
  p.out_kind = act_kind(a.out_dtype, "out");
  if (a.n_seqs == 0) return;
  ELI_CHECK(a.n_seqs <= kMaxGridYZ && (a.n_heads + attn_kvq::kWarps - 1) / attn_kvq::kWarps <= kMaxGridYZ,
            "attention: ", a.n_seqs, " sequences or ", a.n_heads, " heads exceed the grid limit");
  p.out = a.out;
  p.q = a.q;
  p.k_cache = a.k_cache;
  p.v_cache = a.v_cache;
  p.k_scale = a.k_scale;
  p.v_scale = a.v_scale;
  p.cu_seqlens = a.cu_seqlens;
  p.positions = a.positions;
  p.context_lens = a.context_lens;
  p.block_tables = a.block_tables;
  p.q_stride = a.q_stride;
  p.out_stride = a.out_stride;
  p.max_blocks = a.max_blocks_per_seq;
  p.kv_cap = a.max_blocks_per_seq * a.block_size;
  p.window = a.sliding_window;
  p.n_seqs = static_cast<int>(a.n_seqs);
  p.n_heads = static_cast<int>(a.n_heads);
  p.n_kv_heads = static_cast<int>(a.n_kv_heads);
  p.group = static_cast<int>(a.n_heads / a.n_kv_heads);
  p.head_dim = static_cast<int>(a.head_dim);
  p.block_size = static_cast<int>(a.block_size);
  p.scale_log2 = a.scale * 1.4426950408889634f;
  // One pass over each sequence's queries when their count is known; else a bounded grid whose
  // blocks stride over the rest (a sequence has at most kv_cap queries).
  const int64_t rows = a.max_query_len > 0 ? a.max_query_len : std::max<int64_t>(p.kv_cap, 1);
  const int64_t q_blocks = std::min<int64_t>(rows, INT32_MAX);
  attn_kvq::launch<C>(p, q_blocks, static_cast<cudaStream_t>(ctx.stream));
  ELI_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

namespace attn_kvq {
void attention_kvquant_simple(const AttentionArgs& a, const ExecContext& ctx, DType cache) {
  if (cache == DType::kI8) {
    attention_kvquant_cuda<int8_t>(a, ctx, cache);
  } else {
    ELI_CHECK(cache == DType::kF8E4M3, "attention_kvquant: not a compressed cache: ", dtype_name(cache));
    attention_kvquant_cuda<__nv_fp8_e4m3>(a, ctx, cache);
  }
}
}  // namespace attn_kvq

}  // namespace eli
