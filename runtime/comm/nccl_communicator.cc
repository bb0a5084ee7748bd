// runtime/comm/nccl_communicator.cc: see nccl_communicator.h. Compiled in every build; the NCCL
// part only where CUDA is on (ELI_WITH_CUDA), with NCCL's header for its types and every function
// resolved from the dlopen()ed library (a CUDA build without nccl.h compiles the CPU-build stubs).
#include "runtime/comm/nccl_communicator.h"

#include <cstring>

#include "eli/error.h"
#include "kernels/cuda/peer_all_reduce.h"

namespace eli {

AllReduceMode parse_all_reduce_mode(const char* value) {
  if (value == nullptr || *value == 0 || std::strcmp(value, "auto") == 0) return AllReduceMode::kAuto;
  if (std::strcmp(value, "nccl") == 0) return AllReduceMode::kNccl;
  if (std::strcmp(value, "peer") == 0) return AllReduceMode::kPeer;
  ELI_THROW(kInvalidArgument, "ELI_ALLREDUCE must be nccl, peer or auto, not '", value, "'");
}

bool nccl_uses_peer_all_reduce(AllReduceMode mode, size_t bytes, int world, bool peer_ready) {
  if (!peer_ready || mode == AllReduceMode::kNccl) return false;
  if (mode == AllReduceMode::kPeer) return true;
  bool two_shot = false;
  return world > 1 && peer_all_reduce_fits(bytes, world, &two_shot);
}

}  // namespace eli

#if defined(ELI_WITH_CUDA) && ELI_WITH_CUDA && __has_include(<nccl.h>)
#define ELI_WITH_NCCL 1
#endif

#if ELI_WITH_NCCL
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "runtime/comm/peer_communicator.h"
#include "runtime/device/cuda_library_loader.h"
#include "runtime/device/stream.h"

// Every NCCL function eli calls: X(name) for nccl<name>.
#define ELI_NCCL_FUNCTIONS(X)                                                                      \
  X(GetVersion) X(GetErrorString) X(CommInitAll) X(CommDestroy) X(CommAbort) X(AllReduce)          \
  X(AllGather) X(ReduceScatter) X(Broadcast) X(Send) X(Recv) X(GroupStart) X(GroupEnd)

namespace eli {
namespace {

struct NcclApi {
#define ELI_NCCL_FIELD(name) decltype(&::nccl##name) name = nullptr;
  ELI_NCCL_FUNCTIONS(ELI_NCCL_FIELD)
#undef ELI_NCCL_FIELD
};

NcclApi load_nccl() {
  const CudaLibrarySpec spec{"NCCL", "libnccl.so.2", "ELI_NCCL_PATH", {"nvidia/nccl/lib"}, "nvidia-nccl-cu12",
                             "NCCL 2"};
  void* h = load_cuda_library(spec);
  NcclApi api;
  std::string missing;
#define ELI_NCCL_RESOLVE(name)                                                        \
  api.name = reinterpret_cast<decltype(&::nccl##name)>(dlsym(h, "nccl" #name));       \
  if (api.name == nullptr) missing += " nccl" #name;
  ELI_NCCL_FUNCTIONS(ELI_NCCL_RESOLVE)
#undef ELI_NCCL_RESOLVE
  ELI_CHECK_KIND(kDevice, missing.empty(), "the loaded NCCL lacks", missing);
  return api;
}

// Loaded on first use; a failed load throws and is retried by the next call.
const NcclApi& nccl() {
  static std::mutex mu;
  static std::unique_ptr<NcclApi> api;
  std::lock_guard<std::mutex> lk(mu);
  if (!api) api = std::make_unique<NcclApi>(load_nccl());
  return *api;
}

void check(ncclResult_t r, const char* what) {
  ELI_CHECK_KIND(kDevice, r == ncclSuccess, "NCCL ", what, " failed: ", nccl().GetErrorString(r));
}

void check_cuda(cudaError_t e, const char* what) {
  ELI_CHECK_KIND(kDevice, e == cudaSuccess, what, " failed: ", cudaGetErrorString(e));
}

// The NCCL type of a reduction, or (reduce == false) of a byte copy.
ncclDataType_t nccl_type(DType dt, bool reduce) {
  switch (dt) {
    case DType::kF32: return ncclFloat32;
    case DType::kBF16: return ncclBfloat16;
    case DType::kF16: return ncclFloat16;
    default:
      ELI_CHECK_KIND(kUnsupported, !reduce, "NCCL reductions take float32, bfloat16 or float16, not ",
                     dtype_name(dt));
      return ncclUint8;
  }
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int world, DeviceId device, AllReduceMode mode,
                   std::unique_ptr<Communicator> peer)
      : comm_(comm), rank_(rank), world_(world), device_(device), mode_(mode), peer_(std::move(peer)) {}
  ~NcclCommunicator() override {
    if (comm_ != nullptr && reason_.empty()) nccl().CommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  DeviceId device() const override { return device_; }

  void all_reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                  const Stream& stream) override {
    live();
    const ncclDataType_t t = nccl_type(dtype, true);
    if (nccl_uses_peer_all_reduce(mode_, comm_bytes(count, dtype), world_, peer_ != nullptr)) {
      peer_->all_reduce(send, recv, count, dtype, op, stream);
      return;
    }
    check(nccl().AllReduce(send, recv, count, t, ncclSum, comm_, s(stream)), "all_reduce");
  }
  void all_gather(const void* send, void* recv, size_t count, DType dtype, const Stream& stream) override {
    live();
    const auto [n, t] = elems(count, dtype);
    check(nccl().AllGather(send, recv, n, t, comm_, s(stream)), "all_gather");
  }
  void reduce_scatter(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                      const Stream& stream) override {
    live();
    check(nccl().ReduceScatter(send, recv, count, nccl_type(dtype, true), ncclSum, comm_, s(stream)),
          "reduce_scatter");
  }
  void broadcast(const void* send, void* recv, size_t count, DType dtype, int root, const Stream& stream) override {
    live();
    const auto [n, t] = elems(count, dtype);
    check(nccl().Broadcast(send, recv, n, t, root, comm_, s(stream)), "broadcast");
  }
  void send(const void* buf, size_t count, DType dtype, int peer, const Stream& stream) override {
    live();
    const auto [n, t] = elems(count, dtype);
    check(nccl().Send(buf, n, t, peer, comm_, s(stream)), "send");
  }
  void recv(void* buf, size_t count, DType dtype, int peer, const Stream& stream) override {
    live();
    const auto [n, t] = elems(count, dtype);
    check(nccl().Recv(buf, n, t, peer, comm_, s(stream)), "recv");
  }
  void barrier(const Stream& stream) override {
    live();
    // A one-element all-reduce on a scratch word of the rank's device.
    if (barrier_word_ == nullptr) check_cuda(cudaMalloc(&barrier_word_, sizeof(float)), "cudaMalloc (barrier)");
    check(nccl().AllReduce(barrier_word_, barrier_word_, 1, ncclFloat32, ncclSum, comm_, s(stream)), "barrier");
  }
  void group_start() override { check(nccl().GroupStart(), "group_start"); }
  void group_end() override { check(nccl().GroupEnd(), "group_end"); }

  void abort(const std::string& reason) noexcept override {
    std::lock_guard<std::mutex> lk(mu_);
    if (!reason_.empty()) return;
    reason_ = reason.empty() ? "aborted" : reason;
    if (peer_ != nullptr) peer_->abort(reason_);
    if (comm_ != nullptr) nccl().CommAbort(comm_);
  }
  std::string abort_reason() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return reason_;
  }

 private:
  static cudaStream_t s(const Stream& stream) { return static_cast<cudaStream_t>(stream.native()); }
  // Copies go as bytes for types NCCL has no name for (block-quantized counts are whole blocks).
  static std::pair<size_t, ncclDataType_t> elems(size_t count, DType dtype) {
    const ncclDataType_t t = nccl_type(dtype, false);
    return {t == ncclUint8 ? comm_bytes(count, dtype) : count, t};
  }
  void live() const {
    const std::string r = abort_reason();
    if (!r.empty()) throw CommAbortedError(ErrorKind::kDevice, "NCCL communicator aborted: " + r);
  }

  ncclComm_t comm_;
  int rank_, world_;
  DeviceId device_;
  AllReduceMode mode_;
  std::unique_ptr<Communicator> peer_;  // this rank's peer communicator (the all-reduce picker); may be null
  void* barrier_word_ = nullptr;
  mutable std::mutex mu_;
  std::string reason_;
};

}  // namespace

bool nccl_available() {
  try {
    (void)nccl();
    return true;
  } catch (...) {
    return false;
  }
}

std::vector<std::unique_ptr<Communicator>> create_nccl_communicators(const std::vector<DeviceId>& devices) {
  ELI_CHECK_ARG(!devices.empty(), "NCCL needs at least one device");
  std::vector<int> ids;
  for (const DeviceId& d : devices) {
    ELI_CHECK_ARG(d.kind == DeviceKind::kCUDA, "NCCL ranks are CUDA devices");
    ids.push_back(d.index);
  }
  setenv("NCCL_NVLS_ENABLE", "0", 1);  // NVLink multicast stays off (KINDS.md: it hangs on the lent hosts)
  // Peer access where the topology allows (the custom all-reduce reads peers' buffers directly).
  int prev = 0;
  check_cuda(cudaGetDevice(&prev), "cudaGetDevice");
  for (int a : ids) {
    for (int b : ids) {
      if (a == b) continue;
      int can = 0;
      check_cuda(cudaDeviceCanAccessPeer(&can, a, b), "cudaDeviceCanAccessPeer");
      if (!can) continue;
      check_cuda(cudaSetDevice(a), "cudaSetDevice");
      const cudaError_t e = cudaDeviceEnablePeerAccess(b, 0);
      if (e == cudaErrorPeerAccessAlreadyEnabled) {
        (void)cudaGetLastError();
      } else {
        check_cuda(e, "cudaDeviceEnablePeerAccess");
      }
    }
  }
  check_cuda(cudaSetDevice(prev), "cudaSetDevice");
  std::vector<ncclComm_t> comms(ids.size(), nullptr);
  const AllReduceMode mode = parse_all_reduce_mode(std::getenv("ELI_ALLREDUCE"));
  // The peer all-reduce (the header's rule): every pair of devices with peer access.
  std::vector<std::unique_ptr<Communicator>> peers;
  if (mode == AllReduceMode::kPeer || (mode == AllReduceMode::kAuto && ids.size() > 1)) {
    bool all_pairs = ids.size() <= static_cast<size_t>(kMaxPeers);
    for (int a : ids) {
      for (int b : ids) {
        int can = 1;
        if (a != b) check_cuda(cudaDeviceCanAccessPeer(&can, a, b), "cudaDeviceCanAccessPeer");
        all_pairs = all_pairs && can != 0;
      }
    }
    PeerCommOptions opt;
    opt.mailbox_bytes = 4096;  // no send/recv through it
    if (mode == AllReduceMode::kPeer) {
      peers = create_peer_communicators(devices, opt);  // without peer access: kUnsupported from here
    } else if (all_pairs) {
      try {
        peers = create_peer_communicators(devices, opt);
      } catch (const Error&) {
        peers.clear();  // auto: NCCL alone (e.g. no memory for the staging)
      }
    }
  }
  check(nccl().CommInitAll(comms.data(), static_cast<int>(ids.size()), ids.data()), "CommInitAll");
  std::vector<std::unique_ptr<Communicator>> out;
  for (size_t i = 0; i < comms.size(); ++i) {
    out.push_back(std::make_unique<NcclCommunicator>(comms[i], static_cast<int>(i), static_cast<int>(ids.size()),
                                                     devices[i], mode, peers.empty() ? nullptr : std::move(peers[i])));
  }
  return out;
}

}  // namespace eli

#else  // !ELI_WITH_NCCL

namespace eli {

bool nccl_available() { return false; }

std::vector<std::unique_ptr<Communicator>> create_nccl_communicators(const std::vector<DeviceId>&) {
  ELI_THROW(kNotCompiled, "NCCL communicators need a CUDA build of eli (with NCCL's header at build time)");
}

}  // namespace eli

#endif
