// kernels/cuda/attention_bf16.cu: Op::kAttention on CUDA with a 16-bit KV cache, bf16
// (attention_bf16_cuda) or f16 (attention_f16_cuda) (AttentionArgs, kernels/ops.h): both are
// attention_half_cuda<T> for the cache's element type T. q and out are f32 or T (a q or out of
// the other 16-bit type is refused, ErrorKind::kUnsupported). It checks the arguments, then picks
// one of two kernels (each a template on T, same variants and launch configurations for both
// types) on the host:
// - decode (attention_decode.cu) when every sequence has at most kDecodeMaxQueryLen queries
//   (AttentionArgs::max_query_len, known and small): split-K over the context in one kernel (the
//   last CTA of each query chunk combines the splits), with the number of splits chosen for full
//   waves of resident CTAs (choose_splits), limited by kAttentionMaxSplits, by the context (at
//   least kMinSplitBytes of K and V a split; max_context_len may be an upper bound, as under CUDA
//   graphs: each split's range comes from the device-side lengths and may be empty), by the
//   workspace and by the split counters (kDecodeSlotCounters);
// - prefill (attention_prefill_kernel.cuh) otherwise, including max_query_len == 0 (unknown): tensor-core
//   flash attention, correct for any ragged batch;
// - both, for a mixed batch of many sequences (max_query_len > kDecodeMaxQueryLen and at least
//   kMixedSplitMinUnits (sequence, kv head) pairs per SM): the decode kernel (without splits)
//   takes the sequences of one query (decode rows) and the prefill kernel skips them.
//   Continuous batching's mixed steps hold hundreds of decode rows beside a few prefill chunks;
//   in the prefill kernel each decode row would cost a 64-row tile per q head, re-reading the
//   sequence's K/V once per q head of its group.
// Semantics are attention_ref_bf16's / attention_ref_f16's (kernels/ref/attention_ref.cc).
// An int8 / fp8 cache (attention_i8_cuda / attention_fp8_cuda, attention_quant_cuda below): decode
// batches run the same split-K decode kernel on the stored bytes and their scales (q / out f32 or
// bf16); everything else runs the compressed-KV kernel of attention_kvquant.cu.
// Contract beyond the args struct: a nonzero max_query_len bounds every sequence's query count
// (the workspace is laid out for n_seqs * max_query_len tokens); launches that may run at the same
// time (other streams, graphs replayed concurrently) must use different workspaces: each workspace
// gets its own split counters (attention_decode.cu, shared by both cache types), which every
// launch leaves at zero, so the workspace needs no initialisation and no memset is ever issued.
// Nothing is allocated, nothing synchronises the host, and everything is launched on ctx.stream:
// the launcher is CUDA-graph capturable.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/sm_count.h"
#include "eli/dtype.h"
#include "eli/error.h"
#include "kernels/cuda/attention_bf16.cuh"
#include "kernels/cuda/attention_kvquant_kernel.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/pdl.cuh"
#include "kernels/cuda_tuning_knobs.h"
#include "runtime/device/cuda/cuda_check.h"

namespace eli {
namespace {

constexpr int64_t kDecodeMaxQueryLen = 4;
// A split must stream at least this many bytes of K and V per kv head: the split-K combine (a
// fence, an arrival counter and a second read of the partials by the last CTA) costs ~5 us, about
// what one CTA takes to stream 128 KiB, so shorter splits lose (measured on an H100 with
// bench/cuda_decode_step_bench.cc: at context 128 one split instead of two saves 5.5 us per layer).
constexpr int64_t kMinSplitBytes = int64_t{128} << 10;
constexpr int64_t kMinSplitLenFloor = 128;  // a tile for each of a decode CTA's 8 warps (16 rows at hd 64)
constexpr int64_t kMaxGridYZ = 65535;
constexpr int64_t kPrefillRows = 64;  // query rows per prefill CTA
// A batch with longer queries whose sequences give at least this many (sequence, kv head) units
// per SM splits between the decode and the prefill kernel (see attention_half_cuda).
constexpr int64_t kMixedSplitMinUnits = 2;

using cuda::sm_count;

// Splits of the decode kernel for `units` CTAs per split and `slots` CTAs resident on the GPU at
// once (max_splits <= kAttentionMaxSplits). If every CTA of max_splits is resident at once, the
// most splits (shortest CTAs) win; otherwise, with efficiency(s) = waves / ceil(waves) for
// waves = units * s / slots (how full the last wave runs), the fewest splits reaching 85% of the
// best efficiency.
int64_t choose_splits(int64_t units, int64_t slots, int64_t max_splits) {
  if (units * max_splits <= slots) return max_splits;
  double eff[kAttentionMaxSplits + 1] = {};
  double best = 0.0;
  for (int64_t s = 1; s <= max_splits; ++s) {
    const double waves = static_cast<double>(units * s) / static_cast<double>(slots);
    eff[s] = waves / std::ceil(waves);
    best = std::max(best, eff[s]);
  }
  for (int64_t s = 1; s <= max_splits; ++s) {
    if (eff[s] >= 0.85 * best) return s;
  }
  return 1;
}

// Positions per split at least (the kAttnMinSplit knob > 0 overrides, for tuning).
int64_t min_split_len_for(int64_t head_dim, int64_t bytes_per_value) {
  const int64_t forced = cuda::knob(cuda::Knob::kAttnMinSplit);
  if (forced > 0) return forced;
  // K + V of bytes_per_value each (2: a 16-bit cache; 1: int8 / fp8, whose scales are not counted).
  return std::max(kMinSplitLenFloor, kMinSplitBytes / (2 * bytes_per_value * std::max<int64_t>(head_dim, 1)));
}

bool aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

namespace attn {
void allow_dynamic_smem(const void* kernel, size_t bytes, std::atomic<uint64_t>* done_devices) {
  int dev = 0;
  ELI_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = dev >= 0 && dev < 64 ? (uint64_t{1} << dev) : 0;
  if (bit != 0 && (done_devices->load(std::memory_order_relaxed) & bit)) return;
  ELI_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  done_devices->fetch_or(bit, std::memory_order_relaxed);
}
}  // namespace attn

namespace {

template <typename T>
struct CacheType;
template <>
struct CacheType<__nv_bfloat16> {
  static constexpr DType kDType = DType::kBF16;
  static constexpr DType kOther = DType::kF16;
};
template <>
struct CacheType<__half> {
  static constexpr DType kDType = DType::kF16;
  static constexpr DType kOther = DType::kBF16;
};

// The decode kernel's query chunks for at most max_q queries per sequence: sets p.n_qchunks (the
// grid's, grid-stride beyond) and p.n_qchunks_cap (the counters' bound); returns QMAX.
template <typename T>
int set_query_chunks(attn::Params<T>& p, int64_t max_q) {
  const int64_t n_q = max_q * p.group;  // queries per (seq, kv head) at most
  const int qmax = attn::decode_qmax(n_q);
  const int64_t qchunks = ceil_div(n_q, qmax);
  p.n_qchunks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(qchunks, kMaxGridYZ / p.n_kv_heads)));
  p.n_qchunks_cap = static_cast<int>(std::min<int64_t>(qchunks, attn::kDecodeSlotCounters + 1));
  return qmax;
}

// The split-K decode kernel for a decode-like batch (every sequence at most kDecodeMaxQueryLen
// queries): splits chosen for full waves, within the workspace and the split counters. KV: the
// stored element type (bytes_per_value of it per cached value: the split length bound).
template <typename T, typename KV>
void run_decode(attn::Params<T>& p, const AttentionArgs& a, int64_t bytes_per_value, cudaStream_t stream) {
  const int qmax = set_query_chunks(p, a.max_query_len);
  // Splits: at most kAttentionMaxSplits, at least min_split_len_for(hd) positions each, within the
  // workspace; among those, the fewest whose wave efficiency is near the best (choose_splits).
  int64_t span = p.kv_cap;
  if (a.max_context_len > 0) span = std::min(span, a.max_context_len);
  if (a.sliding_window > 0) span = std::min(span, a.sliding_window + a.max_query_len - 1);
  const int64_t min_split_len = min_split_len_for(a.head_dim, bytes_per_value);
  int64_t max_splits = std::min<int64_t>(kAttentionMaxSplits, ceil_div(std::max<int64_t>(span, 1), min_split_len));
  const int64_t ws_tokens = a.n_seqs * a.max_query_len;
  const size_t per_split = static_cast<size_t>(ws_tokens) * a.n_heads * (a.head_dim + 2) * sizeof(float);
  if (a.workspace != nullptr && aligned(a.workspace, 16)) {
    max_splits = std::min<int64_t>(max_splits, static_cast<int64_t>(a.workspace_bytes / per_split));
  } else {
    max_splits = 1;
  }
  // Each query chunk's splits need an arrival counter (more chunks than that never split anyway:
  // their CTAs fill many waves on their own).
  if (a.n_seqs * a.n_kv_heads * p.n_qchunks_cap > attn::kDecodeSlotCounters) max_splits = 1;
  int64_t splits = 1;
  if (max_splits > 1) {
    const int64_t units = a.n_seqs * a.n_kv_heads * p.n_qchunks;
    splits = choose_splits(units, sm_count() * attn::decode_ctas_per_sm<T, KV>(p, qmax), max_splits);
  }
  if (splits > 1) p.counter_slot = attn::decode_counter_slot(a.workspace);
  if (splits > 1 && p.counter_slot >= 0) {
    p.n_splits = static_cast<int>(splits);
    p.ws_tokens = ws_tokens;
    p.ws_o = static_cast<float*>(a.workspace);
    p.ws_m = p.ws_o + ws_tokens * a.n_heads * splits * a.head_dim;
    p.ws_l = p.ws_m + ws_tokens * a.n_heads * splits;
  }
  attn::launch_decode<T, KV>(p, qmax, stream);
}

// AttentionArgs flattened for the kernels, before the launch decisions (splits, query chunks).
template <typename T>
attn::Params<T> make_params(const AttentionArgs& a, bool q_half, bool out_half) {
  attn::Params<T> p{};
  p.out = a.out;
  p.q = a.q;
  p.k_cache = static_cast<const T*>(a.k_cache);
  p.v_cache = static_cast<const T*>(a.v_cache);
  p.cu_seqlens = a.cu_seqlens;
  p.positions = a.positions;
  p.context_lens = a.context_lens;
  p.block_tables = a.block_tables;
  p.q_stride = a.q_stride;
  p.out_stride = a.out_stride;
  p.max_blocks_per_seq = a.max_blocks_per_seq;
  p.kv_cap = a.max_blocks_per_seq * a.block_size;
  p.sliding_window = a.sliding_window;
  p.n_seqs = static_cast<int>(a.n_seqs);
  p.n_heads = static_cast<int>(a.n_heads);
  p.n_kv_heads = static_cast<int>(a.n_kv_heads);
  p.group = static_cast<int>(a.n_heads / a.n_kv_heads);
  p.head_dim = static_cast<int>(a.head_dim);
  p.block_size = static_cast<int>(a.block_size);
  p.scale_log2 = a.scale * attn::kLog2e;
  p.q_half = q_half;
  p.out_half = out_half;
  p.q_vec = a.head_dim % 8 == 0 && aligned(a.q, 16) && a.q_stride % (q_half ? 8 : 4) == 0;
  p.kv_vec = a.head_dim % 8 == 0 && aligned(a.k_cache, 16) && aligned(a.v_cache, 16);
  p.out_pair = a.head_dim % 2 == 0 && a.out_stride % 2 == 0 && aligned(a.out, out_half ? 4 : 8);
  p.n_splits = 1;
  p.n_qchunks = 1;
  p.n_qchunks_cap = 1;
  p.counter_slot = -1;
  p.pdl_trigger_early = cuda::knob(cuda::Knob::kAttnTriggerEarly) != 0;
  p.bs_shift = -1;
  for (int b = 0; b < 31; ++b) {
    if ((int64_t{1} << b) == a.block_size) p.bs_shift = b;
  }
  return p;
}

template <typename T>
void attention_half_cuda(const void* args_ptr, const ExecContext& ctx) {
  constexpr DType kCache = CacheType<T>::kDType, kOther = CacheType<T>::kOther;
  const AttentionArgs& a = *static_cast<const AttentionArgs*>(args_ptr);
  ELI_CHECK(a.n_kv_heads > 0 && a.n_heads > 0 && a.n_heads % a.n_kv_heads == 0, "attention: n_heads ", a.n_heads,
            " not a positive multiple of n_kv_heads ", a.n_kv_heads);
  ELI_CHECK(a.block_size > 0 && a.block_size <= INT32_MAX && a.head_dim > 0, "attention: bad block_size/head_dim");
  ELI_CHECK_KIND(kUnsupported, a.head_dim <= attn::kMaxHeadDim, "attention: head_dim ", a.head_dim,
                 " exceeds the CUDA 16-bit-cache kernels' limit of ", attn::kMaxHeadDim);
  ELI_CHECK_KIND(kUnsupported, a.q_dtype != kOther && a.out_dtype != kOther, "attention: q ",
                 dtype_name(a.q_dtype), " / out ", dtype_name(a.out_dtype), " with a ", dtype_name(kCache),
                 " KV cache: the 16-bit q and out must be of the cache's type (", dtype_name(kCache), ") or f32");
  ELI_CHECK(a.q_dtype == DType::kF32 || a.q_dtype == kCache, "attention: q must be f32 or ", dtype_name(kCache),
            ", not ", dtype_name(a.q_dtype));
  ELI_CHECK(a.out_dtype == DType::kF32 || a.out_dtype == kCache, "attention: out must be f32 or ", dtype_name(kCache),
            ", not ", dtype_name(a.out_dtype));
  ELI_CHECK(a.n_seqs >= 0 && a.max_blocks_per_seq >= 0 && a.max_query_len >= 0, "attention: negative size");
  if (a.n_seqs == 0) return;
  ELI_CHECK(a.n_seqs <= kMaxGridYZ && a.n_heads <= kMaxGridYZ, "attention: ", a.n_seqs, " sequences or ",
            a.n_heads, " heads exceed the grid limit");

  const bool q_half = a.q_dtype == kCache, out_half = a.out_dtype == kCache;
  attn::Params<T> p = make_params<T>(a, q_half, out_half);
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream);

  p.decode_q_max = 0;
  if (a.max_query_len > kDecodeMaxQueryLen && a.n_seqs * a.n_kv_heads >= kMixedSplitMinUnits * sm_count()) {
    // A mixed batch of many sequences (continuous batching: decode rows beside prefill chunks):
    // the decode kernel takes the sequences of one query (reading each K/V row once per kv head,
    // for its whole query group), the prefill kernel the rest. Without splits: the workspace is
    // laid out for decode batches, and these CTAs fill the GPU anyway.
    p.decode_q_max = 1;  // decode rows (1 query: the smallest kernel variant for the group)
    attn::launch_decode<T>(p, set_query_chunks(p, 1), stream);
  } else if (a.max_query_len > 0 && a.max_query_len <= kDecodeMaxQueryLen) {
    run_decode<T, T>(p, a, 2, stream);
    return;
  }

  // Prefill: tiles of query rows per sequence; unknown lengths are bounded by the table capacity
  // (any shortfall is covered by the kernel's grid-stride loop).
  const int64_t rows = a.max_query_len > 0 ? a.max_query_len : std::min<int64_t>(std::max<int64_t>(p.kv_cap, 1), 1 << 16);
  const int64_t q_tiles = std::min(ceil_div(rows, kPrefillRows), kMaxGridYZ);
  attn::launch_prefill<T>(p, q_tiles, stream);
}

// An int8 / fp8 cache (KV = int8_t / __nv_fp8_e4m3, kernels/cuda/kv_quant.cuh): a decode-like batch
// whose shapes the split-K decode kernel's vector layout takes (head_dim % 8 == 0, 8-byte aligned
// caches; q and out f32 or bf16) runs it with the cache's scales; everything else (prefill, mixed
// batches, other shapes, f16 activations) runs the compressed-KV kernel (attention_kvquant.cu),
// which also checks the arguments.
template <typename KV>
void attention_quant_cuda(const void* args_ptr, const ExecContext& ctx, DType cache) {
  const AttentionArgs& a = *static_cast<const AttentionArgs*>(args_ptr);
  const bool acts = (a.q_dtype == DType::kF32 || a.q_dtype == DType::kBF16) &&
                    (a.out_dtype == DType::kF32 || a.out_dtype == DType::kBF16);
  const bool decode = a.max_query_len > 0 && a.max_query_len <= kDecodeMaxQueryLen && acts && a.n_seqs > 0 &&
                      a.n_seqs <= kMaxGridYZ && a.n_kv_heads > 0 && a.n_heads > 0 && a.n_heads <= kMaxGridYZ &&
                      a.n_heads % a.n_kv_heads == 0 && a.head_dim > 0 && a.head_dim % 8 == 0 &&
                      a.head_dim <= attn::kMaxHeadDim && a.block_size > 0 && a.block_size <= INT32_MAX &&
                      a.max_blocks_per_seq >= 0 && aligned(a.k_cache, 8) && aligned(a.v_cache, 8) &&
                      a.k_scale != nullptr && a.v_scale != nullptr;
  if (!decode) {
    attn_kvq::attention_kvquant_simple(a, ctx, cache);
    return;
  }
  attn::Params<__nv_bfloat16> p = make_params<__nv_bfloat16>(a, a.q_dtype == DType::kBF16, a.out_dtype == DType::kBF16);
  p.kv_vec = true;  // 8-byte chunks, aligned above
  p.k_scale = a.k_scale;
  p.v_scale = a.v_scale;
  p.decode_q_max = 0;
  run_decode<__nv_bfloat16, KV>(p, a, 1, static_cast<cudaStream_t>(ctx.stream));
}

}  // namespace

void attention_bf16_cuda(const void* args, const ExecContext& ctx) { attention_half_cuda<__nv_bfloat16>(args, ctx); }
void attention_f16_cuda(const void* args, const ExecContext& ctx) { attention_half_cuda<__half>(args, ctx); }
void attention_i8_cuda(const void* args, const ExecContext& ctx) { attention_quant_cuda<int8_t>(args, ctx, DType::kI8); }
void attention_fp8_cuda(const void* args, const ExecContext& ctx) {
  attention_quant_cuda<__nv_fp8_e4m3>(args, ctx, DType::kF8E4M3);
}

}  // namespace eli
