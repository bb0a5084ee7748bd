// kernels/ops.h: the argument struct of every op. One struct per op: outputs first, then inputs,
// then sizes. Kernels see raw pointers with explicit row strides (in elements); they never own.
//
// Shapes use: T = tokens in the step, H = hidden size, V = vocab, I = intermediate size,
// nh = query heads, nkv = kv heads, hd = head dim, B = KV block size, NB = blocks in the pool.
// Activations are f32 on the CPU backend; weight matrices may be f32 or bf16 there, and f16 too on
// the GPU (the registry key's dtype is the weight dtype). The "mixed" ops (kGemv .. kRopeKvWrite)
// serve the GPU's 16-bit path (bf16 or f16, never mixed within a model): the residual stream stays
// f32, operands of the big matrix products and the KV cache are 16-bit; their pointers are void*
// with the dtype named beside them, and each has a CPU reference.
#pragma once

#include <cstdint>

#include "eli/dtype.h"

namespace eli {

class ThreadPool;

enum class Op : int {
  kEmbedding,   // out[t] = table[ids[t]]
  kRmsNorm,     // out = x * rsqrt(mean(x^2) + eps) * weight      (optionally residual += x first)
  kMatmul,      // out[M,N] (+)= x[M,K] @ w[N,K]^T + bias[N]
  kRope,        // rotate q/k heads in place (rotate-half / NeoX layout)
  kSwiglu,      // out[M,I] = silu(gate_up[:, :I]) * gate_up[:, I:]
  kKvWrite,     // k/v of new tokens -> paged cache slots
  kAttention,   // causal paged attention over a ragged batch
  kDequant,     // GGUF block-quantized rows -> f32
  // Mixed-precision ops (device fast path; references in kernels/ref).
  kGemv,        // decode: out[m,:] (+)= act(norm(x[m,:]) @ w^T + bias), m small; fused RMSNorm/SwiGLU
  kGemm,        // prefill: out (+)= x @ w^T + bias; x, w bf16 / f16 (or f32); out f32 or x's dtype
  kNormCast,    // out (bf16, f16 or f32) = x * rsqrt(mean(x^2) + eps) * (weight + offset); x f32
  kSwigluCast,  // out = silu(gate) * up with gate_up and out in the args' dtype (bf16, f16 or f32)
  kRopeKvWrite, // fused: optional q/k RMSNorm, RoPE on q and k, q -> q_out, k/v -> paged cache
  kSample,      // logits rows -> tokens (+ logprobs) on the device; args in kernels/sample_ops.h
  kScatterTokens,  // ids[dst_index[i]] = src[src_index[i]]: next step's inputs from sampled tokens
  kCount,
};
const char* op_name(Op op);

// Shared by all ops: how the CPU backend may parallelise (nullptr: run on the calling thread).
struct ExecContext {
  ThreadPool* pool = nullptr;
  void* stream = nullptr;  // cudaStream_t on CUDA
};

struct EmbeddingArgs {
  float* out;              // (T, H), row stride H
  const void* table;       // (V, H) in the registry dtype
  const int32_t* ids;      // (T); each in [0, V) (checked by the caller; kernels clamp)
  int64_t n_tokens, hidden, vocab;
};

struct RmsNormArgs {
  float* out;              // (M, H), row stride out_stride
  float* residual;         // (M, H) or nullptr: if set, residual += x first, then out = norm(residual)
  const float* x;          // (M, H), row stride x_stride
  const float* weight;     // (H)
  int64_t rows, hidden, out_stride, x_stride;
  float eps;
  float weight_offset;     // 0 normally; 1 for checkpoints storing (weight - 1)
};

struct MatmulArgs {
  float* out;              // (M, N), row stride out_stride
  const float* x;          // (M, K), row stride x_stride
  const void* w;           // (N, K) contiguous, registry dtype
  const float* bias;       // (N) or nullptr
  int64_t m, n, k, out_stride, x_stride;
  bool accumulate;         // out += result (fused residual add)
};

struct RopeArgs {
  float* x;                // (T, n_heads, hd): row stride row_stride, head stride hd
  const int32_t* positions;// (T)
  const float* inv_freq;   // (n_tables, rot_dim / 2)
  const int32_t* table_of_token; // (T) index into inv_freq tables, or nullptr (table 0)
  int64_t n_tokens, n_heads, head_dim, rot_dim, row_stride;
  float attention_scaling; // multiplies cos and sin (YaRN mscale; 1 otherwise)
};

struct SwigluArgs {
  float* out;              // (M, I), row stride out_stride
  const float* gate_up;    // (M, 2I): gate then up, row stride in_stride
  int64_t rows, inter, out_stride, in_stride;
};

struct KvWriteArgs {
  void* k_cache;           // (NB, B, nkv, hd) in the registry dtype (f32; bf16 / f16 on CUDA)
  void* v_cache;           // (NB, B, nkv, hd)
  const float* k;          // (T, nkv, hd), row stride k_stride
  const float* v;          // (T, nkv, hd), row stride v_stride
  const int32_t* slot_mapping; // (T), slot = block * B + offset; < 0 skips the token
  int64_t n_tokens, n_kv_heads, head_dim, k_stride, v_stride, n_slots;
};

// Split-K decode attention: at most this many splits of one (query, head)'s context; the
// workspace a device kernel needs for n_tokens decode queries (f32 partial outputs plus the running
// max and sum of each split).
constexpr int64_t kAttentionMaxSplits = 32;
size_t attention_workspace_bytes(int64_t n_tokens, int64_t n_heads, int64_t head_dim);

struct AttentionArgs {
  void* out;               // (T, nh, hd), row stride out_stride, out_dtype
  const void* q;           // (T, nh, hd), row stride q_stride, q_dtype
  const void* k_cache;     // (NB, B, nkv, hd) in the registry dtype (the KV-cache dtype)
  const void* v_cache;     // (NB, B, nkv, hd)
  const int32_t* cu_seqlens;   // (S + 1)
  const int32_t* positions;    // (T) absolute position of each query: attends to kv [0, pos]
  const int32_t* context_lens; // (S)
  const int32_t* block_tables; // (S, max_blocks_per_seq)
  int64_t n_seqs, n_heads, n_kv_heads, head_dim, block_size, max_blocks_per_seq;
  int64_t q_stride, out_stride;
  int64_t sliding_window;  // 0: off; else attend to kv positions > pos - window
  float scale;             // usually 1/sqrt(hd)
  DType q_dtype = DType::kF32;    // f32 or the cache's 16-bit dtype (bf16 / f16)
  DType out_dtype = DType::kF32;  // f32 or the cache's 16-bit dtype
  // Host-known bounds of this batch (0: unknown, the kernel assumes the worst: T and the block
  // table's capacity). Device kernels use them to pick decode vs prefill kernels and split-K.
  int64_t max_query_len = 0;
  int64_t max_context_len = 0;
  // Device scratch for split-K partial results (nullptr: no split-K); see attention_workspace_bytes.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

struct DequantArgs {
  float* out;              // (rows, cols) contiguous
  const void* in;          // rows of block-quantized data (registry dtype), contiguous
  int64_t rows, cols;      // cols is a multiple of the type's block size
};

// ---- mixed-precision ops ------------------------------------------------------------------

// Decode GEMV (m <= kGemvMaxRows). Fusions, in order: x rows RMS-normalised with norm_weight (if
// set), the product with w (N, K) (+ bias), SwiGLU over the two halves of N (if swiglu: rows
// [0, N/2) of w are the gate, [N/2, N) the up projection; out has N/2 columns), then out = or +=.
constexpr int64_t kGemvMaxRows = 8;
struct GemvArgs {
  float* out;              // (m, swiglu ? n/2 : n), row stride out_stride; must not alias x
  const float* x;          // (m, k), row stride x_stride
  const void* w;           // (n, k) contiguous, registry dtype
  const float* bias;       // (n) or nullptr
  const float* norm_weight;// (k) or nullptr
  int64_t m, n, k, out_stride, x_stride;
  float norm_eps = 1e-6f;
  float norm_weight_offset = 0.0f;
  bool swiglu = false;
  bool accumulate = false;
};

// GEMM: out[m, n] = beta * out + x[m, k] @ w[n, k]^T + bias[n], f32 accumulation. On CUDA x_dtype
// must equal the weight dtype (bf16 / f16 through cuBLASLt; f32 too); out_dtype f32 or x's; accumulate
// only with an f32 out.
struct GemmArgs {
  void* out;               // (m, n), row stride out_stride, out_dtype; must not alias x
  const void* x;           // (m, k), row stride x_stride, x_dtype
  const void* w;           // (n, k) contiguous, registry dtype
  const float* bias;       // (n) or nullptr
  int64_t m, n, k, out_stride, x_stride;
  DType x_dtype = DType::kBF16;
  DType out_dtype = DType::kF32;
  bool accumulate = false;
  void* workspace = nullptr;  // device scratch for the BLAS library (may be nullptr)
  size_t workspace_bytes = 0;
};

struct NormCastArgs {
  void* out;               // (rows, hidden), row stride out_stride, out_dtype
  const float* x;          // (rows, hidden), row stride x_stride
  const float* weight;     // (hidden)
  int64_t rows, hidden, out_stride, x_stride;
  float eps;
  float weight_offset;     // 0 normally; 1 for checkpoints storing (weight - 1)
  DType out_dtype = DType::kBF16;
};

struct SwigluCastArgs {
  void* out;               // (rows, inter), row stride out_stride, dtype
  const void* gate_up;     // (rows, 2 inter): gate then up, row stride in_stride, dtype
  int64_t rows, inter, out_stride, in_stride;
  DType dtype = DType::kBF16;
};

// Per token: q heads and k heads of qkv get (q_norm / k_norm RMSNorm if set, then) RoPE as kRope;
// q is written to q_out (q_dtype, contiguous (T, nh, hd)); k and v go to their cache slot (cache
// in the registry dtype), slots < 0 or >= n_slots skipped. qkv itself is not modified.
struct RopeKvWriteArgs {
  void* q_out;             // (T, nh, hd) contiguous, q_dtype
  void* k_cache;           // (NB, B, nkv, hd)
  void* v_cache;           // (NB, B, nkv, hd)
  const float* qkv;        // (T, qkv_stride): q (nh*hd) | k (nkv*hd) | v (nkv*hd), biases applied
  const float* q_norm;     // (hd) or nullptr
  const float* k_norm;     // (hd) or nullptr
  const int32_t* positions;      // (T)
  const int32_t* slot_mapping;   // (T)
  const float* inv_freq;         // (n_tables, rot_dim / 2)
  const int32_t* table_of_token; // (T) or nullptr
  int64_t n_tokens, n_heads, n_kv_heads, head_dim, rot_dim, qkv_stride, n_slots;
  float attention_scaling; // as RopeArgs
  float norm_eps;
  DType q_dtype = DType::kBF16;
};

// Op::kScatterTokens (dtype kI32-agnostic, registered under F32): with asynchronous scheduling the
// next step is launched before the host has seen the last step's sampled tokens; this copies them
// from the sampler's device output into the next step's token ids. Each copied id is clamped to
// [0, vocab) (a failed row's token is never trusted as an embedding index).
struct ScatterTokensArgs {
  int32_t* ids;               // the step's token ids (device)
  const int32_t* dst_index;   // (n) positions in ids
  const int32_t* src;         // the sampler's token output (device)
  const int32_t* src_index;   // (n) rows of src
  int64_t n, vocab;
};

}  // namespace eli

#include "kernels/sample_ops.h"  // SampleArgs (Op::kSample)
