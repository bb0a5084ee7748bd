// kernels/ops.h: the argument struct of every op. One struct per op: outputs first, then inputs,
// then sizes. Kernels see raw pointers with explicit row strides (in elements); they never own.
//
// Shapes use: T = tokens in the step, H = hidden size, V = vocab, I = intermediate size,
// nh = query heads, nkv = kv heads, hd = head dim, B = KV block size, NB = blocks in the pool.
// One op set serves every device and dtype (the forward pass is written once, runtime/model): the
// residual stream is f32; the operands of the big matrix products and the KV cache are f32 or a
// 16-bit type (bf16 / f16, never mixed within a model), named beside their void* pointers; the KV
// cache may also be int8 / fp8 e4m3 with per-(token, kv head) scales (kernels/ref/kv_quant.h). The
// registry key's dtype is the weight (or cache) dtype; every op has a reference in kernels/ref.
#pragma once

#include <cstdint>

#include "eli/dtype.h"

namespace eli {

class ThreadPool;

enum class Op : int {
  kEmbedding,   // out[t] = table[ids[t]] * scale
  kAttention,   // causal paged attention over a ragged batch
  kDequant,     // GGUF block-quantized rows -> f32
  kGemv,        // decode: out[m,:] (+)= act(norm(x[m,:]) @ w^T + bias), m small; fused RMSNorm/gated act
  kGemm,        // prefill: out (+)= x @ w^T + bias; out f32 or x's dtype
  kNormCast,    // out (bf16, f16 or f32) (+)= x * rsqrt(mean(x^2) + eps) * (weight + offset); x f32
  kGatedAct,    // out = act(gate) * up with gate_up and out in the args' dtype (bf16, f16 or f32)
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
  float scale = 1.0f;      // out = table row * scale, in f32 (Gemma's sqrt(H) embedding scale)
  // Vocab-parallel shard (tensor parallelism): the table holds rows [row_offset, row_offset + vocab)
  // of the full table; with zero_outside an id outside that range gives a zero row (the ranks'
  // rows are then summed by an all-reduce) instead of being clamped.
  int64_t row_offset = 0;
  bool zero_outside = false;
};

// The activation of a gated MLP: out = act(gate) * up.
enum class GatedAct : uint8_t {
  kNone,      // no gating (GemvArgs only)
  kSilu,      // silu(g) = g / (1 + exp(-g))       (SwiGLU: Llama, Qwen, Mistral, Phi-3)
  kGeluTanh,  // 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))   (GeGLU: Gemma)
};
const char* gated_act_name(GatedAct act);

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
  // Quantized KV cache (registry dtype kI8 / kF8E4M3, kernels/ref/kv_quant.h): one f32 scale per
  // (slot, kv head), (NB, B, nkv); a cached value is stored * scale. nullptr for f32/16-bit caches.
  const float* k_scale = nullptr;
  const float* v_scale = nullptr;
};

struct DequantArgs {
  float* out;              // (rows, cols) contiguous
  const void* in;          // rows of block-quantized data (registry dtype), contiguous
  int64_t rows, cols;      // cols is a multiple of the type's block size
};

// ---- mixed-precision ops ------------------------------------------------------------------

// Decode GEMV (m <= kGemvMaxRows). Fusions, in order: x rows RMS-normalised with norm_weight (if
// set), the product with w (N, K) (+ bias), the gated activation over the two halves of N (if
// gated != kNone: rows [0, N/2) of w are the gate, [N/2, N) the up projection; out has N/2
// columns), then out = or +=.
constexpr int64_t kGemvMaxRows = 8;
struct GemvArgs {
  float* out;              // (m, gated != kNone ? n/2 : n), row stride out_stride; must not alias x
  const float* x;          // (m, k), row stride x_stride
  const void* w;           // (n, k) contiguous, registry dtype
  const float* bias;       // (n) or nullptr
  const float* norm_weight;// (k) or nullptr
  int64_t m, n, k, out_stride, x_stride;
  float norm_eps = 1e-6f;
  float norm_weight_offset = 0.0f;
  GatedAct gated = GatedAct::kNone;
  bool accumulate = false;
  // Scratch a kernel may use (e.g. x quantized to 8-bit blocks for a block-quantized weight);
  // sized by the weight's LinearMethod::scratch_bytes. nullptr where the kernel needs none.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
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

// out may alias x only when !accumulate (each row is read whole before it is written).
struct NormCastArgs {
  void* out;               // (rows, hidden), row stride out_stride, out_dtype
  const float* x;          // (rows, hidden), row stride x_stride
  const float* weight;     // (hidden)
  int64_t rows, hidden, out_stride, x_stride;
  float eps;
  float weight_offset;     // 0 normally; 1 for checkpoints storing (weight - 1)
  DType out_dtype = DType::kBF16;
  bool accumulate = false; // out += result (f32 out only): a post-norm added to the residual
};

struct GatedActArgs {
  void* out;               // (rows, inter), row stride out_stride, dtype
  const void* gate_up;     // (rows, 2 inter): gate then up, row stride in_stride, dtype
  int64_t rows, inter, out_stride, in_stride;
  DType dtype = DType::kBF16;
  GatedAct act = GatedAct::kSilu;  // kSilu or kGeluTanh
};

// Per token: q heads and k heads of qkv get (q_norm / k_norm RMSNorm if set, then) rotate-half
// (NeoX) RoPE with angle float(pos) * inv_freq[table][i], cos and sin scaled by attention_scaling;
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
  float attention_scaling; // multiplies cos and sin (YaRN / LongRoPE mscale; 1 otherwise)
  float norm_eps;
  DType q_dtype = DType::kBF16;
  // Quantized KV cache (kI8 / kF8E4M3): each written (slot, kv head) row of k and v gets its scale
  // amax / qmax here, (NB, B, nkv); see AttentionArgs. nullptr for f32/16-bit caches.
  float* k_scale = nullptr;
  float* v_scale = nullptr;
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
