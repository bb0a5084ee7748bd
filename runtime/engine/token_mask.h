// runtime/engine/token_mask.h: the token masks of a step's sampled rows: which tokens each row may
// sample, from its SamplingParams (constraint, allowed_token_ids, min_tokens). The masks are built
// on the host (while the device runs the step's forward pass) and applied inside the kSample kernel
// of every device (kernels/sample_ops.h, step 3b), by the host Sampler and the DeviceSampler alike.
//
// A row's mask = the constraint's mask (all tokens when none) AND allowed_token_ids (when given)
// AND NOT the stop tokens while the draw index < min_tokens (stop tokens: stop_token_ids and,
// unless ignore_eos, the model's EOS ids: what the engine ends a request on). A row whose
// constraint throws, or whose mask allows no token (a dead end), gets an error message instead:
// the engine ends that request with it (finish "error"); the other rows are untouched.
// Constraints that share a batch_key() fill their masks of the step in one fill_masks() call.
// Invariants: bit (t % 32) of word t / 32 is token t; bits at t >= vocab are 0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eli/sampling_params.h"
#include "runtime/runner/step_masks.h"

namespace eli {

// Whether a request's draw number draw_index needs a mask.
bool needs_mask(const SamplingParams& p, int64_t draw_index);

// One row's mask into mask[0, (vocab + 31) / 32); returns "" or the error that ends the request.
std::string fill_row_mask(const SamplingParams& p, int64_t draw_index, int64_t vocab,
                          const std::vector<int64_t>& eos_ids, uint32_t* mask);

// The masks of a step: params[i] / draw_offsets[i] per sampled row. (*errors) gets one entry per
// row ("" for none); an erroring row is left unmasked (its request ends with the error). Rows with
// (*skip)[i] != 0 (skip optional, may be shorter than the rows) get no mask and no error: their
// request ends before this row counts.
void build_step_masks(const std::vector<const SamplingParams*>& params, const std::vector<int64_t>& draw_offsets,
                      int64_t vocab, const std::vector<int64_t>& eos_ids, StepMasks* out,
                      std::vector<std::string>* errors, const std::vector<char>* skip = nullptr);

// Advances a request's constraint by its sampled token: "" when accepted, else the error that ends
// the request (a rejected token or an exception of the constraint). *finished: the constraint
// admits nothing more (the request ends with finish_reason "stop").
std::string constraint_accept(TokenConstraint& c, int32_t token, bool* finished);

}  // namespace eli
