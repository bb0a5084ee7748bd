// kernels/sample_ops.h: eli's sampling semantics, and the arguments of Op::kSample that implement
// them. Included by kernels/ops.h. The numerics are in kernels/sample_math.h; the kernels are
// kernels/ref/sampling_ref.cc (the reference: plain and sequential), kernels/cpu/sampling_cpu.cc
// and kernels/cuda/sampling.cu. Every one of them computes the same token for the same inputs, bit
// for bit, on every device: a seeded request gives the same tokens on the CPU and on a GPU, given
// the same logits. Logprobs are sums over the row and agree to ~1e-6 (summation order).
//
// The semantics (vLLM's order of operations), per row r with raw logits x (vocab V):
//  1. If any logit of the row is NaN/+-Inf: status[r] = kSampleNonFinite, token[r] = the lowest
//     index of such a logit, logprob[r] = its value, top_ids[r, :] = -1; nothing else is done.
//  2. Logprobs are of the RAW row: lse = max + ln(sum e^(x - max)). Top-n (n = min(n_logprobs[r],
//     V, top_stride)) ids in the order (x desc, id asc) with x - lse, into top_ids / top_logprobs;
//     the rest of the row's top_stride slots get id -1, logprob 0.
//  3. Penalties and logit bias, in place on the logits, for each listed token t (when penalties
//     are active: repetition != 1 or presence != 0 or frequency != 0; or when penalty_bias is
//     given): the raw value is saved in penalty_raw[j]; then, with bias b = penalty_bias[j] (0
//     when null), z = sample_clamp_to_float(z + b) if b != 0; then, if the entry's count c >= 0
//     and penalties are active, sample_penalize (repetition z > 0 ? z / rep : z * rep; then, if
//     c > 0, z - frequency * c - presence; double, clamped to +-FLT_MAX). Entries with c < 0 are
//     listed for their bias only. z is the penalised row from here on.
//  3b. Token mask (allow_mask and mask_row given, mask_row[r] >= 0): every token whose bit is 0 in
//     the row's mask gets z = -inf. If no token is left (every z is -inf): status[r] =
//     kSampleMaskedOut, token[r] = -1, and nothing else is done. Masked tokens have s = -inf, mass
//     0 and key -inf: they never win a draw, and greedy picks the best allowed token.
//  4. Greedy (temperature < kSampleGreedyTemperatureEps or top_k == 1): the argmax of z, lowest
//     id on ties.
//  5. Otherwise: zmax = max z; inv_t = sample_inv_temperature(T); s(t) = sample_scaled(z_t, zmax,
//     inv_t) <= 0; the order O is (z desc, id asc). Filters, in this order:
//       top-k (1 < k < V): the first k tokens of O;
//       top-p (< 1): with integer masses m(t) = sample_mass(s(t)) and M their sum over the top-k
//         set, the shortest prefix of O (within the top-k set) whose cumulative mass reaches
//         sample_top_p_target(M, top_p);
//       min-p (> 0): drops tokens with sample_exp(s(t)) < min_p.
//     The draw: key(t) = sample_gumbel_key(s(t), sample_row_key(seed[r], offset[r]), t); the token
//     is the survivor with the largest key, ties by lower id: an exact draw from the renormalised
//     filtered distribution (Gumbel-max), whose random numbers depend on (seed, offset, token id)
//     only: not on the batch, the device, or the order in which a kernel visits the tokens.
//     The best token of O survives every filter, so there is always a candidate.
//  6. logprob[r] = raw x_token - lse (when n_logprobs[r] >= 0, else 0); status[r] = kSampleOk.
// On return the logits rows hold the penalised values (the logits are scratch).
//
// Exactness: every quantity that decides the token (penalties, s, the top-k order, integer masses,
// the min-p weight, the Gumbel keys) is computed with correctly rounded operations only (no libm,
// no FMA, no float sums), so it is the same on every device, and the decisions that combine many
// tokens are order-free (integer sums, max with a tie rule). The only float sum is the log-sum-exp
// of the logprobs, which does not decide the token.
#pragma once

#include <cstdint>

#include "kernels/ops.h"

namespace eli {

constexpr int kSampleMaxTopLogprobs = 20;            // top_stride <= this (eli::kMaxLogprobs)
constexpr double kSampleGreedyTemperatureEps = 1e-5; // == eli::kGreedyTemperatureEps (sampler.h)
constexpr int32_t kSampleOk = 0;
constexpr int32_t kSampleNonFinite = 1;
constexpr int32_t kSampleMaskedOut = 2;  // the row's mask left no token

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
  // ---- the requests' parameters (all required): entry row_slot[r] of each array is row r's (a
  // persistent per-request slot table, runtime/runner/device_sampler.h); without row_slot, entry r
  const int32_t* row_slot;          // (n_rows) or null
  const double* temperature;        // >= 0; < kSampleGreedyTemperatureEps: greedy
  const int32_t* top_k;             // <= 0 or >= vocab: off; 1: greedy
  const double* top_p;              // (0, 1]; 1: off
  const double* min_p;              // [0, 1]; 0: off
  const double* repetition_penalty; // > 0; 1: off
  const double* presence_penalty;   // 0: off
  const double* frequency_penalty;  // 0: off
  const uint64_t* seed;             // the request's seed (sample_row_key(seed, offset) keys the draw)
  const uint64_t* offset;           // (n_rows, per row, not per slot) the index of the output token drawn
                                    //   (0 for the request's first)
  const int32_t* n_logprobs;        // -1: none; 0: the token's logprob; n: plus the top n
  // ---- penalty token lists, CSR over rows (null penalty_offsets: no penalties anywhere)
  const int32_t* penalty_offsets;   // (n_rows + 1) row r owns entries [offsets[r], offsets[r+1])
  const int32_t* penalty_tokens;    // (nnz) unique within a row, each in [0, vocab): prompt and output tokens
  const int32_t* penalty_counts;    // (nnz) times generated (0: seen in the prompt only; -1: bias only)
  const float* penalty_bias;        // (nnz) or null: logit bias of each listed token (0: none)
  // ---- token masks (null allow_mask: no masks anywhere)
  const uint32_t* allow_mask;       // (n_masks, mask_words): bit t % 32 of word t / 32 = token t allowed
  const int32_t* mask_row;          // (n_rows) row r's mask index in allow_mask, -1: unmasked
  int64_t mask_words;               // >= (vocab + 31) / 32 when allow_mask is given
  // ---- sizes
  int64_t n_rows;
  int64_t vocab;            // in [1, 2^31)
  int64_t logits_stride;    // >= vocab
  int64_t top_stride;       // [0, kSampleMaxTopLogprobs]: slots per row of top_ids / top_logprobs
};

// The CPU reference (kernels/ref/sampling_ref.cc), registered as (kSample, CPU, F32, "ref").
void sample_ref(const void* args, const ExecContext& ctx);  // SampleArgs
// The CPU kernel (kernels/cpu/sampling_cpu.cc), registered as (kSample, CPU, F32, "cpu"): rows in
// parallel on ctx.pool, selections in O(vocab); identical to the reference in every output.
void sample_cpu(const void* args, const ExecContext& ctx);  // SampleArgs

// The argument checks shared by every kSample kernel (kernels/ref/sampling_ref.cc); throw eli::Error.
void check_sample_args(const SampleArgs& a);

}  // namespace eli
