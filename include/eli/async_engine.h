// eli/async_engine.h: an Engine driven by its own thread. Callers on any thread submit and abort
// requests and read each request's outputs from a queue; the loop thread runs Engine::step()
// while there is work and sleeps on a condition variable when idle.
//
// Threading design: the wrapped Engine is touched ONLY by the loop thread. Every call that needs
// it (add_request, add_requests, abort_request, score) becomes a command in a mutex-protected
// queue; the loop thread applies queued commands between two steps. Calls that return something
// (add_request: the id or the admission error; score: the logits) wait on a promise that the loop
// thread fulfils, so admission errors reach the caller synchronously (thrown again in the caller
// as eli::Error with the same kind and message), after at most one step of waiting; admissions
// queued during one step are all applied before the next, so concurrent submitters batch. abort_request does not wait: the loop thread applies it before its
// next step, which frees the request's KV blocks and delivers its final kAbort output.
//
// Invariants:
// - Every admitted request ends with exactly one output whose finish != kNone, also when the
//   engine fails (kError with the message for every in-flight request) or shuts down without
//   draining (kAbort). An output is delivered once: by wait_outputs() or wait_request_outputs().
// - After a step throws (e.g. a device fault) the engine is dead: healthy() is false, error()
//   holds the message, every in-flight and waiting request ends with kError, the Engine is never
//   touched again, and add_request()/score() throw Error(kDevice, kEngineDeadPrefix + reason).
//   The one exception is a step that throws kOutOfMemory (a device allocation failed, or the
//   step_oom fault point): every in-flight request ends with kError and frees its KV blocks, and
//   the engine stays healthy and keeps serving.
// - The loop never waits for a reader: outputs not yet read wait in per-request queues
//   (queued_outputs() counts them; at most max_tokens + 1 per request).
// - stats() is a snapshot refreshed by the loop thread after every command batch and every step.
// Fault points checked by the loop (runtime/core/fault_injection.h, docs/fault_injection.md):
// slow_step_ms, step_oom and kernel_poison, before each step.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "eli/engine.h"

namespace eli {

// Start of the message of the error a dead engine throws for new work (kind kDevice); the rest is
// the reason it died. The Python bindings map it to eli.EngineDeadError.
constexpr const char* kEngineDeadPrefix = "engine is dead: ";

class AsyncEngine {
 public:
  // Loads the model (on the calling thread; throws as Engine's constructor) and starts the loop.
  explicit AsyncEngine(const EngineConfig& config);
  // Takes over an existing Engine, which must not be used elsewhere afterwards.
  explicit AsyncEngine(std::unique_ptr<Engine> engine);
  // shutdown(false): in-flight requests end with kAbort; the thread is joined.
  ~AsyncEngine();
  AsyncEngine(const AsyncEngine&) = delete;
  AsyncEngine& operator=(const AsyncEngine&) = delete;

  // Immutable after construction; safe from any thread.
  const EngineInfo& info() const;

  // Admits a request (Engine::add_request on the loop thread) and returns its id; rethrows the
  // admission error (kInvalidArgument) in the caller. Throws kInvalidArgument after shutdown and
  // kDevice when the engine is dead.
  int64_t add_request(const std::vector<int32_t>& prompt, const SamplingParams& params);
  // Admits all requests between the same two steps, or none: when one fails admission, those
  // already admitted from this call are aborted silently and the error (prefixed with the index)
  // is thrown.
  std::vector<int64_t> add_requests(const std::vector<std::vector<int32_t>>& prompts,
                                    const std::vector<SamplingParams>& params);
  // Ends a request at whatever phase it is in (no-op when it already ended). Never blocks on a step.
  void abort_request(int64_t request_id);

  // Waits until some request has outputs (or timeout_ms passes; < 0: no limit) and moves all
  // available outputs, of every request, into *out (appended). Returns false only when the loop
  // has stopped (shutdown or dead) and nothing is left to read.
  bool wait_outputs(std::vector<TokenOutput>* out, int timeout_ms);
  // As wait_outputs, restricted to the given requests. Returns false when none of them has
  // anything left to deliver (all ended and their outputs were read, or the ids are unknown).
  bool wait_request_outputs(const std::vector<int64_t>& request_ids, std::vector<TokenOutput>* out,
                            int timeout_ms);

  // Engine::score on the loop thread, between steps.
  std::vector<float> score(const std::vector<int32_t>& token_ids);
  EngineStats stats() const;

  // Outputs published by the loop and not yet read by wait_outputs / wait_request_outputs.
  int64_t queued_outputs() const;

  bool healthy() const;
  std::string error() const;  // why the engine died; empty while healthy
  // Watchdog support: steps run so far, when the last one ended (or the loop started), and
  // whether the loop is busy (has work). A busy loop whose last step is old is wedged.
  int64_t steps() const;
  std::chrono::steady_clock::time_point last_step_time() const;
  bool busy() const;

  // Stops accepting requests and stops the loop. drain: let in-flight requests finish first;
  // otherwise they end with kAbort. Blocks until the loop thread exited; idempotent.
  void shutdown(bool drain);

  // Test hook: pause the loop after n more steps (0: now; < 0: resume). While paused, commands
  // (admissions, aborts, score) still run between would-be steps, but no step runs, except the
  // ones a shutdown needs to end its requests. Makes "abort while holding blocks" deterministic.
  void pause_after_steps(int64_t n);
  // Test hook (fault injection): the step after `after_steps` more steps throws
  // Error(kDevice, message) instead of running, as a device fault would.
  void inject_step_fault(int64_t after_steps, const std::string& message);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace eli
