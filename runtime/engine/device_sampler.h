// runtime/engine/device_sampler.h: sampling on the device that produced the logits (Op::kSample), so
// that a step moves a few bytes per row to the host instead of (rows, vocab) floats.
//
// Semantics are the host Sampler's (runtime/engine/sampler.h), with one difference: the draw is a
// Gumbel-max over a counter RNG keyed by one 64-bit value taken from the request's rng (one rng()
// call per non-greedy draw, none for greedy ones, as the host sampler), so a seeded request is
// reproducible and independent of the batch, but its tokens differ from the host sampler's.
// Greedy tokens, logprobs and top logprobs match the host sampler's.
//
// Invariants: every buffer is allocated once, in the constructor (device: one upload area, one
// result area, the penalties' scratch; host: the same staging, pinned on CUDA); sample() does one
// upload copy, one launch and one download copy per chunk of rows, on the device's default stream,
// and returns when the results are on the host. Rows are processed in chunks when a batch has
// more rows than max_rows or more penalty tokens than the penalty capacity. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "eli/sampling_params.h"
#include "kernels/registry.h"
#include "runtime/device/device.h"
#include "runtime/engine/sampler.h"

namespace eli {

class DeviceSampler {
 public:
  // max_rows: rows per launch (larger batches are chunked); vocab: the largest vocab sampled;
  // max_penalty_tokens: capacity of the penalty lists per launch (0: max(vocab, 1024 * max_rows)),
  // raised to at least vocab so that any single row fits. Throws kUnsupported if the device has no
  // kSample kernel.
  DeviceSampler(Device& device, int64_t max_rows, int64_t vocab, int64_t max_penalty_tokens = 0);
  ~DeviceSampler();
  DeviceSampler(const DeviceSampler&) = delete;
  DeviceSampler& operator=(const DeviceSampler&) = delete;

  // Whether the device path can serve these (validated) params; else use the host Sampler.
  static bool supports(const SamplingParams& p);

  // Samples row i of device_logits ((n_rows, vocab) contiguous f32 on this device) for params[i] /
  // states[i]. The logits are scratch: the penalised rows are written back in place. Per row,
  // (*errors)[i] is empty on success, else the message of the eli::Error the host Sampler would
  // have thrown (non-finite logits, a recorded token id out of range), and (*out)[i] is then
  // meaningless: fail that request only. Does not call states[i]->append_output.
  void sample(float* device_logits, int64_t n_rows, int64_t vocab, const std::vector<const SamplingParams*>& params,
              const std::vector<SequenceSamplingState*>& states, std::vector<SampleResult>* out,
              std::vector<std::string>* errors);

  int64_t max_rows() const { return max_rows_; }
  int64_t max_penalty_tokens() const { return max_pen_; }

 private:
  struct HostStaging;
  // Runs rows [r0, r1) (their penalty lists are already in pen_*_ at offsets pen_begin_[r - r0]).
  void run_chunk(float* device_logits, int64_t r0, int64_t r1, int64_t vocab,
                 const std::vector<const SamplingParams*>& params, const std::vector<SequenceSamplingState*>& states,
                 std::vector<SampleResult>* out, std::vector<std::string>* errors);

  Device& device_;
  void* stream_ = nullptr;  // the device's default stream (nullptr on the CPU)
  const KernelEntry* kernel_ = nullptr;
  int64_t max_rows_ = 0, vocab_ = 0, max_pen_ = 0;
  size_t in_bytes_ = 0, out_bytes_ = 0;
  void* d_in_ = nullptr;           // upload area (layout: see device_sampler.cc)
  void* d_out_ = nullptr;          // result area
  float* d_pen_raw_ = nullptr;     // (max_pen_) kernel scratch
  std::unique_ptr<HostStaging> host_;
  // Per-chunk host lists (capacity reserved once).
  std::vector<int32_t> pen_tokens_, pen_counts_, pen_offsets_;
  std::vector<std::pair<int32_t, int32_t>> row_pen_;  // scratch: one row's (token, count)
};

}  // namespace eli
