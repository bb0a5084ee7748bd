// kernels/ops.h: the argument struct of every op. One struct per op: outputs first, then inputs,
// then sizes. Kernels see raw pointers with explicit row strides (in elements); they never own.
//
// Shapes use: T = tokens in the step, H = hidden size, V = vocab, I = intermediate size,
// nh = query heads, nkv = kv heads, hd = head dim, B = KV block size, NB = blocks in the pool.
// Activations are f32 on the CPU backend; weight matrices may be f32 or bf16 (the registry key's
// dtype is the weight dtype).
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
  float* k_cache;          // (NB, B, nkv, hd)
  float* v_cache;          // (NB, B, nkv, hd)
  const float* k;          // (T, nkv, hd), row stride k_stride
  const float* v;          // (T, nkv, hd), row stride v_stride
  const int32_t* slot_mapping; // (T), slot = block * B + offset; < 0 skips the token
  int64_t n_tokens, n_kv_heads, head_dim, k_stride, v_stride, n_slots;
};

struct AttentionArgs {
  float* out;              // (T, nh, hd), row stride out_stride
  const float* q;          // (T, nh, hd), row stride q_stride
  const float* k_cache;    // (NB, B, nkv, hd)
  const float* v_cache;    // (NB, B, nkv, hd)
  const int32_t* cu_seqlens;   // (S + 1)
  const int32_t* positions;    // (T) absolute position of each query: attends to kv [0, pos]
  const int32_t* context_lens; // (S)
  const int32_t* block_tables; // (S, max_blocks_per_seq)
  int64_t n_seqs, n_heads, n_kv_heads, head_dim, block_size, max_blocks_per_seq;
  int64_t q_stride, out_stride;
  int64_t sliding_window;  // 0: off; else attend to kv positions > pos - window
  float scale;             // usually 1/sqrt(hd)
};

struct DequantArgs {
  float* out;              // (rows, cols) contiguous
  const void* in;          // rows of block-quantized data (registry dtype), contiguous
  int64_t rows, cols;      // cols is a multiple of the type's block size
};

}  // namespace eli
