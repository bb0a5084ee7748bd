// runtime/comm/nccl_communicator.cc: see nccl_communicator.h. Compiled in every build; the NCCL
// part only where CUDA is on (ELI_WITH_CUDA), with NCCL's header for its types and every function
// resolved from the dlopen()ed library (a CUDA build without nccl.h compiles the CPU-build stubs).
#include "runtime/comm/nccl_communicator.h"

#include "eli/error.h"

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
  NcclCommunicator(ncclComm_t comm, int rank, int world, DeviceId device)
      : comm_(comm), rank_(rank), world_(world), device_(device) {}
  ~NcclCommunicator() override {
    if (comm_ != nullptr && reason_.empty()) nccl().CommDestroy(comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  DeviceId device() const override { return device_; }

  void all_reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                  const Stream& stream) override {
    live();
    check(nccl().AllReduce(send, recv, count, nccl_type(dtype, true), ncclSum, comm_, s(stream)), "all_reduce");
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
  check(nccl().CommInitAll(comms.data(), static_cast<int>(ids.size()), ids.data()), "CommInitAll");
  std::vector<std::unique_ptr<Communicator>> out;
  for (size_t i = 0; i < comms.size(); ++i) {
    out.push_back(std::make_unique<NcclCommunicator>(comms[i], static_cast<int>(i), static_cast<int>(ids.size()),
                                                     devices[i]));
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
