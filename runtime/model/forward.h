// runtime/model/forward.h: what a model's forward pass sees: the step's inputs on the model's
// device (StepInputs), the workspace arena (Workspace), the paged KV cache, the logits buffer, and
// ForwardContext, which runs linear products through each weight's LinearMethod.
//
// The ModelRunner (runtime/runner) fills all of this: it uploads the step's arrays, computes the
// RoPE tables, reserves the workspace for the largest step, and calls Model::forward() eagerly or
// inside a CUDA-graph capture. The forward is one code path for every device and dtype: kernels
// come from the registry for ForwardContext::device, and the CPU is an ordinary device whose
// pointers are host pointers.
//
// Invariants: every pointer in StepInputs and Workspace is valid on ForwardContext::device for the
// whole step; a forward only writes the workspace, the KV slots of the step's tokens and the logits;
// it allocates nothing and never synchronizes (graph-capturable).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "eli/device.h"
#include "kernels/ops.h"
#include "runtime/model/linear_method.h"

namespace eli {

class KvCache;
struct RankShard;

// The collectives a sharded forward calls (tensor / pipeline parallelism); runtime/parallel
// implements them over the rank's Communicators. A forward without one (nullptr) is unsharded.
// Every call is made by every rank of the group at the same point of the forward.
class ForwardCollectives {
 public:
  virtual ~ForwardCollectives() = default;
  virtual const RankShard& shard() const = 0;
  // buf (n f32) = its sum over the tensor-parallel ranks, in place (same bits on every rank).
  virtual void all_reduce_sum(float* buf, int64_t n, const ExecContext& exec) const = 0;
  // (rows, stride) f32 where this rank's lm_head shard writes its (rows, vocab shard) logits;
  // stride >= the widest shard. Valid until the next call.
  virtual float* logits_shard(int64_t rows, int64_t* stride) const = 0;
  // out (rows, vocab) = the tensor-parallel ranks' logits shards (from logits_shard()), on every rank.
  virtual void gather_logits(int64_t rows, float* out, const ExecContext& exec) const = 0;
  // Pipeline parallelism: the residual stream (n f32) to the next stage / from the previous one.
  virtual void send_to_next_stage(const float* x, int64_t n, const ExecContext& exec) const = 0;
  virtual void recv_from_prev_stage(float* x, int64_t n, const ExecContext& exec) const = 0;
};

// Called by a model's forward around each of its layers (index in the model's own layers, 0 =
// its first): the weight streamer (runtime/runner/weight_streamer.h) waits there for an offloaded
// layer's weights and starts the next copies. Work is queued on the ExecContext's stream; hooks
// never synchronize the host in a graphable step.
class LayerHooks {
 public:
  virtual ~LayerHooks() = default;
  virtual void before_layer(int64_t layer, const ExecContext& exec) const = 0;
  virtual void after_layer(int64_t layer, const ExecContext& exec) const = 0;
};

// RoPE inputs of one rope set (a model may use two: Gemma 3's global and local layers).
struct RopeInputs {
  const float* inv_freq = nullptr;          // (n_tables, rot_dim / 2)
  const int32_t* table_of_token = nullptr;  // (T) table per token, or nullptr (table 0)
  int64_t rot_dim = 0;
  float attention_scaling = 1.0f;
};
constexpr int kMaxRopeSets = 2;

// The step's inputs on the model's device (see eli/batch.h for the array semantics).
struct StepInputs {
  int64_t n_tokens = 0, n_seqs = 0, n_logits = 0, max_blocks_per_seq = 0;
  // Host-known bounds (the attention kernels pick their variant from them).
  int64_t max_query_len = 0, max_context_len = 0;
  const int32_t* token_ids = nullptr;       // (T)
  const int32_t* positions = nullptr;       // (T)
  const int32_t* cu_seqlens = nullptr;      // (S + 1)
  const int32_t* context_lens = nullptr;    // (S)
  const int32_t* block_tables = nullptr;    // (S, max_blocks_per_seq)
  const int32_t* slot_mapping = nullptr;    // (T)
  // KV group 1 (runtime/kv/kv_groups.h): its table and slots, same shapes; nullptr with one group.
  const int32_t* block_tables1 = nullptr;
  const int32_t* slot_mapping1 = nullptr;
  const int32_t* logits_indices = nullptr;  // (n_logits)
  float* hidden_out = nullptr;  // when set: (n_logits, H) f32, the logits rows' final-normed hidden states
  std::array<RopeInputs, kMaxRopeSets> rope{};
};

// The workspace arena: one buffer per slot, sized by Model::workspace() for the largest step.
enum class WsSlot : int {
  kResidual,   // (T, H) f32 residual stream
  kHidden,     // (T, H) f32 scratch (a post-norm's input)
  kQkv,        // (T, qkv) f32
  kQuery,      // (T, nh * hd) rotated queries, KV-cache dtype
  kAttnOut,    // (T, nh * hd) attention output, the o product's input dtype
  kMlpAct,     // (T, I) activated MLP rows, the down product's input dtype
  kSelected,   // (n_logits, H) f32 rows whose logits are wanted
  kLinearNorm, // LinearScratch::norm
  kLinearMid,  // LinearScratch::mid
  kBlas,       // LinearScratch::blas
  kAttnSplit,  // split-K attention partials
  kCount,
};
struct WorkspaceSizes {
  std::array<size_t, static_cast<size_t>(WsSlot::kCount)> bytes{};
  size_t& operator[](WsSlot s) { return bytes[static_cast<size_t>(s)]; }
  size_t operator[](WsSlot s) const { return bytes[static_cast<size_t>(s)]; }
};
struct Workspace {
  std::array<void*, static_cast<size_t>(WsSlot::kCount)> ptr{};
  WorkspaceSizes sizes;
};

class ForwardContext {
 public:
  ForwardContext(DeviceKind device, const ExecContext& exec, const StepInputs& in, KvCache& kv, const Workspace& ws,
                 float* logits, const ForwardCollectives* comm = nullptr, const LayerHooks* hooks = nullptr)
      : device(device), exec(exec), in(in), kv(kv), ws(ws), logits(logits), comm(comm), hooks(hooks) {}

  template <typename T = void>
  T* slot(WsSlot s) const {
    return static_cast<T*>(ws.ptr[static_cast<size_t>(s)]);
  }
  size_t slot_bytes(WsSlot s) const { return ws.sizes[s]; }
  // out = epilogue(prologue(in) @ w^T + b) for m rows, through w's LinearMethod.
  void linear(const LinearWeight& w, int64_t m, const LinearInput& input, const LinearOutput& output) const;
  // The dtype w's method wants its (un-normalised) input rows in for this step's m rows.
  DType linear_input_dtype(const LinearWeight& w, int64_t m) const { return w.method->input_dtype(w, m, device); }

  const DeviceKind device;
  const ExecContext exec;
  const StepInputs& in;
  KvCache& kv;
  const Workspace& ws;
  float* const logits;  // (n_logits, V) f32
  const ForwardCollectives* const comm;  // nullptr: unsharded (one rank)
  const LayerHooks* const hooks;         // nullptr: every layer's weights are resident
};

}  // namespace eli
