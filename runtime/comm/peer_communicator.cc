// runtime/comm/peer_communicator.cc: see peer_communicator.h. The planning helpers are compiled in
// every build; the communicator only where CUDA is on (ELI_WITH_CUDA), else kNotCompiled.
//
// Shared host state (Group): every rank's device memory, the mapped words (abort + errors), a log
// of the collectives each rank issued (the k-th call of every rank is compared with the first
// one seen for k; an entry is dropped once every rank posted it), the descriptors of the sends
// issued per (source, destination) pair (a recv takes and checks the oldest), and the abort state.
#include "runtime/comm/peer_communicator.h"

#include <algorithm>

#include "eli/error.h"

namespace eli {

std::vector<PeerChunk> peer_chunks(size_t total, size_t max_per_chunk) {
  ELI_CHECK(max_per_chunk > 0, "peer_chunks: a chunk of zero elements");
  std::vector<PeerChunk> out;
  for (size_t off = 0; off < total; off += max_per_chunk) out.push_back({off, std::min(max_per_chunk, total - off)});
  return out;
}

std::vector<std::pair<size_t, size_t>> peer_p2p_order(const std::vector<size_t>& n_chunks,
                                                      const std::vector<bool>& is_send) {
  ELI_CHECK(n_chunks.size() == is_send.size(), "peer_p2p_order: ", n_chunks.size(), " ops, ", is_send.size(), " kinds");
  size_t most = 0;
  for (size_t n : n_chunks) most = std::max(most, n);
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t c = 0; c < most; ++c) {
    for (bool sends : {true, false}) {
      for (size_t i = 0; i < n_chunks.size(); ++i) {
        if (is_send[i] == sends && c < n_chunks[i]) out.emplace_back(i, c);
      }
    }
  }
  return out;
}

}  // namespace eli

#if defined(ELI_WITH_CUDA) && ELI_WITH_CUDA
#include <cuda_runtime.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "kernels/cuda/peer_all_reduce.h"
#include "kernels/cuda/peer_signal.h"
#include "runtime/device/device.h"
#include "runtime/device/stream.h"

namespace eli {
namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    ELI_THROW(kDevice, what, " failed: ", cudaGetErrorString(e));
  }
}

enum class Op : int { kAllReduce, kAllGather, kReduceScatter, kBroadcast, kBarrier, kSend, kRecv };

const char* op_name(Op k) {
  switch (k) {
    case Op::kAllReduce: return "all_reduce";
    case Op::kAllGather: return "all_gather";
    case Op::kReduceScatter: return "reduce_scatter";
    case Op::kBroadcast: return "broadcast";
    case Op::kBarrier: return "barrier";
    case Op::kSend: return "send";
    case Op::kRecv: return "recv";
  }
  return "?";
}

// A device wait's error code names the op it waited in (0: none).
int error_code(Op k) { return 1 + static_cast<int>(k); }

struct Desc {
  Op kind = Op::kBarrier;
  uint64_t seq = 0;
  size_t count = 0;
  DType dtype = DType::kF32;
  int root = 0;
};

std::string describe(const Desc& d) {
  std::string s = std::string(op_name(d.kind)) + " #" + std::to_string(d.seq);
  if (d.kind == Op::kBarrier) return s;
  s += "(count " + std::to_string(d.count) + ", " + dtype_name(d.dtype);
  if (d.kind == Op::kAllReduce || d.kind == Op::kReduceScatter) s += ", sum";
  if (d.kind == Op::kBroadcast) s += ", root " + std::to_string(d.root);
  return s + ")";
}

bool same_call(const Desc& a, const Desc& b) {
  if (a.kind != b.kind) return false;
  if (a.kind == Op::kBarrier) return true;
  return a.count == b.count && a.dtype == b.dtype && (a.kind != Op::kBroadcast || a.root == b.root);
}

bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const uintptr_t x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return a_bytes != 0 && b_bytes != 0 && x < y + b_bytes && y < x + a_bytes;
}

struct RankMem {
  int device = 0;
  uint8_t* staging = nullptr;
  uint8_t* scratch = nullptr;
  uint8_t* mailbox = nullptr;       // n * mailbox_bytes: the slot for destination d at d * mailbox_bytes
  uint32_t* ar_signals = nullptr;   // peer_all_reduce's
  PeerSignals* signals = nullptr;   // peer_signal's
  int64_t timeout_cycles = 0;       // the timeout in this device's clock cycles
};

class Group {
 public:
  Group(const std::vector<DeviceId>& devices, const PeerCommOptions& options)
      : n_(static_cast<int>(devices.size())), options_(options), mail_(devices.size() * devices.size()) {
    try {
      allocate(devices);
    } catch (...) {
      release();
      throw;
    }
  }
  ~Group() { release(); }

  int size() const { return n_; }
  const PeerCommOptions& options() const { return options_; }
  const RankMem& mem(int r) const { return ranks_[r]; }
  volatile int* abort_word() const { return words_; }
  volatile int* error_word(int r) const { return words_ + 1 + r; }

  // Throws when the group failed (see the header): the rank's own device timeout as eli::Error,
  // anything else as CommAbortedError.
  void live(int rank) {
    std::lock_guard<std::mutex> lk(mu_);
    if (aborted_) throw CommAbortedError(kind_, "communicator aborted: " + reason_);
    if (words_[0] == 0) return;
    const int mine = words_[1 + rank];
    if (mine != 0) {
      const std::string msg = timeout_message(rank, mine);
      abort_locked(ErrorKind::kDevice, msg);
      throw Error(ErrorKind::kDevice, msg);
    }
    std::string msg = "a device wait was abandoned";
    for (int q = 0; q < n_; ++q) {
      if (words_[1 + q] != 0) {
        msg = timeout_message(q, words_[1 + q]);
        break;
      }
    }
    abort_locked(ErrorKind::kDevice, msg);
    throw CommAbortedError(kind_, "communicator aborted: " + reason_);
  }

  // Compares rank `rank`'s call with the others' call of the same number (no waiting).
  void post_collective(int rank, const Desc& d) {
    std::lock_guard<std::mutex> lk(mu_);
    Pending& p = log_[d.seq];
    if (p.descs.empty()) p.descs.resize(n_);
    for (int q = 0; q < n_; ++q) {
      if (!p.has(q)) continue;
      if (!same_call(p.descs[q], d)) {
        const std::string msg = "collective mismatch: rank " + std::to_string(q) + " called " +
                                describe(p.descs[q]) + ", rank " + std::to_string(rank) + " called " + describe(d);
        abort_locked(ErrorKind::kInternal, msg);
        throw CommAbortedError(ErrorKind::kInternal, "communicator aborted: " + reason_);
      }
      break;  // the ones posted agree with each other
    }
    p.descs[rank] = d;
    p.mask.push_back(rank);
    if (static_cast<int>(p.mask.size()) == n_) log_.erase(d.seq);
  }

  void post_send(int src, int dst, const Desc& d) {
    std::lock_guard<std::mutex> lk(mu_);
    mail_[static_cast<size_t>(src) * n_ + dst].push_back(d);
    cv_.notify_all();
  }

  // The descriptor of the oldest send from src to dst, waiting for it (bounded, ends on abort).
  Desc take_send(int src, int dst) {
    std::unique_lock<std::mutex> lk(mu_);
    std::deque<Desc>& box = mail_[static_cast<size_t>(src) * n_ + dst];
    const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    while (box.empty() && !aborted_) {
      if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && box.empty() && !aborted_) {
        const std::string msg = "rank " + std::to_string(dst) + " timed out after " +
                                std::to_string(options_.timeout.count()) + " ms in recv from rank " +
                                std::to_string(src) + ", waiting for a message from rank " + std::to_string(src);
        abort_locked(ErrorKind::kDevice, msg);
        throw Error(ErrorKind::kDevice, msg);
      }
    }
    if (aborted_) throw CommAbortedError(kind_, "communicator aborted: " + reason_);
    Desc d = box.front();
    box.pop_front();
    return d;
  }

  void abort(ErrorKind kind, const std::string& reason) noexcept {
    try {
      std::lock_guard<std::mutex> lk(mu_);
      abort_locked(kind, reason);
    } catch (...) {
      if (words_ != nullptr) words_[0] = 1;
    }
  }

  std::string abort_reason() const {
    std::lock_guard<std::mutex> lk(mu_);
    return reason_;
  }

 private:
  struct Pending {
    std::vector<Desc> descs;
    std::vector<int> mask;  // ranks that posted
    bool has(int q) const { return std::find(mask.begin(), mask.end(), q) != mask.end(); }
  };

  std::string timeout_message(int rank, int code) const {
    const int k = code - 1;
    const char* op = k >= 0 && k <= static_cast<int>(Op::kRecv) ? op_name(static_cast<Op>(k)) : "a call";
    return "rank " + std::to_string(rank) + " timed out after " + std::to_string(options_.timeout.count()) +
           " ms on the device in " + op + ", waiting for its peers";
  }

  void abort_locked(ErrorKind kind, const std::string& reason) {
    if (!aborted_) {
      aborted_ = true;
      kind_ = kind;
      reason_ = reason.empty() ? "aborted" : reason;
    }
    if (words_ != nullptr) words_[0] = 1;  // the device waits end
    cv_.notify_all();
  }

  void allocate(const std::vector<DeviceId>& devices) {
    const size_t n = devices.size();
    void* words = nullptr;
    check_cuda(cudaHostAlloc(&words, sizeof(int) * (1 + n), cudaHostAllocMapped | cudaHostAllocPortable),
               "cudaHostAlloc (peer communicator flags)");
    words_ = static_cast<volatile int*>(words);
    for (size_t i = 0; i <= n; ++i) words_[i] = 0;
    ranks_.resize(n);
    for (size_t r = 0; r < n; ++r) {
      RankMem& m = ranks_[r];
      m.device = devices[r].index;
      DeviceScope scope(DeviceId{DeviceKind::kCUDA, m.device});
      check_cuda(cudaMalloc(reinterpret_cast<void**>(&m.staging), options_.staging_bytes), "cudaMalloc (staging)");
      check_cuda(cudaMalloc(reinterpret_cast<void**>(&m.scratch), options_.staging_bytes), "cudaMalloc (scratch)");
      check_cuda(cudaMalloc(reinterpret_cast<void**>(&m.mailbox), options_.mailbox_bytes * n), "cudaMalloc (mailbox)");
      check_cuda(cudaMalloc(reinterpret_cast<void**>(&m.ar_signals), kPeerSignalBytes), "cudaMalloc (signals)");
      check_cuda(cudaMalloc(reinterpret_cast<void**>(&m.signals), sizeof(PeerSignals)), "cudaMalloc (signals)");
      check_cuda(cudaMemset(m.ar_signals, 0, kPeerSignalBytes), "cudaMemset (signals)");
      check_cuda(cudaMemset(m.signals, 0, sizeof(PeerSignals)), "cudaMemset (signals)");
      int khz = 0;
      check_cuda(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, m.device), "cudaDeviceGetAttribute");
      m.timeout_cycles = static_cast<int64_t>(std::max(khz, 1)) * options_.timeout.count();
      check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    }
  }

  void release() noexcept {
    if (words_ != nullptr) words_[0] = 1;  // work still in flight ends (see the header)
    int prev = 0;
    const bool restore = cudaGetDevice(&prev) == cudaSuccess;
    for (RankMem& m : ranks_) {
      if (cudaSetDevice(m.device) != cudaSuccess) continue;
      (void)cudaDeviceSynchronize();
      for (void* p : {static_cast<void*>(m.staging), static_cast<void*>(m.scratch), static_cast<void*>(m.mailbox),
                      static_cast<void*>(m.ar_signals), static_cast<void*>(m.signals)}) {
        if (p != nullptr) (void)cudaFree(p);
      }
    }
    ranks_.clear();
    if (restore) (void)cudaSetDevice(prev);
    if (words_ != nullptr) (void)cudaFreeHost(const_cast<int*>(words_));
    words_ = nullptr;
    (void)cudaGetLastError();
  }

  const int n_;
  const PeerCommOptions options_;
  std::vector<RankMem> ranks_;
  volatile int* words_ = nullptr;  // [0] abort, [1 + r] rank r's error (mapped host memory)
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Pending> log_;
  std::vector<std::deque<Desc>> mail_;  // [src * n + dst]
  bool aborted_ = false;
  ErrorKind kind_ = ErrorKind::kDevice;
  std::string reason_;
};

// ---- one rank ----

class PeerCommunicator final : public Communicator {
 public:
  PeerCommunicator(std::shared_ptr<Group> group, int rank, DeviceId device)
      : g_(std::move(group)), rank_(rank), device_(device) {}

  int rank() const override { return rank_; }
  int world_size() const override { return g_->size(); }
  DeviceId device() const override { return device_; }

  void all_reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op, const Stream& stream) override {
    collective({Op::kAllReduce, 0, count, dtype, 0}, stream, [=](cudaStream_t s) { all_reduce_now(send, recv, count, dtype, s); },
               [&] { check_buffers(Op::kAllReduce, send, recv, count, dtype); });
  }
  void all_gather(const void* send, void* recv, size_t count, DType dtype, const Stream& stream) override {
    collective({Op::kAllGather, 0, count, dtype, 0}, stream, [=](cudaStream_t s) { all_gather_now(send, recv, count, dtype, s); },
               [&] { check_buffers(Op::kAllGather, send, recv, count, dtype); });
  }
  void reduce_scatter(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                      const Stream& stream) override {
    collective({Op::kReduceScatter, 0, count, dtype, 0}, stream,
               [=](cudaStream_t s) { reduce_scatter_now(send, recv, count, dtype, s); },
               [&] { check_buffers(Op::kReduceScatter, send, recv, count, dtype); });
  }
  void broadcast(const void* send, void* recv, size_t count, DType dtype, int root, const Stream& stream) override {
    collective({Op::kBroadcast, 0, count, dtype, root}, stream,
               [=](cudaStream_t s) { broadcast_now(send, recv, count, dtype, root, s); }, [&] {
                 ELI_CHECK(root >= 0 && root < g_->size(), "broadcast root ", root, " is not a rank of ", g_->size());
                 const size_t bytes = comm_bytes(count, dtype);
                 ELI_CHECK(bytes == 0 || (recv != nullptr && (rank_ != root || send != nullptr)), "broadcast of ",
                           count, " elements with a null buffer");
               });
  }
  void barrier(const Stream& stream) override {
    collective({Op::kBarrier, 0, 0, DType::kF32, 0}, stream, [=](cudaStream_t s) { peer_barrier(signal_args(Op::kBarrier), s); },
               [] {});
  }
  void send(const void* buf, size_t count, DType dtype, int peer, const Stream& stream) override {
    p2p(true, const_cast<void*>(buf), count, dtype, peer, stream);
  }
  void recv(void* buf, size_t count, DType dtype, int peer, const Stream& stream) override {
    p2p(false, buf, count, dtype, peer, stream);
  }

  void group_start() override { ++depth_; }
  void group_end() override {
    guarded([&] { ELI_CHECK(depth_ > 0, "group_end without group_start"); });
    if (--depth_ > 0) return;
    std::vector<std::function<void()>> ops;
    std::vector<P2p> p2ps;
    ops.swap(ops_);
    p2ps.swap(p2ps_);
    for (auto& f : ops) guarded(f);
    guarded([&] { issue_p2p(p2ps); });
  }

  void abort(const std::string& reason) noexcept override { g_->abort(ErrorKind::kDevice, reason); }
  std::string abort_reason() const override { return g_->abort_reason(); }

  void check() const { g_->live(rank_); }

 private:
  struct P2p {
    bool is_send = false;
    uint8_t* buf = nullptr;
    size_t bytes = 0;
    Desc desc;
    int peer = 0;
    cudaStream_t stream = nullptr;
  };

  // Any failure of this rank inside a call fails the group, so that no peer waits for it.
  void guarded(const std::function<void()>& f) {
    run_failing_group(rank_, f, [this](ErrorKind kind, const std::string& reason) { g_->abort(kind, reason); });
  }

  cudaStream_t checked_stream(const Stream& stream) const {
    ELI_CHECK(stream.device() == device_, "the peer communicator of rank ", rank_, " takes streams of ",
              device_name(device_), ", not of ", device_name(stream.device()));
    return static_cast<cudaStream_t>(stream.native());
  }

  // Checks, compares with the peers and enqueues a collective (at the outermost group_end inside a group).
  template <typename Run, typename Check>
  void collective(Desc d, const Stream& stream, Run run, Check check_args) {
    cudaStream_t s = nullptr;
    guarded([&] {
      g_->live(rank_);
      s = checked_stream(stream);
      if (d.kind == Op::kAllReduce || d.kind == Op::kReduceScatter) {
        ELI_CHECK_KIND(kUnsupported, d.dtype == DType::kF32 || d.dtype == DType::kBF16 || d.dtype == DType::kF16,
                       op_name(d.kind), " of ", dtype_name(d.dtype), " (reductions take f32, bf16 or f16)");
      }
      check_args();
    });
    auto issue = [this, d, s, run]() mutable {
      g_->live(rank_);
      d.seq = seq_++;
      g_->post_collective(rank_, d);
      DeviceScope scope(device_);
      run(s);
    };
    if (depth_ > 0) {
      ops_.push_back(issue);
      return;
    }
    guarded(issue);
  }

  void check_buffers(Op kind, const void* send, const void* recv, size_t count, DType dtype) const {
    const size_t bytes = comm_bytes(count, dtype);
    if (bytes == 0) return;
    const int n = g_->size();
    ELI_CHECK(send != nullptr && recv != nullptr, op_name(kind), " of ", count, " elements with a null buffer");
    const size_t big = bytes * static_cast<size_t>(n);
    ELI_CHECK(big / static_cast<size_t>(n) == bytes, op_name(kind), " of ", count, " elements overflows");
    const uint8_t* s = static_cast<const uint8_t*>(send);
    const uint8_t* r = static_cast<const uint8_t*>(recv);
    switch (kind) {
      case Op::kAllReduce:
        ELI_CHECK(s == r || !overlaps(s, bytes, r, bytes), "all_reduce buffers partly overlap");
        break;
      case Op::kAllGather:
        ELI_CHECK(s == r + bytes * rank_ || !overlaps(s, bytes, r, big),
                  "all_gather: send overlaps recv other than at this rank's place");
        break;
      case Op::kReduceScatter:
        ELI_CHECK(r == s + bytes * rank_ || !overlaps(s, big, r, bytes),
                  "reduce_scatter: recv overlaps send other than at this rank's place");
        break;
      default: break;
    }
  }

  PeerSignalArgs signal_args(Op op) const {
    PeerSignalArgs a;
    for (int p = 0; p < g_->size(); ++p) a.signals[p] = g_->mem(p).signals;
    a.n_ranks = g_->size();
    a.rank = rank_;
    a.abort_word = g_->abort_word();
    a.error_word = g_->error_word(rank_);
    a.error_code = error_code(op);
    a.timeout_ns = static_cast<int64_t>(g_->options().timeout.count()) * 1000000;
    return a;
  }

  static void copy(void* dst, const void* src, size_t bytes, cudaStream_t s) {
    if (bytes == 0 || dst == src) return;
    check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s), "cudaMemcpyAsync");
  }

  const RankMem& me() const { return g_->mem(rank_); }

  void all_reduce_now(const void* send, void* recv, size_t count, DType dtype, cudaStream_t s) {
    const int n = g_->size();
    const size_t esz = dtype_info(dtype).block_bytes;
    if (n == 1) {
      copy(recv, send, count * esz, s);
      return;
    }
    for (const PeerChunk& c : peer_chunks(count, g_->options().staging_bytes / esz)) {
      copy(me().staging, static_cast<const uint8_t*>(send) + c.offset * esz, c.count * esz, s);
      PeerAllReduceArgs a;
      for (int p = 0; p < n; ++p) {
        a.inputs[p] = g_->mem(p).staging;
        a.scratch[p] = g_->mem(p).scratch;
        a.signals[p] = g_->mem(p).ar_signals;
      }
      a.out = static_cast<uint8_t*>(recv) + c.offset * esz;
      a.count = static_cast<int64_t>(c.count);
      a.dtype = dtype;
      a.n_ranks = n;
      a.rank = rank_;
      bool two_shot = true;
      if (!peer_all_reduce_fits(c.count * esz, n, &two_shot)) two_shot = true;
      a.two_shot = two_shot;
      a.error = const_cast<int*>(g_->error_word(rank_));  // mapped host memory; the code says all_reduce
      a.timeout_cycles = me().timeout_cycles;
      a.abort_word = g_->abort_word();
      peer_all_reduce(a, s);
    }
  }

  void reduce_scatter_now(const void* send, void* recv, size_t count, DType dtype, cudaStream_t s) {
    const int n = g_->size();
    const size_t esz = dtype_info(dtype).block_bytes;
    const uint8_t* src = static_cast<const uint8_t*>(send);
    if (n == 1) {
      copy(recv, send, count * esz, s);
      return;
    }
    const PeerSignalArgs sig = signal_args(Op::kReduceScatter);
    for (const PeerChunk& c : peer_chunks(count, g_->options().staging_bytes / (esz * n))) {
      for (int q = 0; q < n; ++q) {
        copy(me().staging + q * c.count * esz, src + (q * count + c.offset) * esz, c.count * esz, s);
      }
      peer_barrier(sig, s);  // every rank's slices are staged
      const void* inputs[kMaxPeers] = {};
      for (int p = 0; p < n; ++p) inputs[p] = g_->mem(p).staging + rank_ * c.count * esz;
      peer_reduce(inputs, n, static_cast<uint8_t*>(recv) + c.offset * esz, c.count, dtype, g_->abort_word(), s);
      peer_barrier(sig, s);  // nobody reads the staging any more
    }
  }

  void all_gather_now(const void* send, void* recv, size_t count, DType dtype, cudaStream_t s) {
    const int n = g_->size();
    const size_t bytes = comm_bytes(count, dtype);
    const uint8_t* src = static_cast<const uint8_t*>(send);
    uint8_t* dst = static_cast<uint8_t*>(recv);
    if (n == 1) {
      copy(dst, src, bytes, s);
      return;
    }
    const PeerSignalArgs sig = signal_args(Op::kAllGather);
    for (const PeerChunk& c : peer_chunks(bytes, g_->options().staging_bytes)) {
      copy(me().staging, src + c.offset, c.count, s);
      peer_barrier(sig, s);
      for (int q = 0; q < n; ++q) {
        copy(dst + q * bytes + c.offset, q == rank_ ? src + c.offset : g_->mem(q).staging, c.count, s);
      }
      peer_barrier(sig, s);
    }
  }

  void broadcast_now(const void* send, void* recv, size_t count, DType dtype, int root, cudaStream_t s) {
    const int n = g_->size();
    const size_t bytes = comm_bytes(count, dtype);
    const uint8_t* src = static_cast<const uint8_t*>(send);
    uint8_t* dst = static_cast<uint8_t*>(recv);
    if (n == 1) {
      copy(dst, src, bytes, s);
      return;
    }
    const PeerSignalArgs sig = signal_args(Op::kBroadcast);
    for (const PeerChunk& c : peer_chunks(bytes, g_->options().staging_bytes)) {
      if (rank_ == root) copy(me().staging, src + c.offset, c.count, s);
      peer_barrier(sig, s);
      copy(dst + c.offset, rank_ == root ? src + c.offset : g_->mem(root).staging, c.count, s);
      peer_barrier(sig, s);
    }
  }

  void p2p(bool is_send, void* buf, size_t count, DType dtype, int peer, const Stream& stream) {
    P2p op;
    guarded([&] {
      g_->live(rank_);
      op.stream = checked_stream(stream);
      ELI_CHECK(peer >= 0 && peer < g_->size() && peer != rank_, "rank ", rank_, " cannot ",
                is_send ? "send to" : "recv from", " rank ", peer, " (world size ", g_->size(), ")");
      op.bytes = comm_bytes(count, dtype);
      ELI_CHECK(op.bytes == 0 || buf != nullptr, is_send ? "send" : "recv", " of ", count, " elements with null");
    });
    op.is_send = is_send;
    op.buf = static_cast<uint8_t*>(buf);
    op.desc = Desc{is_send ? Op::kSend : Op::kRecv, 0, count, dtype, 0};
    op.peer = peer;
    if (depth_ > 0) {
      p2ps_.push_back(op);
      return;
    }
    guarded([&] { issue_p2p({op}); });
  }

  // Host: every send's descriptor first, then every recv takes and checks its send's; device: the
  // chunks in peer_p2p_order.
  void issue_p2p(const std::vector<P2p>& ops) {
    if (ops.empty()) return;
    g_->live(rank_);
    for (const P2p& op : ops) {
      if (op.is_send) g_->post_send(rank_, op.peer, op.desc);
    }
    for (const P2p& op : ops) {
      if (op.is_send) continue;
      const Desc d = g_->take_send(op.peer, rank_);
      ELI_CHECK_KIND(kInternal, d.count == op.desc.count && d.dtype == op.desc.dtype, "rank ", rank_, " expected ",
                     op.desc.count, " ", dtype_name(op.desc.dtype), " from rank ", op.peer, ", which sent ", d.count, " ",
                     dtype_name(d.dtype));
    }
    const size_t slot = g_->options().mailbox_bytes;
    std::vector<size_t> n_chunks;
    std::vector<bool> is_send;
    for (const P2p& op : ops) {
      n_chunks.push_back((op.bytes + slot - 1) / slot);
      is_send.push_back(op.is_send);
    }
    DeviceScope scope(device_);
    for (const auto& [i, c] : peer_p2p_order(n_chunks, is_send)) {
      const P2p& op = ops[i];
      const size_t off = c * slot, m = std::min(slot, op.bytes - off);
      const PeerSignalArgs sig = signal_args(op.is_send ? Op::kSend : Op::kRecv);
      if (op.is_send) {
        peer_send_wait(sig, op.peer, op.stream);
        copy(me().mailbox + static_cast<size_t>(op.peer) * slot, op.buf + off, m, op.stream);
        peer_send_post(sig, op.peer, op.stream);
      } else {
        peer_recv_wait(sig, op.peer, op.stream);
        copy(op.buf + off, g_->mem(op.peer).mailbox + static_cast<size_t>(rank_) * slot, m, op.stream);
        peer_recv_post(sig, op.peer, op.stream);
      }
    }
  }

  std::shared_ptr<Group> g_;
  int rank_;
  DeviceId device_;
  uint64_t seq_ = 0;  // collectives issued
  int depth_ = 0;     // group_start nesting
  std::vector<std::function<void()>> ops_;  // collectives deferred inside a group
  std::vector<P2p> p2ps_;                   // point-to-point ops deferred inside a group
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> create_peer_communicators(const std::vector<DeviceId>& devices,
                                                                     const PeerCommOptions& options) {
  ELI_CHECK_ARG(!devices.empty() && devices.size() <= static_cast<size_t>(kMaxPeers),
                "the peer communicator takes 1 to ", kMaxPeers, " ranks, not ", devices.size());
  ELI_CHECK_ARG(options.staging_bytes >= 4096 && options.mailbox_bytes >= 256 && options.timeout.count() > 0,
                "peer communicator options: staging >= 4096 bytes, mailbox >= 256 bytes, a positive timeout");
  int n_gpus = 0;
  check_cuda(cudaGetDeviceCount(&n_gpus), "cudaGetDeviceCount");
  for (const DeviceId& d : devices) {
    ELI_CHECK_ARG(d.kind == DeviceKind::kCUDA && d.index >= 0 && d.index < n_gpus, "peer communicator ranks are CUDA devices (",
                  n_gpus, " visible), not ", device_name(d));
  }
  for (size_t i = 0; i < devices.size(); ++i) {
    const auto first = std::find(devices.begin(), devices.begin() + static_cast<std::ptrdiff_t>(i), devices[i]);
    if (first == devices.begin() + static_cast<std::ptrdiff_t>(i)) continue;  // no earlier rank on this GPU
    ELI_CHECK_KIND(kUnsupported, !cuda_loads_kernels_lazily(), "ranks ", first - devices.begin(), " and ", i, " share ",
                   device_name(devices[i]),
                   ", which needs CUDA_MODULE_LOADING=EAGER set before CUDA starts in the process (eli.LLM sets it "
                   "when it is unset; here CUDA loads lazily): a lazy kernel load waits for the GPU to go idle "
                   "while another rank's kernel on it waits for this rank (a deadlock)");
    break;  // one answer for the process
  }
  for (const DeviceId& a : devices) {
    for (const DeviceId& b : devices) {
      if (a.index == b.index) continue;
      int can = 0;
      check_cuda(cudaDeviceCanAccessPeer(&can, a.index, b.index), "cudaDeviceCanAccessPeer");
      ELI_CHECK_KIND(kUnsupported, can != 0, device_name(a), " cannot access the memory of ", device_name(b),
                     " (no peer access): the peer communicator needs it between the GPUs of distinct ranks");
      DeviceScope on_a(a);  // peer access is enabled from the current device
      const cudaError_t e = cudaDeviceEnablePeerAccess(b.index, 0);
      if (e == cudaErrorPeerAccessAlreadyEnabled) {
        (void)cudaGetLastError();
      } else {
        check_cuda(e, "cudaDeviceEnablePeerAccess");
      }
    }
  }
  auto group = std::make_shared<Group>(devices, options);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (size_t r = 0; r < devices.size(); ++r) {
    comms.push_back(std::make_unique<PeerCommunicator>(group, static_cast<int>(r), devices[r]));
  }
  return comms;
}

void peer_comm_check(const Communicator& comm) {
  const auto* p = dynamic_cast<const PeerCommunicator*>(&comm);
  ELI_CHECK_ARG(p != nullptr, "peer_comm_check takes a peer communicator");
  p->check();
}

}  // namespace eli

#else  // !ELI_WITH_CUDA

namespace eli {

std::vector<std::unique_ptr<Communicator>> create_peer_communicators(const std::vector<DeviceId>&,
                                                                     const PeerCommOptions&) {
  ELI_THROW(kNotCompiled, "peer communicators need a CUDA build of eli");
}

void peer_comm_check(const Communicator&) {
  ELI_THROW(kNotCompiled, "peer communicators need a CUDA build of eli");
}

}  // namespace eli

#endif
