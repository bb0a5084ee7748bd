// runtime/runner/model_runner.h: runs a Model on one device, step after step.
//
// The runner owns what a step needs besides the weights and the KV cache: the device copy of the
// step's inputs (one packed upload per step), the RoPE tables of each rope set, the workspace arena
// (reserved once for the largest step, then reused), the logits buffer, the sampler that reads
// them where they are (DeviceSampler: Op::kSample of the runner's device, with the requests'
// sampling parameters kept in its per-slot table), and the CUDA-graph cache:
// a pure decode step (one token and one logits row per sequence, static RoPE) is padded to a bucket
// of b = next power of two sequences and a power-of-two block-table width; the first sighting of a
// (b, width) key runs eagerly (warming cuBLASLt's per-shape state), the second captures a graph,
// later ones replay it. Steps that want hidden states (embeddings) run eagerly. Padding sequences have context 0 and slot -1, so they write no KV and
// attend to nothing. A workspace reallocation drops every graph.
//
// Invariants: the model's weights are placed on the runner's device at construction; steady-state
// steps allocate nothing; one forward at a time; the Device outlives the runner.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "runtime/runner/batch.h"
#include "runtime/runner/device_sampler.h"
#include "runtime/core/tensor.h"
#include "runtime/device/step_graph.h"
#include "runtime/model/forward.h"
#include "runtime/model/model.h"
#include "runtime/model/rope.h"
#include "runtime/runner/offload_plan.h"
#include "runtime/runner/weight_streamer.h"

namespace eli {

class Device;
class KvCache;
class ThreadPool;

class ModelRunner {
 public:
  // Places the model's weights on `device` (one staged upload; the CPU keeps them in place). With an
  // active `offload` plan (offload_plan.h) its layers go to pinned host memory or stay in the
  // file, and a WeightStreamer runs them from a device ring.
  ModelRunner(Device& device, std::unique_ptr<Model> model, ThreadPool* pool, const OffloadPlan* offload = nullptr);
  ~ModelRunner();

  const Model& model() const { return *model_; }
  const ModelSpec& spec() const { return model_->spec(); }
  // Bytes of weights held by the device: the resident weights and the offload ring.
  uint64_t weight_bytes() const { return weight_bytes_; }
  // The offloaded layers' streamer (nullptr when every layer is resident).
  const WeightStreamer* streamer() const { return streamer_.get(); }
  // Grows the workspace to serve steps of up to max_tokens tokens and max_logits logits rows (and
  // their hidden states), so that later steps allocate nothing. Returns the bytes the workspace,
  // logits and hidden-state buffers hold.
  uint64_t reserve(int64_t max_tokens, int64_t max_logits);

  // Token ids that only the device knows yet (asynchronous scheduling: the step is queued before
  // the host has read the previous step's samples): before the step runs,
  // ids[dst_index[i]] = src[src_index[i]] (Op::kScatterTokens); batch.token_ids holds placeholders
  // there. src: int32 on the runner's device, valid in stream order.
  struct TokenFeed {
    const int32_t* src = nullptr;
    std::vector<int32_t> dst_index, src_index;
  };
  // Runs one step and leaves the logits on the device: (batch.n_logits(), vocab) f32 rows, valid
  // until the next forward. Work is queued on the device's default stream.
  float* forward(const Batch& batch, KvCache& kv, const TokenFeed* feed = nullptr);
  // Runs one step; the logits rows are in host memory `logits` when it returns.
  void forward_to_host(const Batch& batch, KvCache& kv, float* logits);
  // Embeddings: while on, every forward also writes the final-normed hidden state of each logits
  // row (StepInputs::hidden_out; such steps are never graphed). Off by default.
  void set_want_hidden(bool on) { want_hidden_ = on; }
  // After a forward that wanted hidden states: copies rows [row0, row0 + n) of its (n_logits, hidden) f32
  // hidden states to host memory `dst` (synchronous on the device's stream).
  void copy_hidden(int64_t row0, int64_t n, float* dst);
  // After a forward: copies logits rows [row0, row0 + n) to host memory `dst` (synchronous).
  void copy_logits(const float* logits, int64_t row0, int64_t n, float* dst);

  // Creates the sampler of this runner's logits (buffers sized once: up to max_rows rows per launch
  // over `vocab` tokens; the CPU kernel runs on the runner's pool). Before the KV pool is planned.
  void enable_sampling(int64_t max_rows, int64_t vocab);
  // The sampler (enable_sampling() first).
  DeviceSampler& sampler();

  void set_graphs_enabled(bool on);
  // A rank of a sharded model (runtime/parallel) runs its forwards with its collectives (nullptr:
  // unsharded); they must outlive the runner's forwards.
  void set_collectives(const ForwardCollectives* comm) { comm_ = comm; }
  struct GraphStats {
    int64_t captured = 0, replays = 0, eager_steps = 0;
  };
  GraphStats graph_stats() const { return graph_stats_; }

 private:
  struct Buffer {
    Tensor t;
    size_t bytes = 0;
  };
  void ensure_workspace(int64_t n_tokens, int64_t n_logits);
  // Fills rope_host_ for the batch (static tables, or one table per sequence for dynamic RoPE).
  void build_rope_tables(const Batch& batch);
  // Copies the batch's arrays, the per-token table indices and the rope tables to the device,
  // applies the token feed, and sets in_'s pointers.
  void upload(const Batch& batch, const TokenFeed* feed);
  void run_model(KvCache& kv, float* logits);
  // forward(); host_logits (CPU only) receives the logits directly instead of the runner's buffer.
  float* forward_into(const Batch& batch, KvCache& kv, const TokenFeed* feed, float* host_logits);
  bool graphable(const Batch& batch) const;
  static Batch pad_decode_batch(const Batch& batch, int64_t b, int64_t stride);

  Device& device_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<WeightStreamer> streamer_;  // after model_: destroyed first (its copies read the images)
  ThreadPool* pool_;
  DeviceKind kind_;
  void* stream_ = nullptr;  // the device's default stream
  uint64_t weight_bytes_ = 0;

  std::vector<ModelSpec> rope_specs_;             // one per rope set
  std::vector<RopeTable> static_rope_;            // per set
  std::vector<std::vector<float>> rope_host_;     // per set: (n_tables, rot_dim / 2) for this step
  std::vector<std::vector<float>> rope_uploaded_; // per set: what the device copy holds
  std::vector<Buffer> rope_dev_;                  // per set
  std::vector<int32_t> table_of_token_;           // (T) this step's table per token

  Workspace ws_;
  std::array<Buffer, static_cast<size_t>(WsSlot::kCount)> ws_bufs_;
  Buffer logits_;
  Buffer hidden_;  // (reserved logits rows, hidden) f32: by reserve(), or grown by a larger want_hidden step
  bool want_hidden_ = false;
  int64_t reserved_tokens_ = 0, reserved_logits_ = 0;
  std::vector<int32_t> staging_;
  Buffer batch_ints_;
  StepInputs in_;

  std::unique_ptr<DeviceSampler> sampler_;
  const ForwardCollectives* comm_ = nullptr;
  bool graphs_enabled_ = true;
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<StepGraph>> graphs_;
  std::map<std::pair<int64_t, int64_t>, int> graph_sightings_;
  GraphStats graph_stats_;
};

}  // namespace eli
