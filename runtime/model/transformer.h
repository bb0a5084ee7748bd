// runtime/model/transformer.h: the decoder-only transformer family (Llama, Mistral, Qwen2,
// Qwen3, SmolLM2) as one forward pass over a ragged Batch. Architecture differences are the
// ModelSpec flags (biases, q/k norm, rope scaling, sliding window, tied head), never copies.
//
// Devices: the model runs where its Device is (nullptr or a CPU device: the host path, with host
// std::vector workspaces and the batch's own arrays; a CUDA device: weights uploaded once at
// construction, workspaces and the batch's int32 arrays on the device, kernels on the device's
// default stream, logits copied back to the host at the end of forward()).
//
// Invariants: forward() reads the weights, writes only its workspace, the KV slots named by the
// batch and the logits; workspace buffers grow to the largest step seen and are then reused, so
// steady-state decoding allocates nothing. One forward at a time per Transformer. The Device must
// outlive the Transformer. On a device other than the CPU the host matrices are dropped after the
// upload (weights() then keeps only dtype, n_params and the source).
#pragma once

#include <memory>
#include <vector>

#include "eli/batch.h"
#include "eli/device.h"
#include "eli/model_spec.h"
#include "runtime/core/tensor.h"
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
  // Runs one step. logits: host (batch.n_logits(), vocab), row r for flat token batch.logits_indices[r].
  void forward(const Batch& batch, KvCache& kv, float* logits);

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
  // Device path: copies the batch's arrays (and the rope tables) to the device; sets dev_* pointers.
  void upload_batch(const Batch& batch);

  ModelSpec spec_;
  TransformerWeights weights_;
  ThreadPool* pool_;
  Device* device_;
  DeviceKind kind_ = DeviceKind::kCPU;
  void* stream_ = nullptr;  // the device's default stream (nullptr on the CPU)
  PlacedWeights placed_;
  RopeTable static_rope_;
  int64_t qkv_dim_ = 0;  // (nh + 2 nkv) * hd

  // Workspace (grows, never shrinks).
  Buffer x_;        // (T, H) residual stream
  Buffer h_;        // (T, H) normed input of a sub-block
  Buffer qkv_;      // (T, qkv_dim)
  Buffer attn_;     // (T, nh * hd)
  Buffer gate_up_;  // (T, 2 I)
  Buffer act_;      // (T, I)
  Buffer sel_;      // (n_logits, H) rows that produce logits
  Buffer logits_;   // (n_logits, V) device logits (unused on the CPU)
  std::vector<float> rope_inv_freq_;          // (n_tables, rot_dim / 2), host
  std::vector<int32_t> rope_table_of_token_;  // (T), host

  // Device path: the batch's int32 arrays packed into one buffer (staged on the host, one copy),
  // and the rope inverse frequencies (a second copy).
  std::vector<int32_t> staging_;
  Buffer batch_ints_;  // int32 storage viewed through `data` as float* (reinterpreted)
  Buffer rope_dev_;    // (n_tables, rot_dim / 2)
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
