// runtime/comm/cpu_communicator.cc: the in-process CPU Communicator (see cpu_communicator.h).
//
// Shared state (Group): one mutex and condition variable; a phase counter that a rendezvous
// advances when the last of the N ranks arrives; per rank the Slot it published for the current
// collective (kind, count, dtype, op, root, buffers) and the phase it waits for; mailboxes of
// point-to-point messages per (source, destination); the abort flag and its first reason.
//
// A collective is: publish the slot and rendezvous (phase A; the last arrival checks that every
// rank called the same thing); move the data, each rank reading the others' published buffers;
// rendezvous again (phase B) so that no rank returns, or reuses its buffers, while another still
// reads them. A rank writes its slot again only at its next phase A, after every rank has passed
// phase B, so the slots are stable while they are read.
//
// All-reduce splits the elements into N slices; rank r reduces slice r over ranks 0..N-1 in order
// (f32 accumulation) and writes the result into every rank's recv: each element is computed once,
// by one rank, in a fixed order. In place (send == recv) is safe: slices are disjoint and a chunk
// is read from every rank before it is written. Every wait ends by the deadline or on abort.
#include "runtime/comm/cpu_communicator.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <utility>

#include "runtime/core/float_convert.h"
#include "runtime/device/stream.h"

namespace eli {
namespace {

enum class CollKind : int { kAllReduce, kAllGather, kReduceScatter, kBroadcast, kBarrier };

const char* coll_name(CollKind k) {
  switch (k) {
    case CollKind::kAllReduce: return "all_reduce";
    case CollKind::kAllGather: return "all_gather";
    case CollKind::kReduceScatter: return "reduce_scatter";
    case CollKind::kBroadcast: return "broadcast";
    case CollKind::kBarrier: return "barrier";
  }
  return "?";
}

// What a rank published for its current collective.
struct Slot {
  CollKind kind = CollKind::kBarrier;
  uint64_t seq = 0;  // the rank's collective number (0, 1, ...)
  size_t count = 0;
  DType dtype = DType::kF32;
  ReduceOp op = ReduceOp::kSum;
  int root = 0;
  const void* send = nullptr;
  void* recv = nullptr;
};

std::string describe(const Slot& s) {
  std::string d = std::string(coll_name(s.kind)) + " #" + std::to_string(s.seq);
  if (s.kind == CollKind::kBarrier) return d;
  d += "(count " + std::to_string(s.count) + ", " + dtype_name(s.dtype);
  if (s.kind == CollKind::kAllReduce || s.kind == CollKind::kReduceScatter) d += std::string(", ") + reduce_op_name(s.op);
  if (s.kind == CollKind::kBroadcast) d += ", root " + std::to_string(s.root);
  return d + ")";
}

bool same_call(const Slot& a, const Slot& b) {
  if (a.kind != b.kind || a.seq != b.seq) return false;
  if (a.kind == CollKind::kBarrier) return true;
  if (a.count != b.count || a.dtype != b.dtype) return false;
  if ((a.kind == CollKind::kAllReduce || a.kind == CollKind::kReduceScatter) && a.op != b.op) return false;
  return a.kind != CollKind::kBroadcast || a.root == b.root;
}

struct Message {
  std::vector<uint8_t> bytes;
  size_t count = 0;
  DType dtype = DType::kF32;
};

// ---- element access for reductions (f32 accumulation) ----

constexpr size_t kChunk = 1024;  // elements reduced per pass over the ranks

void load_f32(const void* base, DType dt, size_t i0, size_t m, float* out) {
  if (dt == DType::kF32) {
    std::memcpy(out, static_cast<const float*>(base) + i0, m * sizeof(float));
    return;
  }
  const uint16_t* p = static_cast<const uint16_t*>(base) + i0;
  if (dt == DType::kBF16) {
    for (size_t i = 0; i < m; ++i) out[i] = bf16_to_f32(p[i]);
  } else {
    for (size_t i = 0; i < m; ++i) out[i] = f16_to_f32(p[i]);
  }
}

void add_f32(const void* base, DType dt, size_t i0, size_t m, float* acc) {
  float tmp[kChunk];
  load_f32(base, dt, i0, m, tmp);
  for (size_t i = 0; i < m; ++i) acc[i] += tmp[i];
}

void store_f32(void* base, DType dt, size_t i0, size_t m, const float* in) {
  if (dt == DType::kF32) {
    std::memcpy(static_cast<float*>(base) + i0, in, m * sizeof(float));
    return;
  }
  uint16_t* p = static_cast<uint16_t*>(base) + i0;
  if (dt == DType::kBF16) {
    for (size_t i = 0; i < m; ++i) p[i] = f32_to_bf16(in[i]);
  } else {
    for (size_t i = 0; i < m; ++i) p[i] = f32_to_f16(in[i]);
  }
}

bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const uintptr_t x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return a_bytes != 0 && b_bytes != 0 && x < y + b_bytes && y < x + a_bytes;
}

// ---- the shared state of one group ----

class Group {
 public:
  Group(int n, const CpuCommOptions& options)
      : n_(n), options_(options), slots_(n), waits_for_(n, 0), mail_(static_cast<size_t>(n) * n) {}

  int size() const { return n_; }

  // Publishes `slot` (if given) and waits until all ranks arrived; with `check`, the last arrival
  // verifies that every rank published the same call.
  void rendezvous(int rank, const Slot* slot, bool check, const char* what) {
    std::unique_lock<std::mutex> lk(mu_);
    throw_if_aborted_locked();
    if (slot != nullptr) slots_[rank] = *slot;
    const uint64_t target = phase_ + 1;
    waits_for_[rank] = target;
    if (++arrived_ == n_) {
      arrived_ = 0;
      if (check) check_slots_locked();
      phase_ = target;
      cv_.notify_all();
      throw_if_aborted_locked();
      return;
    }
    wait_locked(lk, rank, what, [&] { return phase_ >= target; }, [&] {
      std::string missing;
      for (int q = 0; q < n_; ++q) {
        if (waits_for_[q] != target) missing += (missing.empty() ? "" : ", ") + std::to_string(q);
      }
      return "rank(s) " + missing;
    });
  }

  // The slots of the current collective (stable between its two rendezvous).
  const Slot& slot(int rank) const { return slots_[rank]; }

  void post(int src, int dst, Message m) {
    std::lock_guard<std::mutex> lk(mu_);
    throw_if_aborted_locked();
    mail_[static_cast<size_t>(src) * n_ + dst].push_back(std::move(m));
    cv_.notify_all();
  }

  Message take(int src, int dst, const char* what) {
    std::unique_lock<std::mutex> lk(mu_);
    std::deque<Message>& box = mail_[static_cast<size_t>(src) * n_ + dst];
    wait_locked(lk, dst, what, [&] { return !box.empty(); }, [&] { return "a message from rank " + std::to_string(src); });
    Message m = std::move(box.front());
    box.pop_front();
    return m;
  }

  void abort(ErrorKind kind, const std::string& reason) noexcept {
    try {
      std::lock_guard<std::mutex> lk(mu_);
      abort_locked(kind, reason);
    } catch (...) {
      // Locking failed (cannot happen in practice): the peers' deadlines still end their waits.
    }
  }

  std::string abort_reason() const {
    std::lock_guard<std::mutex> lk(mu_);
    return reason_;
  }

 private:
  void abort_locked(ErrorKind kind, const std::string& reason) {
    if (!aborted_) {
      aborted_ = true;
      kind_ = kind;
      reason_ = reason.empty() ? "aborted" : reason;
    }
    cv_.notify_all();
  }

  void throw_if_aborted_locked() const {
    if (aborted_) throw CommAbortedError(kind_, "communicator aborted: " + reason_);
  }

  // Waits (lock held) until done() or an abort, at most the timeout; a timeout aborts the group
  // and throws kDevice naming what the rank waited for.
  template <typename Done, typename Missing>
  void wait_locked(std::unique_lock<std::mutex>& lk, int rank, const char* what, Done done, Missing missing) {
    const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    while (!done() && !aborted_) {
      if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && !done() && !aborted_) {
        const std::string msg = "rank " + std::to_string(rank) + " timed out after " +
                                std::to_string(options_.timeout.count()) + " ms in " + what + ", waiting for " +
                                missing();
        abort_locked(ErrorKind::kDevice, msg);
        throw Error(ErrorKind::kDevice, msg);
      }
    }
    throw_if_aborted_locked();
  }

  void check_slots_locked() {
    for (int q = 1; q < n_; ++q) {
      if (!same_call(slots_[0], slots_[q])) {
        const std::string msg = "collective mismatch: rank 0 called " + describe(slots_[0]) + ", rank " +
                                std::to_string(q) + " called " + describe(slots_[q]);
        abort_locked(ErrorKind::kInternal, msg);
        return;
      }
    }
  }

  const int n_;
  const CpuCommOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t phase_ = 0;  // rendezvous completed so far
  int arrived_ = 0;     // ranks arrived at the current rendezvous
  std::vector<Slot> slots_;
  std::vector<uint64_t> waits_for_;     // per rank: the phase it last arrived for
  std::vector<std::deque<Message>> mail_;  // [src * n + dst]
  bool aborted_ = false;
  ErrorKind kind_ = ErrorKind::kDevice;
  std::string reason_;
};

// ---- one rank ----

class CpuCommunicator final : public Communicator {
 public:
  CpuCommunicator(std::shared_ptr<Group> group, int rank) : g_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int world_size() const override { return g_->size(); }
  DeviceId device() const override { return DeviceId{DeviceKind::kCPU, 0}; }

  void all_reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op, const Stream& stream) override {
    guarded([&] { check_stream(stream); });
    issue(false, [=] { collective(Slot{CollKind::kAllReduce, 0, count, dtype, op, 0, send, recv}); });
  }
  void all_gather(const void* send, void* recv, size_t count, DType dtype, const Stream& stream) override {
    guarded([&] { check_stream(stream); });
    issue(false, [=] { collective(Slot{CollKind::kAllGather, 0, count, dtype, ReduceOp::kSum, 0, send, recv}); });
  }
  void reduce_scatter(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                      const Stream& stream) override {
    guarded([&] { check_stream(stream); });
    issue(false, [=] { collective(Slot{CollKind::kReduceScatter, 0, count, dtype, op, 0, send, recv}); });
  }
  void broadcast(const void* send, void* recv, size_t count, DType dtype, int root, const Stream& stream) override {
    guarded([&] { check_stream(stream); });
    issue(false, [=] { collective(Slot{CollKind::kBroadcast, 0, count, dtype, ReduceOp::kSum, root, send, recv}); });
  }
  void barrier(const Stream& stream) override {
    guarded([&] { check_stream(stream); });
    issue(false, [=] { collective(Slot{}); });
  }
  void send(const void* buf, size_t count, DType dtype, int peer, const Stream& stream) override {
    guarded([&] { check_stream(stream); });
    issue(true, [=] { send_now(buf, count, dtype, peer); });
  }
  void recv(void* buf, size_t count, DType dtype, int peer, const Stream& stream) override {
    guarded([&] { check_stream(stream); });
    issue(false, [=] { recv_now(buf, count, dtype, peer); });
  }

  void group_start() override { ++depth_; }
  void group_end() override {
    ELI_CHECK(depth_ > 0, "group_end without group_start");
    if (--depth_ > 0) return;
    std::vector<std::function<void()>> sends, ops;
    sends.swap(sends_);
    ops.swap(ops_);
    for (auto& f : sends) guarded(f);  // first: a peer's recv in its group may wait for them
    for (auto& f : ops) guarded(f);
  }

  void abort(const std::string& reason) noexcept override { g_->abort(ErrorKind::kDevice, reason); }
  std::string abort_reason() const override { return g_->abort_reason(); }

 private:
  void check_stream(const Stream& stream) const {
    ELI_CHECK(stream.device().kind == DeviceKind::kCPU, "the cpu communicator takes cpu streams, not a stream of ",
              device_name(stream.device()));
  }

  // Runs `f` now, or at the outermost group_end() inside a group (sends before the rest).
  void issue(bool is_send, std::function<void()> f) {
    if (depth_ > 0) {
      (is_send ? sends_ : ops_).push_back(std::move(f));
      return;
    }
    guarded(f);
  }

  // Any failure of this rank inside a call fails the group, so that no peer waits for it.
  void guarded(const std::function<void()>& f) {
    run_failing_group(rank_, f, [this](ErrorKind kind, const std::string& reason) { g_->abort(kind, reason); });
  }

  void check_args(const Slot& s) const {
    const int n = g_->size();
    const bool reduces = s.kind == CollKind::kAllReduce || s.kind == CollKind::kReduceScatter;
    if (reduces) {
      ELI_CHECK_KIND(kUnsupported, s.dtype == DType::kF32 || s.dtype == DType::kBF16 || s.dtype == DType::kF16,
                     coll_name(s.kind), " of ", dtype_name(s.dtype), " (reductions take f32, bf16 or f16)");
    }
    const size_t bytes = comm_bytes(s.count, s.dtype);
    if (s.kind == CollKind::kBroadcast) {
      ELI_CHECK(s.root >= 0 && s.root < n, "broadcast root ", s.root, " is not a rank of ", n);
      ELI_CHECK(bytes == 0 || (s.recv != nullptr && (rank_ != s.root || s.send != nullptr)),
                "broadcast of ", s.count, " elements with a null buffer");
      return;
    }
    if (s.kind == CollKind::kBarrier || bytes == 0) return;
    ELI_CHECK(s.send != nullptr && s.recv != nullptr, coll_name(s.kind), " of ", s.count, " elements with a null buffer");
    // NCCL's in-place forms; otherwise send and recv must not overlap.
    const size_t big = bytes * static_cast<size_t>(n);
    ELI_CHECK(big / static_cast<size_t>(n) == bytes, coll_name(s.kind), " of ", s.count, " elements overflows");
    const uint8_t* send = static_cast<const uint8_t*>(s.send);
    const uint8_t* recv = static_cast<const uint8_t*>(s.recv);
    switch (s.kind) {
      case CollKind::kAllReduce:
        ELI_CHECK(send == recv || !overlaps(send, bytes, recv, bytes), "all_reduce buffers partly overlap");
        break;
      case CollKind::kAllGather:
        ELI_CHECK(send == recv + bytes * rank_ || !overlaps(send, bytes, recv, big),
                  "all_gather: send overlaps recv other than at this rank's place");
        break;
      case CollKind::kReduceScatter:
        ELI_CHECK(recv == send + bytes * rank_ || !overlaps(send, big, recv, bytes),
                  "reduce_scatter: recv overlaps send other than at this rank's place");
        break;
      default: break;
    }
  }

  void collective(Slot s) {
    check_args(s);
    s.seq = seq_++;
    const std::string what = describe(s);
    g_->rendezvous(rank_, &s, true, what.c_str());  // phase A: every rank's buffers are published
    move_data(s);
    g_->rendezvous(rank_, nullptr, false, what.c_str());  // phase B: nobody reads them any more
  }

  void move_data(const Slot& s) {
    const int n = g_->size();
    if (s.kind == CollKind::kBarrier || s.count == 0) return;
    const size_t bytes = comm_bytes(s.count, s.dtype);
    switch (s.kind) {
      case CollKind::kAllReduce: {
        const size_t lo = s.count * rank_ / n, hi = s.count * (rank_ + 1) / n;
        reduce_into(lo, hi, 0, [&](int q) { return g_->slot(q).recv; });
        break;
      }
      case CollKind::kReduceScatter:
        reduce_into(0, s.count, s.count * rank_, [&](int q) { return q == rank_ ? s.recv : nullptr; });
        break;
      case CollKind::kAllGather:
        for (int q = 0; q < n; ++q) {
          uint8_t* dst = static_cast<uint8_t*>(s.recv) + bytes * q;
          const void* src = g_->slot(q).send;
          if (dst != src) std::memcpy(dst, src, bytes);
        }
        break;
      case CollKind::kBroadcast: {
        const void* src = g_->slot(s.root).send;
        if (s.recv != src) std::memcpy(s.recv, src, bytes);
        break;
      }
      case CollKind::kBarrier: break;
    }
  }

  // Reduces elements [lo, hi) + src_offset of every rank's send, in rank order, into elements
  // [lo, hi) of dst(q) for every rank q with a non-null dst(q).
  template <typename Dst>
  void reduce_into(size_t lo, size_t hi, size_t src_offset, Dst dst) {
    const int n = g_->size();
    const DType dt = g_->slot(rank_).dtype;
    float acc[kChunk];
    for (size_t i0 = lo; i0 < hi; i0 += kChunk) {
      const size_t m = std::min(kChunk, hi - i0);
      load_f32(g_->slot(0).send, dt, src_offset + i0, m, acc);
      for (int q = 1; q < n; ++q) add_f32(g_->slot(q).send, dt, src_offset + i0, m, acc);
      for (int q = 0; q < n; ++q) {
        if (void* d = dst(q)) store_f32(d, dt, i0, m, acc);
      }
    }
  }

  void send_now(const void* buf, size_t count, DType dtype, int peer) {
    check_peer(peer, "send to");
    const size_t bytes = comm_bytes(count, dtype);
    ELI_CHECK(bytes == 0 || buf != nullptr, "send of ", count, " elements from null");
    Message m;
    m.bytes.assign(static_cast<const uint8_t*>(buf), static_cast<const uint8_t*>(buf) + bytes);
    m.count = count;
    m.dtype = dtype;
    g_->post(rank_, peer, std::move(m));
  }

  void recv_now(void* buf, size_t count, DType dtype, int peer) {
    check_peer(peer, "recv from");
    const size_t bytes = comm_bytes(count, dtype);
    ELI_CHECK(bytes == 0 || buf != nullptr, "recv of ", count, " elements into null");
    const std::string what = "recv from rank " + std::to_string(peer);
    Message m = g_->take(peer, rank_, what.c_str());
    ELI_CHECK_KIND(kInternal, m.count == count && m.dtype == dtype, "rank ", rank_, " expected ", count, " ",
                   dtype_name(dtype), " from rank ", peer, ", which sent ", m.count, " ", dtype_name(m.dtype));
    if (bytes != 0) std::memcpy(buf, m.bytes.data(), bytes);
  }

  void check_peer(int peer, const char* what) const {
    ELI_CHECK(peer >= 0 && peer < g_->size() && peer != rank_, "rank ", rank_, " cannot ", what, " rank ", peer,
              " (world size ", g_->size(), ")");
  }

  std::shared_ptr<Group> g_;
  int rank_;
  uint64_t seq_ = 0;   // collectives entered
  int depth_ = 0;      // group_start nesting
  std::vector<std::function<void()>> sends_, ops_;  // deferred inside a group
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> create_cpu_communicators(int n_ranks, const CpuCommOptions& options) {
  ELI_CHECK_ARG(n_ranks >= 1 && n_ranks <= 4096, "a communicator needs 1 to 4096 ranks, not ", n_ranks);
  ELI_CHECK_ARG(options.timeout.count() > 0, "the communicator timeout must be positive");
  auto group = std::make_shared<Group>(n_ranks, options);
  std::vector<std::unique_ptr<Communicator>> comms;
  comms.reserve(n_ranks);
  for (int r = 0; r < n_ranks; ++r) comms.push_back(std::make_unique<CpuCommunicator>(group, r));
  return comms;
}

}  // namespace eli
