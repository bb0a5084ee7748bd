// runtime/runner/device_sampler.h: sampling on the device that produced the logits (Op::kSample of
// that device, from the kernel registry): the engine's sampler on every device. On a GPU a step
// moves a few bytes per row to the host instead of (rows, vocab) floats; on the CPU the same path
// runs the CPU kSample kernel (rows in parallel on the engine's thread pool).
//
// Semantics: eli's one sampling semantics (kernels/sample_ops.h), the same as the host Sampler's
// (runtime/runner/sampler.h, the reference): the same tokens for the same logits on every device,
// bit for bit; logprobs within summation-order rounding. Draw k of a request is keyed by (the
// request's seed, k), where k is the draw offset given per row (default: the outputs so far), so a
// seeded request's tokens depend neither on the batch nor on the device.
//
// Invariants: every buffer is allocated once, in the constructor (device: one upload area, one
// result area, the penalties' scratch; host: two slots of host staging, pinned on CUDA, each with
// a fence); sample() does one upload copy, one launch and one download copy per chunk of rows, on
// the device's default stream, and returns when the results are on the host. Rows are processed
// in chunks when a batch has more rows than max_rows or more penalty tokens than the penalty
// capacity.
// Token masks and logit biases (runtime/runner/step_masks.h) ride in the same upload as the other
// per-row inputs; the mask area holds max_rows masks of (vocab + 31) / 32 words.
// Asynchronous use (the engine's asynchronous scheduling): launch_async() queues one chunk and
// returns at once; collect() waits for the oldest queued launch and unpacks it. At most two are
// queued (one slot each); the device token output of the newest launch is device_tokens() (read
// in stream order by the next step's Op::kScatterTokens). sample() needs nothing queued.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "eli/sampling_params.h"
#include "kernels/registry.h"
#include "runtime/device/device.h"
#include "runtime/device/host_staging.h"
#include "runtime/runner/sampler.h"
#include "runtime/runner/step_masks.h"

namespace eli {

class ThreadPool;

class DeviceSampler {
 public:
  // max_rows: rows per launch (larger batches are chunked); vocab: the largest vocab sampled;
  // max_penalty_tokens: capacity of the penalty lists per launch (0: max(vocab, 1024 * max_rows)),
  // raised to at least vocab so that any single row fits; pool: the CPU kernel's threads (may be
  // null; unused on a GPU). Throws kUnsupported if the device has no kSample kernel.
  DeviceSampler(Device& device, int64_t max_rows, int64_t vocab, int64_t max_penalty_tokens = 0,
                ThreadPool* pool = nullptr);
  ~DeviceSampler();
  DeviceSampler(const DeviceSampler&) = delete;
  DeviceSampler& operator=(const DeviceSampler&) = delete;

  // Whether the sampler can serve these params (every validated request: logprobs <= 20).
  static bool supports(const SamplingParams& p);

  // Samples row i of device_logits ((n_rows, vocab) contiguous f32 on this device) for params[i] /
  // states[i]. The logits are scratch: the penalised rows are written back in place. Per row,
  // (*errors)[i] is empty on success, else the message of the eli::Error the host Sampler would
  // have thrown (non-finite logits, a recorded token id out of range), and (*out)[i] is then
  // meaningless: fail that request only. Does not call states[i]->append_output.
  // draw_offsets (optional, one per row): the draw's index in its request for the counter RNG
  // (default: states[i]->n_output()). masks (optional, one row entry per row; words = (vocab + 31)
  // / 32 of the constructor's vocab): the tokens each masked row may sample; a row whose mask
  // allows nothing gets an error. params[i]->logit_bias always applies.
  void sample(float* device_logits, int64_t n_rows, int64_t vocab, const std::vector<const SamplingParams*>& params,
              const std::vector<SequenceSamplingState*>& states, std::vector<SampleResult>* out,
              std::vector<std::string>* errors, const std::vector<int64_t>* draw_offsets = nullptr,
              const StepMasks* masks = nullptr);

  // Whether launch_async() can take these rows: one chunk (<= max_rows), no penalties (they need
  // the outputs still in flight), a free slot.
  bool can_launch_async(const std::vector<const SamplingParams*>& params) const;
  // Queues sampling of n_rows >= 1 rows (as sample(), with explicit draw offsets); results via collect().
  void launch_async(float* device_logits, int64_t n_rows, int64_t vocab,
                    const std::vector<const SamplingParams*>& params,
                    const std::vector<SequenceSamplingState*>& states, const std::vector<int64_t>& draw_offsets,
                    const StepMasks* masks = nullptr);
  // Waits for the oldest queued launch; (*out)[i] / (*errors)[i] as sample() for its rows.
  void collect(std::vector<SampleResult>* out, std::vector<std::string>* errors);
  // Forgets queued launches (after a failed step; the device work may still run).
  void drop_pending();
  int n_pending() const { return static_cast<int>(pending_.size()); }
  // Device int32 tokens of the newest launch's rows (valid in stream order until the next launch).
  const int32_t* device_tokens() const { return static_cast<const int32_t*>(d_out_); }

  int64_t max_rows() const { return max_rows_; }
  int64_t max_penalty_tokens() const { return max_pen_; }

 private:
  static constexpr int kSlots = 2;
  // A queued chunk: its staging slot, rows, vocab, top-logprob width and per-row logprob counts.
  struct Launch {
    int slot = 0;
    int64_t n = 0, vocab = 0, ts = 0;
    size_t out_total = 0;
    std::vector<int32_t> logprobs;
  };
  // Runs rows [r0, r1) (their penalty lists are already in pen_*_) and waits for them.
  void run_chunk(float* device_logits, int64_t r0, int64_t r1, int64_t vocab,
                 const std::vector<const SamplingParams*>& params, const std::vector<SequenceSamplingState*>& states,
                 const std::vector<int64_t>* draw_offsets, const StepMasks* masks, std::vector<SampleResult>* out,
                 std::vector<std::string>* errors);
  Launch enqueue_chunk(float* device_logits, int64_t r0, int64_t r1, int64_t vocab,
                       const std::vector<const SamplingParams*>& params,
                       const std::vector<SequenceSamplingState*>& states, const std::vector<int64_t>* draw_offsets,
                       const StepMasks* masks);
  void clear_lists();
  // The parameter slot table entry of rows [r0, r1) into row_slot[0, r1 - r0): a request keeps its
  // entry while it is sampled; a new one takes a free entry or the least recently used one that
  // this chunk does not use, and its parameters are written into table_host_. Returns whether an
  // entry was (re)written.
  bool assign_entries(const std::vector<const SamplingParams*>& params,
                      const std::vector<SequenceSamplingState*>& states, int64_t r0, int64_t r1,
                      int32_t* row_slot);
  void append_row_list();  // row_pen_ / row_bias_ onto the chunk's lists
  // Waits for l's download and unpacks its rows into (*out)[r0 + i] / (*errors)[r0 + i].
  void finish_chunk(const Launch& l, int64_t r0, std::vector<SampleResult>* out, std::vector<std::string>* errors);

  Device& device_;
  ThreadPool* pool_ = nullptr;
  void* stream_ = nullptr;  // the device's default stream (nullptr on the CPU)
  const KernelEntry* kernel_ = nullptr;
  int64_t max_rows_ = 0, vocab_ = 0, max_pen_ = 0, mask_words_ = 0;
  size_t in_bytes_ = 0, out_bytes_ = 0;
  void* d_in_ = nullptr;           // upload area (layout: see device_sampler.cc)
  void* d_out_ = nullptr;          // result area
  float* d_pen_raw_ = nullptr;     // (max_pen_) kernel scratch
  std::unique_ptr<HostStaging> host_in_[kSlots], host_out_[kSlots];  // the fence of slot i is host_out_[i]'s
  // Per-chunk host lists (capacity reserved once).
  std::vector<int32_t> pen_tokens_, pen_counts_, pen_offsets_;
  std::vector<float> pen_bias_;
  bool any_bias_ = false;  // some entry of the chunk's lists has a non-zero bias
  std::vector<std::pair<int32_t, int32_t>> row_pen_;  // scratch: one row's (token, count)
  std::vector<float> row_bias_;                       // scratch: one row's biases
  std::deque<Launch> pending_;  // queued asynchronous launches, oldest first
  // The requests' parameter slot table: n_entries_ entries at the start of the upload area, kept on
  // the device between launches and re-sent (whole, in the launch's upload) only when an entry was
  // written: a request's parameters cross once, when it is first sampled.
  struct Entry {
    uint64_t key = 0;       // SequenceSamplingState::key() of the request holding it; 0: free
    uint64_t last_use = 0;  // tick_ of the last chunk that sampled it
  };
  int64_t n_entries_ = 0;
  size_t table_bytes_ = 0;
  std::vector<Entry> entries_;
  std::unordered_map<uint64_t, int32_t> entry_of_;  // key -> entry
  std::vector<char> table_host_;  // the table as the device should hold it
  bool table_on_device_ = false;
  uint64_t tick_ = 0;
  int next_slot_ = 0;
};

}  // namespace eli
