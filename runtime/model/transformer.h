// runtime/model/transformer.h: the decoder-only transformer family (Llama, Mistral, Qwen2,
// Qwen3, SmolLM2) as one forward pass over a ragged Batch. Architecture differences are the
// ModelSpec flags (biases, q/k norm, rope scaling, sliding window, tied head), never copies.
//
// Devices: the model runs where its Device is (nullptr or a CPU device: the host path, with host
// std::vector workspaces and the batch's own arrays; a CUDA device: weights uploaded once at
// construction, workspaces and the batch's int32 arrays on the device, kernels on the device's
// default stream, logits copied back to the host at the end of forward(), or left on the device by
// forward_on_device()). bf16 weights with a bf16 KV cache take the mixed-precision path with CUDA
// graphs for decode (transformer_mixed.cc); everything else takes the generic path.
//
// Invariants: forward() reads the weights, writes only its workspace, the KV slots named by the
// batch and the logits; workspace buffers grow to the largest step seen and are then reused, so
// steady-state decoding allocates nothing. One forward at a time per Transformer. The Device must
// outlive the Transformer. On a device other than the CPU the host matrices are dropped after the
// upload (weights() then keeps only dtype, n_params and the source).
#pragma once

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "eli/batch.h"
#include "eli/device.h"
#include "eli/model_spec.h"
#include "runtime/core/tensor.h"
#include "runtime/device/step_graph.h"
#include "runtime/model/rope.h"
#include "runtime/model/transformer_weights.h"

namespace eli {

class Device;
class KvCache;
class ThreadPool;

class Transformer {
 public:
  // device == nullptr: the CPU (host memory, `pool` for the CPU kernels).
  Transformer(ModelSpec spec, TransformerWeights weights, ThreadPool* pool, Device* device = nullptr);

  const ModelSpec& spec() const { return spec_; }
  const TransformerWeights& weights() const { return weights_; }
  DeviceKind device_kind() const { return kind_; }
  // Bytes of weights held on the model's device (0 on the CPU, where they stay in host memory).
  uint64_t device_weight_bytes() const { return placed_.device_bytes; }
  // Grows every workspace to serve steps of up to max_tokens tokens and max_logits logits rows, so
  // that later steps allocate nothing. Returns the bytes of device memory the workspaces hold (0 on
  // the CPU, where workspaces are host vectors).
  uint64_t reserve_workspace(int64_t max_tokens, int64_t max_logits);
  // Runs one step. logits: host (batch.n_logits(), vocab), row r for flat token batch.logits_indices[r].
  void forward(const Batch& batch, KvCache& kv, float* logits);
  // Token ids that only the device knows yet (asynchronous scheduling: the step is queued before
  // the host has read the previous step's samples): before the step runs,
  // ids[dst_index[i]] = src[src_index[i]] (Op::kScatterTokens); batch.token_ids holds placeholders
  // there. src: device int32, valid in stream order.
  struct TokenFeed {
    const int32_t* src = nullptr;
    std::vector<int32_t> dst_index, src_index;
  };
  // Device models only: runs one step and leaves the logits on the device: (batch.n_logits(), vocab)
  // f32 rows, valid until the next forward. Work is queued on the device's default stream.
  float* forward_on_device(const Batch& batch, KvCache& kv, const TokenFeed* feed = nullptr);
  // Decode steps replay CUDA graphs captured per (batch-size bucket, block-table width) when this
  // is on (the default for CUDA models); off runs every kernel eagerly (for tests and comparisons).
  void set_graphs_enabled(bool on);
  struct GraphStats {
    int64_t captured = 0, replays = 0, eager_steps = 0;
  };
  GraphStats graph_stats() const { return graph_stats_; }

 private:
  // A growable f32 (or int32) buffer: a host vector on the CPU, a device Tensor elsewhere.
  struct Buffer {
    std::vector<float> host;
    Tensor dev;
    int64_t capacity = 0;  // elements
    float* data = nullptr;
  };
  void grow(Buffer& b, int64_t n);
  void ensure_workspace(int64_t n_tokens, int64_t n_logits);
  void build_rope_tables(const Batch& batch);
  // Device path: copies the batch's arrays (and the rope tables) to the device; sets dev_* pointers;
  // then applies feed_ (if any) to the uploaded token ids.
  void upload_batch(const Batch& batch);
  // The generic path (every backend; f32 activations) and the mixed-precision device path
  // (transformer_mixed.cc: bf16 weights and KV cache, GEMV decode, cuBLASLt prefill, graphs).
  // Both leave logits in `out` (host for the generic CPU path, logits_ on a device).
  void forward_generic(const Batch& batch, KvCache& kv, float* host_logits);
  bool use_mixed_path(const KvCache& kv) const;
  void forward_mixed(const Batch& batch, KvCache& kv);
  // Enqueues the whole mixed forward for the uploaded batch (dev_* pointers) of T tokens,
  // n_seqs sequences, n_logits logits rows; no host synchronization (graph-capturable).
  struct MixedStep {
    int64_t n_tokens = 0, n_seqs = 0, n_logits = 0, max_blocks_per_seq = 0;
    int64_t max_query_len = 0, max_context_len = 0;
  };
  void enqueue_mixed(const MixedStep& step, KvCache& kv);
  // Host Batch padded to a graph bucket (b one-token sequences, block tables `stride` wide).
  static Batch pad_decode_batch(const Batch& batch, int64_t b, int64_t stride);

  ModelSpec spec_;
  TransformerWeights weights_;
  ThreadPool* pool_;
  Device* device_;
  DeviceKind kind_ = DeviceKind::kCPU;
  void* stream_ = nullptr;  // the device's default stream (nullptr on the CPU)
  PlacedWeights placed_;
  RopeTable static_rope_;
  int64_t qkv_dim_ = 0;  // (nh + 2 nkv) * hd

  static constexpr int64_t kBlasWorkspaceBytes = int64_t{32} << 20;
  // Workspace (grows, never shrinks).
  Buffer x_;        // (T, H) residual stream
  Buffer h_;        // (T, H) normed input of a sub-block
  Buffer qkv_;      // (T, qkv_dim)
  Buffer attn_;     // (T, nh * hd)
  Buffer gate_up_;  // (T, 2 I)
  Buffer act_;      // (T, I)
  Buffer sel_;      // (n_logits, H) rows that produce logits
  Buffer logits_;   // (n_logits, V) device logits (unused on the CPU)
  // Mixed device path only (sizes in f32 units; bf16 data uses them reinterpretively).
  Buffer qb_;       // (T, nh * hd) bf16 rotated queries
  Buffer hb_;       // (T, max(H, I)) bf16 operand of a GEMM
  Buffer attn_ws_;  // split-K attention scratch
  Buffer blas_ws_;  // cuBLASLt workspace
  int64_t attn_ws_tokens_ = 0;  // decode tokens attn_ws_ was sized for
  bool graphs_enabled_ = true;
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<StepGraph>> graphs_;
  std::map<std::pair<int64_t, int64_t>, int> graph_sightings_;
  GraphStats graph_stats_;
  std::vector<float> rope_inv_freq_;          // (n_tables, rot_dim / 2), host
  std::vector<int32_t> rope_table_of_token_;  // (T), host

  // Device path: the batch's int32 arrays packed into one buffer (staged on the host, one copy),
  // and the rope inverse frequencies (a second copy).
  std::vector<int32_t> staging_;
  Buffer batch_ints_;  // int32 storage viewed through `data` as float* (reinterpreted)
  Buffer rope_dev_;    // (n_tables, rot_dim / 2)
  const TokenFeed* feed_ = nullptr;      // set for the duration of forward_on_device()
  std::vector<float> rope_uploaded_;  // what rope_dev_ holds
  const int32_t* dev_token_ids_ = nullptr;
  const int32_t* dev_positions_ = nullptr;
  const int32_t* dev_cu_seqlens_ = nullptr;
  const int32_t* dev_context_lens_ = nullptr;
  const int32_t* dev_block_tables_ = nullptr;
  const int32_t* dev_slot_mapping_ = nullptr;
  const int32_t* dev_logits_indices_ = nullptr;
  const int32_t* dev_table_of_token_ = nullptr;
};

}  // namespace eli
