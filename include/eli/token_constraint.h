// eli/token_constraint.h: the engine's seam for constrained decoding. A TokenConstraint decides,
// before each sampled token of one request, which tokens may come next (a JSON schema, a regular
// expression, a grammar...). eli's Python package implements it with llguidance
// (python/eli/structured/); a C++ embedder plugs any grammar engine by deriving from it and setting
// SamplingParams::constraint.
//
// Contract (the engine's side, runtime/engine/engine.cc + runtime/engine/token_mask.cc):
//  - One constraint object belongs to one request, for its whole life (it is stateful: never share
//    one between requests in flight; SamplingParams copies share the pointer).
//  - Calls come from the engine's stepping thread, one at a time per request, in this order:
//    fill_mask() for the next output token, then accept() of the token sampled under that mask,
//    then is_finished(); repeated. Calls of different requests never overlap (one thread).
//  - fill_mask() runs on the host while the device computes the step's forward pass (launch
//    forward, compute the masks of the step's constrained rows, then sample with them); the mask
//    is applied inside the sampler (host or device kernel: disallowed tokens get -inf after the
//    penalties), so no device synchronisation is added.
//  - Asynchronous scheduling: the mask of step t+1 needs token t on the host, while step t+1 is
//    launched before step t is completed. The engine queues step t+1's forward pass (its input at
//    the constrained row is step t's token, read on the device), then waits for step t's samples
//    (queued before that forward pass, so ready long before it ends), calls accept(token t), then
//    fill_mask() for t+1, then queues t+1's sampling. So accept() of token t always precedes the
//    mask of t+1, the device keeps running the forward pass meanwhile, and other requests keep the
//    lookahead. If token t ends the request (rejected, the grammar's end, a stop token), no mask is
//    filled for t+1 and that row's sample is ignored.
//  - Preemption recomputes the KV of prompt + generated tokens and keeps the tokens, so the
//    matcher's state (all accepted outputs) stays exact: no rollback is needed; rollback() exists
//    for embedders that drop generated tokens.
//  - Errors: any exception from a method ends that request only, with finish_reason "error" and
//    the exception's message; a mask with no allowed token is reported as a dead end the same way,
//    never a hang. accept() returning false (a token the matcher rejects) also ends the request with
//    an error. is_finished() true after accept() (the grammar admits nothing but the end) ends the
//    request with finish_reason "stop".
//  - Batching (optional): constraints whose batch_key() is the same non-null value fill their
//    masks of a step in one fill_masks() call (llguidance: on its thread pool, with one GIL
//    acquisition); the default is one fill_mask() per constraint.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace eli {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;

  // Writes the allowed next tokens: bit (t % 32) of bitmask[t / 32] is 1 iff token t may come next,
  // for t in [0, vocab); the array has (vocab + 31) / 32 words (the caller zero-fills it first;
  // bits at t >= vocab are ignored). Throws to fail the request.
  virtual void fill_mask(uint32_t* bitmask, int64_t vocab) = 0;
  // Advances the state by the sampled token; false if the constraint rejects it.
  virtual bool accept(int32_t token) = 0;
  // True when the constraint admits nothing but the end of the output.
  virtual bool is_finished() = 0;
  // Forgets the last n accepted tokens (default: unsupported, returns false).
  virtual bool rollback(int64_t /*n*/) { return false; }

  // Batching: a non-null key shared by the constraints that one fill_masks() call can serve.
  virtual const void* batch_key() const { return nullptr; }
  // Called on group[0] (every group[i] has its batch_key): fills the mask of group[i] at
  // masks + index[i] * words (zero-filled by the caller), as fill_mask() would; errors[i] = "" or
  // the message that fails that request. Throws to fail the whole group.
  virtual void fill_masks(TokenConstraint* const* /*group*/, const int32_t* /*index*/, size_t /*n*/,
                          uint32_t* /*masks*/, int64_t /*words*/, int64_t /*vocab*/, std::string* /*errors*/) {}
};

}  // namespace eli
