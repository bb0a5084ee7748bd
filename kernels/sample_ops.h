// kernels/sample_ops.h: arguments of Op::kSample (sampling on the device). Included by kernels/ops.h.
// Owned by the sampling kernels (kernels/cuda/sampling.cu, kernels/ref/sampling_ref.cc); the
// numerics they share (counter RNG, Gumbel noise, penalties) are in kernels/sample_math.h.
//
// Contract, per row r (the semantics of runtime/engine/sampler.h, i.e. vLLM's):
//  1. If any logit of the row is NaN/+-Inf: status[r] = kSampleNonFinite, token[r] = the lowest
//     index of such a logit, logprob[r] = its value, top_ids[r, :] = -1; nothing else is done.
//  2. Raw log-softmax (lse over the unpenalised row). Top-n (n = min(n_logprobs[r], vocab,
//     top_stride)) raw logprobs, best first, ties by lower id, into top_ids / top_logprobs; the
//     rest of the row's top_stride slots get id -1, logprob 0.
//  3. Penalties (if repetition != 1 or presence != 0 or frequency != 0), in place on the logits,
//     for each listed token t with output count c: repetition (z > 0 ? z / rep : z * rep), then, if
//     c > 0, z -= frequency * c + presence (each step in double, clamped to +-FLT_MAX). The raw
//     value is saved in penalty_raw[j].
//  4. Greedy (temperature < kSampleGreedyTemperatureEps or top_k == 1): argmax, lowest id on ties.
//  5. Otherwise, with z the penalised row, zmax its max, inv_t = float(1 / temperature),
//     s(t) = (z_t - zmax) * inv_t and w(t) = expf(s(t)) in float: order tokens by (z desc, id asc);
//     top-k keeps the first k (1 < k < vocab); top-p keeps the shortest prefix of that whose
//     cumulative w (double) reaches top_p * (sum of w over the top-k set); min-p drops tokens with
//     w < min_p. The token is argmax over survivors of s(t) + gumbel(seed, offset, t) (ties:
//     lower id): an exact draw from the renormalised filtered distribution.
//  6. logprob[r] = raw z_token - lse (when n_logprobs[r] >= 0, else 0); status[r] = kSampleOk.
// On return the logits rows hold the penalised values (the logits are scratch).
//
// Exactness between the CUDA kernel and the reference: greedy tokens, top-k sets, min-p and the
// top-n logprobs ids are exact; top-p sums weights in a different order (relative differences
// ~1e-7 of the total), so a token whose cumulative mass lands within that of top_p * total may be
// kept by one and dropped by the other; Gumbel noise uses logf/log1pf, which may differ by an ulp
// between the device and the host libm, so two survivors whose keys agree to ~1e-6 may swap.
#pragma once

#include <cstdint>

#include "kernels/ops.h"

namespace eli {

constexpr int kSampleMaxTopLogprobs = 20;            // top_stride <= this (eli::kMaxLogprobs)
constexpr double kSampleGreedyTemperatureEps = 1e-5; // == eli::kGreedyTemperatureEps (sampler.h)
constexpr int32_t kSampleOk = 0;
constexpr int32_t kSampleNonFinite = 1;

struct SampleArgs {
  // ---- outputs
  int32_t* token;           // (n_rows) sampled id; status 1: lowest index of a non-finite logit
  float* logprob;           // (n_rows) raw log-softmax of token (0 if n_logprobs < 0); status 1: that logit
  int32_t* top_ids;         // (n_rows, top_stride) best first, -1 in unused slots; null if top_stride == 0
  float* top_logprobs;      // (n_rows, top_stride) raw logprobs of top_ids; null if top_stride == 0
  int32_t* status;          // (n_rows) kSampleOk or kSampleNonFinite
  // ---- in/out scratch
  float* logits;            // (n_rows, vocab), row stride logits_stride; penalised in place
  float* penalty_raw;       // (penalty_offsets[n_rows]) receives the raw logit of each listed token
  // ---- per-row parameters (all (n_rows), all required)
  const double* temperature;        // >= 0; < kSampleGreedyTemperatureEps: greedy
  const int32_t* top_k;             // <= 0 or >= vocab: off; 1: greedy
  const double* top_p;              // (0, 1]; 1: off
  const double* min_p;              // [0, 1]; 0: off
  const double* repetition_penalty; // > 0; 1: off
  const double* presence_penalty;   // 0: off
  const double* frequency_penalty;  // 0: off
  const uint64_t* seed;             // counter-RNG key of this draw (sample_row_key(seed, offset))
  const uint64_t* offset;           // counter-RNG step (e.g. the number of tokens generated so far)
  const int32_t* n_logprobs;        // -1: none; 0: the token's logprob; n: plus the top n
  // ---- penalty token lists, CSR over rows (null penalty_offsets: no penalties anywhere)
  const int32_t* penalty_offsets;   // (n_rows + 1) row r owns entries [offsets[r], offsets[r+1])
  const int32_t* penalty_tokens;    // (nnz) unique within a row, each in [0, vocab): prompt and output tokens
  const int32_t* penalty_counts;    // (nnz) times generated (0: seen in the prompt only)
  // ---- sizes
  int64_t n_rows;
  int64_t vocab;            // in [1, 2^31)
  int64_t logits_stride;    // >= vocab
  int64_t top_stride;       // [0, kSampleMaxTopLogprobs]: slots per row of top_ids / top_logprobs
};

// The CPU reference (kernels/ref/sampling_ref.cc), registered as (kSample, CPU, F32, "ref").
void sample_ref(const void* args, const ExecContext& ctx);  // SampleArgs

// The argument checks shared by every kSample kernel (kernels/ref/sampling_ref.cc); throw eli::Error.
void check_sample_args(const SampleArgs& a);

}  // namespace eli
