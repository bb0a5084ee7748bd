// runtime/engine/async_engine.cc: see include/eli/async_engine.h for the threading design.
//
// Locks: mu_ guards the command queue and the lifecycle flags; out_mu_ guards the per-request
// output queues, the stats snapshot and the death record. They are never held together, and the
// Engine is called only from the loop thread (never under out_mu_, so readers never wait on a step).
// Invariants: a request id is in `ready` iff its state exists and its queue is non-empty; `queued`
// is the total length of all queues. Publishing never waits for a reader: a slow reader only makes
// its own queue longer (at most max_tokens + 1 outputs per request).
//
// Fault points (runtime/core/fault_injection.h) checked before each step: slow_step_ms (sleep),
// step_oom (the step throws kOutOfMemory; a kIO step error, e.g. disk_read, is survived the same
// way), kernel_poison (CUDA: the context is broken, so the step fails as after a real kernel fault;
// CPU: the step throws kDevice).
#include "eli/async_engine.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "eli/device.h"
#include "eli/error.h"
#include "runtime/core/fault_injection.h"
#include "runtime/device/device.h"

namespace eli {
namespace {

// An error crossing threads as plain data (kind + message), not as an exception_ptr: the caller
// rethrows it as eli::Error. (Sharing exception objects between threads also trips TSan.)
struct Failure {
  ErrorKind kind = ErrorKind::kInternal;
  std::string message;
};

template <typename R>
struct Reply {
  R value{};
  bool ok = false;
  Failure failure;
};

struct Command {
  std::function<void()> run;                     // on the loop thread, Engine alive
  std::function<void(const Failure&)> cancel;    // the loop stopped before running it; may be empty
};

struct RequestState {
  std::deque<TokenOutput> queue;
  bool ended = false;  // its final output was published (it is in `queue` or was read)
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct AsyncEngine::Impl {
  std::unique_ptr<Engine> engine;

  // ---- guarded by mu ----
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Command> commands;
  bool accepting = true;  // new requests and scores are taken
  bool stop = false, drain = false;
  bool exited = false;    // the loop will run no more commands
  int64_t fault_after = -1;
  std::string fault_message;
  int64_t pause_after = -1;  // test hook: steps left before pausing; -1: never
  bool paused = false;       // test hook: commands still run, steps do not (except to stop)

  // ---- guarded by out_mu ----
  mutable std::mutex out_mu;
  std::condition_variable out_cv;
  std::unordered_map<int64_t, RequestState> reqs;
  std::set<int64_t> ready;
  bool stopped = false;  // the loop thread has exited
  bool dead = false;
  std::string error;
  EngineStats stats;
  int64_t queued = 0;  // outputs published and not yet read

  // ---- loop thread only ----
  std::set<int64_t> live;  // admitted, final output not yet published

  std::atomic<int64_t> steps{0};
  std::atomic<int64_t> last_step_ns{now_ns()};
  std::atomic<bool> busy{false};
  std::mutex join_mu;
  std::thread thread;

  void push(Command cmd, bool admission) {
    {
      std::lock_guard<std::mutex> lk(mu);
      if (!exited && (!admission || accepting)) {
        commands.push_back(std::move(cmd));
        cv.notify_one();
        return;
      }
    }
    if (!admission) return;  // an abort after the end: nothing to do
    Failure f = refusal();
    throw Error(f.kind, f.message);
  }

  Failure refusal() const {
    std::lock_guard<std::mutex> lk(out_mu);
    if (dead) return {ErrorKind::kDevice, kEngineDeadPrefix + error};
    return {ErrorKind::kInvalidArgument, "the engine is shut down"};
  }

  // Runs fn on the loop thread and returns its result (or throws its error) here.
  template <typename R>
  R call(std::function<R()> fn, bool admission) {
    auto promise = std::make_shared<std::promise<Reply<R>>>();
    std::future<Reply<R>> future = promise->get_future();
    Command cmd;
    cmd.run = [promise, fn = std::move(fn)] {
      Reply<R> r;
      try {
        r.value = fn();
        r.ok = true;
      } catch (const Error& e) {
        r.failure = {e.kind(), e.what()};
      } catch (const std::bad_alloc&) {
        r.failure = {ErrorKind::kOutOfMemory, "out of host memory"};
      } catch (const std::exception& e) {
        r.failure = {ErrorKind::kInternal, e.what()};
      }
      promise->set_value(std::move(r));
    };
    cmd.cancel = [promise](const Failure& f) {
      Reply<R> r;
      r.failure = f;
      promise->set_value(std::move(r));
    };
    push(std::move(cmd), admission);
    Reply<R> r = future.get();
    if (!r.ok) throw Error(r.failure.kind, r.failure.message);
    return std::move(r.value);
  }

  // Loop thread: registers an admitted request so its outputs have a queue.
  void register_request(int64_t id) {
    {
      std::lock_guard<std::mutex> lk(out_mu);
      reqs[id];
    }
    live.insert(id);
  }

  // Loop thread: forgets a request admitted by a failed batch (its abort echo is dropped).
  void unregister_request(int64_t id) {
    engine->abort_request(id);
    live.erase(id);
    std::lock_guard<std::mutex> lk(out_mu);
    auto it = reqs.find(id);
    if (it != reqs.end()) {
      queued -= static_cast<int64_t>(it->second.queue.size());
      reqs.erase(it);
    }
    ready.erase(id);
  }

  void publish(std::vector<TokenOutput>& outs) {
    if (outs.empty()) return;
    {
      std::lock_guard<std::mutex> lk(out_mu);
      for (TokenOutput& o : outs) {
        const int64_t id = o.request_id;
        auto it = reqs.find(id);
        if (o.finish != FinishReason::kNone) live.erase(id);
        // Rolled back by add_requests, or already ended (the engine's abort echo of a request
        // that was failed after an out-of-memory step): nothing more is delivered.
        if (it == reqs.end() || it->second.ended) continue;
        if (o.finish != FinishReason::kNone) it->second.ended = true;
        it->second.queue.push_back(std::move(o));
        ++queued;
        ready.insert(id);
      }
    }
    out_cv.notify_all();
  }

  void refresh_stats() {
    EngineStats s = engine->stats();
    std::lock_guard<std::mutex> lk(out_mu);
    stats = s;
  }

  // Loop thread, after a failed step: every in-flight request gets the error; the Engine is
  // abandoned.
  void die(const std::string& message) {
    {
      std::lock_guard<std::mutex> lk(mu);
      accepting = false;
    }
    std::vector<TokenOutput> outs;
    for (int64_t id : live) {
      TokenOutput o;
      o.request_id = id;
      o.finish = FinishReason::kError;
      o.error = message;
      outs.push_back(std::move(o));
    }
    {
      std::lock_guard<std::mutex> lk(out_mu);
      dead = true;
      error = message;
    }
    publish(outs);
    live.clear();
  }

  // Loop thread, after a step threw kOutOfMemory (a device allocation failed) or kIO (a disk-tier
  // weight read failed): the Engine's state is intact (the step's sequences keep their blocks and
  // nothing advanced). Every in-flight request ends with kError and its blocks are freed now; the
  // engine stays healthy and takes new work. (Which requests were in the failed step is not
  // visible here, so all of them end.)
  void recover_from_step_error(const Error& e) {
    const std::string message = std::string(e.kind() == ErrorKind::kIO ? "I/O error" : "out of memory") +
                                " during a step (the request was ended; the engine goes on): " + e.what();
    std::vector<TokenOutput> outs;
    for (int64_t id : live) {
      engine->abort_request(id);  // frees its blocks; publish() drops the kAbort echo
      TokenOutput o;
      o.request_id = id;
      o.finish = FinishReason::kError;
      o.error = message;
      outs.push_back(std::move(o));
    }
    last_step_ns.store(now_ns());  // the loop is making progress, not wedged
    refresh_stats();
    publish(outs);
  }

  // Loop thread, right before a step: the fault points of the step (no-ops unless armed).
  void step_faults() {
    int64_t ms = 0;
    if (fault_fires(FaultPoint::kSlowStep, &ms) && ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    if (fault_fires(FaultPoint::kStepOom)) {
      ELI_THROW(kOutOfMemory, "injected fault step_oom: a device allocation failed during the step");
    }
    if (fault_fires(FaultPoint::kKernelPoison)) {
      const DeviceId dev = parse_device(engine->info().device);
      if (dev.kind == DeviceKind::kCUDA) {
        poison_cuda_context(dev.index);  // the step below fails at its first CUDA call
      } else {
        ELI_THROW(kDevice, "injected fault kernel_poison: simulated device fault on ", engine->info().device);
      }
    }
  }

  // Refuses the commands of a batch that will not run (the engine died part-way through it).
  void cancel_from(std::vector<Command>* cmds, size_t first) {
    if (first >= cmds->size()) return;
    const Failure refused = refusal();
    for (size_t i = first; i < cmds->size(); ++i) {
      if ((*cmds)[i].cancel) (*cmds)[i].cancel(refused);
    }
  }

  void loop();
};

void AsyncEngine::Impl::loop() {
  for (;;) {
    std::vector<Command> cmds;
    bool stop_now = false, drain_now = false;
    {
      std::unique_lock<std::mutex> lk(mu);
      for (;;) {
        const bool work = engine->has_unfinished() && (!paused || stop);
        busy.store(work || !commands.empty());
        if (work || !commands.empty()) break;
        if (stop) {
          exited = true;
          break;
        }
        cv.wait(lk);
      }
      if (exited) break;
      cmds.swap(commands);
      stop_now = stop;
      drain_now = drain;
    }
    size_t n_run = 0;
    try {
      for (; n_run < cmds.size(); ++n_run) cmds[n_run].run();
      if (stop_now && !drain_now) {
        std::vector<int64_t> ids(live.begin(), live.end());
        for (int64_t id : ids) engine->abort_request(id);
      }
      bool step_now = engine->has_unfinished();
      if (step_now) {
        std::lock_guard<std::mutex> lk(mu);
        step_now = !paused || stop;
      }
      if (step_now) {
        {
          std::lock_guard<std::mutex> lk(mu);
          if (pause_after > 0 && --pause_after == 0) paused = true;
          if (fault_after == 0) {
            fault_after = -1;
            throw Error(ErrorKind::kDevice, fault_message);
          }
          if (fault_after > 0) --fault_after;
        }
        std::vector<TokenOutput> outs;
        try {
          step_faults();
          outs = engine->step();
        } catch (const Error& e) {
          if (e.kind() != ErrorKind::kOutOfMemory && e.kind() != ErrorKind::kIO) throw;
          recover_from_step_error(e);
          continue;
        }
        steps.fetch_add(1);
        last_step_ns.store(now_ns());
        refresh_stats();  // before publishing: a reader who saw a final output sees its blocks free
        publish(outs);
      } else {
        refresh_stats();
      }
    } catch (const std::exception& e) {
      die(e.what());
      cancel_from(&cmds, n_run + 1);
      break;
    } catch (...) {
      die("unknown error in the engine step");
      cancel_from(&cmds, n_run + 1);
      break;
    }
  }
  // No command runs any more: refuse those still queued, then wake every reader.
  std::vector<Command> left;
  {
    std::lock_guard<std::mutex> lk(mu);
    exited = true;
    accepting = false;
    left.swap(commands);
  }
  busy.store(false);
  const Failure refused = refusal();
  for (Command& c : left) {
    if (c.cancel) c.cancel(refused);
  }
  {
    std::lock_guard<std::mutex> lk(out_mu);
    stopped = true;
  }
  out_cv.notify_all();
}

AsyncEngine::AsyncEngine(const EngineConfig& config) : AsyncEngine(std::make_unique<Engine>(config)) {}

AsyncEngine::AsyncEngine(std::unique_ptr<Engine> engine) : impl_(new Impl) {
  ELI_CHECK_ARG(engine != nullptr, "AsyncEngine needs an engine");
  load_faults_from_env();
  impl_->engine = std::move(engine);
  impl_->stats = impl_->engine->stats();
  impl_->thread = std::thread([m = impl_.get()] {
    // Kernels launch on the thread's current device: make the engine's current on this thread.
    try {
      make_device_current(parse_device(m->engine->info().device));
    } catch (const std::exception& e) {
      m->die(e.what());
    }
    m->loop();
  });
}

AsyncEngine::~AsyncEngine() { shutdown(false); }

const EngineInfo& AsyncEngine::info() const { return impl_->engine->info(); }

int64_t AsyncEngine::add_request(const std::vector<int32_t>& prompt, const SamplingParams& params) {
  Impl* m = impl_.get();
  return m->call<int64_t>(
      [m, &prompt, &params] {
        const int64_t id = m->engine->add_request(prompt, params);
        m->register_request(id);
        return id;
      },
      true);
}

std::vector<int64_t> AsyncEngine::add_requests(const std::vector<std::vector<int32_t>>& prompts,
                                               const std::vector<SamplingParams>& params) {
  ELI_CHECK_ARG(prompts.size() == params.size(), prompts.size(), " prompts but ", params.size(), " sampling params");
  Impl* m = impl_.get();
  return m->call<std::vector<int64_t>>(
      [m, &prompts, &params] {
        std::vector<int64_t> ids;
        for (size_t i = 0; i < prompts.size(); ++i) {
          try {
            ids.push_back(m->engine->add_request(prompts[i], params[i]));
            m->register_request(ids.back());
          } catch (const Error& e) {
            for (int64_t id : ids) m->unregister_request(id);
            if (prompts.size() == 1) throw;
            throw Error(e.kind(), detail::concat("prompt ", i, ": ", e.what()));
          } catch (...) {
            for (int64_t id : ids) m->unregister_request(id);
            throw;
          }
        }
        return ids;
      },
      true);
}

void AsyncEngine::abort_request(int64_t request_id) {
  Impl* m = impl_.get();
  Command cmd;
  cmd.run = [m, request_id] { m->engine->abort_request(request_id); };
  m->push(std::move(cmd), false);
}

bool AsyncEngine::wait_outputs(std::vector<TokenOutput>* out, int timeout_ms) {
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lk(m.out_mu);
  auto pred = [&m] { return !m.ready.empty() || m.stopped; };
  if (timeout_ms < 0) {
    m.out_cv.wait(lk, pred);
  } else {
    m.out_cv.wait_for(lk, std::chrono::milliseconds(timeout_ms), pred);
  }
  const size_t before = out->size();
  for (int64_t id : m.ready) {
    auto it = m.reqs.find(id);
    if (it == m.reqs.end()) continue;
    m.queued -= static_cast<int64_t>(it->second.queue.size());
    for (TokenOutput& o : it->second.queue) out->push_back(std::move(o));
    it->second.queue.clear();
    if (it->second.ended) m.reqs.erase(it);
  }
  m.ready.clear();
  return out->size() > before || !m.stopped;
}

bool AsyncEngine::wait_request_outputs(const std::vector<int64_t>& request_ids, std::vector<TokenOutput>* out,
                                       int timeout_ms) {
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lk(m.out_mu);
  auto pred = [&m, &request_ids] {
    if (m.stopped) return true;
    bool any_known = false;
    for (int64_t id : request_ids) {
      if (m.ready.count(id)) return true;
      any_known = any_known || m.reqs.count(id) != 0;
    }
    return !any_known;
  };
  if (timeout_ms < 0) {
    m.out_cv.wait(lk, pred);
  } else {
    m.out_cv.wait_for(lk, std::chrono::milliseconds(timeout_ms), pred);
  }
  const size_t before = out->size();
  bool any_left = false;
  for (int64_t id : request_ids) {
    auto it = m.reqs.find(id);
    if (it == m.reqs.end()) continue;
    m.queued -= static_cast<int64_t>(it->second.queue.size());
    for (TokenOutput& o : it->second.queue) out->push_back(std::move(o));
    it->second.queue.clear();
    m.ready.erase(id);
    if (it->second.ended) {
      m.reqs.erase(it);
    } else {
      any_left = true;
    }
  }
  return out->size() > before || (any_left && !m.stopped);
}

std::vector<float> AsyncEngine::score(const std::vector<int32_t>& token_ids) {
  Impl* m = impl_.get();
  return m->call<std::vector<float>>([m, &token_ids] { return m->engine->score(token_ids); }, true);
}

EngineStats AsyncEngine::stats() const {
  std::lock_guard<std::mutex> lk(impl_->out_mu);
  return impl_->stats;
}

int64_t AsyncEngine::queued_outputs() const {
  std::lock_guard<std::mutex> lk(impl_->out_mu);
  return impl_->queued;
}

bool AsyncEngine::healthy() const {
  std::lock_guard<std::mutex> lk(impl_->out_mu);
  return !impl_->dead;
}

std::string AsyncEngine::error() const {
  std::lock_guard<std::mutex> lk(impl_->out_mu);
  return impl_->error;
}

int64_t AsyncEngine::steps() const { return impl_->steps.load(); }

std::chrono::steady_clock::time_point AsyncEngine::last_step_time() const {
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(impl_->last_step_ns.load()));
}

bool AsyncEngine::busy() const { return impl_->busy.load(); }

void AsyncEngine::shutdown(bool drain) {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lk(m.mu);
    m.accepting = false;
    if (!m.stop) m.drain = drain;
    if (!drain) m.drain = false;  // a later non-draining shutdown cuts a drain short
    m.stop = true;
  }
  m.cv.notify_one();
  std::lock_guard<std::mutex> lk(m.join_mu);
  if (m.thread.joinable()) m.thread.join();
}

void AsyncEngine::pause_after_steps(int64_t n) {
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->paused = n == 0;
    impl_->pause_after = n > 0 ? n : -1;
  }
  impl_->cv.notify_one();
}

void AsyncEngine::inject_step_fault(int64_t after_steps, const std::string& message) {
  std::lock_guard<std::mutex> lk(impl_->mu);
  impl_->fault_after = after_steps < 0 ? -1 : after_steps;
  impl_->fault_message = message;
}

}  // namespace eli
