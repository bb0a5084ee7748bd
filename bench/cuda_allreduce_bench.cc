// bench/cuda_allreduce_bench.cc: eli's peer all-reduce (runtime/comm/peer_communicator.h, the kernel
// of kernels/cuda/peer_all_reduce.h) against NCCL (runtime/comm/nccl_communicator.h with
// ELI_ALLREDUCE=nccl), f32 / bf16 messages from 4 KB to 64 MB, in place. Prints a table and writes
// JSON (one record per row: tp, impl, placement, dtype, bytes, us, algbw_gbs, busbw_gbs).
//
// With >= 2 GPUs: tp = 2, 4, 8 (as many as there are GPUs), one rank per GPU, both implementations.
// With one GPU: the peer communicator with tp ranks all on cuda:0 (placement "one_gpu": the ranks
// share the SMs and the memory bandwidth, so this measures the kernels' overhead, not a link) and
// NCCL at world 1 (a copy, its floor). Correctness is tests/cpp/test_cuda_peer_comm.cc's job.
//
// Time per call: each rank records events around `iters` back-to-back all-reduces on its own
// stream (after warm-up); the row is the slowest rank's mean. busbw = algbw * 2 (tp - 1) / tp.
//
//   build/cuda/eli_cuda_allreduce_bench [out.json | --json out.json] [--iters 50] [--tp 2,4]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/comm/nccl_communicator.h"
#include "runtime/comm/peer_communicator.h"
#include "runtime/comm/rank_threads.h"
#include "runtime/device/device.h"
#include "runtime/device/stream.h"

namespace {

using namespace eli;

struct Row {
  int tp = 0;
  std::string impl, placement, dtype;
  size_t bytes = 0;
  double us = 0, algbw = 0, busbw = 0;
};

// Mean microseconds per all-reduce of `bytes` on every rank of `comms` (the slowest rank's).
double time_all_reduce(const std::vector<std::unique_ptr<Communicator>>& comms, std::map<int, std::unique_ptr<Device>>& devs,
                       size_t bytes, DType dt, int iters) {
  const size_t count = bytes / dtype_info(dt).block_bytes;
  std::vector<Communicator*> raw;
  for (const auto& c : comms) raw.push_back(c.get());
  std::vector<double> us(comms.size(), 0.0);
  std::mutex mu;
  run_on_rank_threads(raw, [&](int r) {
    Device& dev = *devs.at(comms[r]->device().index);
    dev.make_current();
    std::unique_ptr<Stream> s;
    Buffer buf;
    std::unique_ptr<Event> start, end;
    {
      std::lock_guard<std::mutex> lk(mu);  // allocation from one thread at a time
      s = dev.create_stream();
      buf = dev.allocate_buffer(bytes);
      dev.memset_zero(buf.mutable_data(), bytes);
      start = dev.create_event(true);
      end = dev.create_event(true);
    }
    for (int i = 0; i < 3; ++i) comms[r]->all_reduce(buf.data(), buf.mutable_data(), count, dt, ReduceOp::kSum, *s);
    comms[r]->barrier(*s);
    start->record(*s);
    for (int i = 0; i < iters; ++i) comms[r]->all_reduce(buf.data(), buf.mutable_data(), count, dt, ReduceOp::kSum, *s);
    end->record(*s);
    s->synchronize();
    us[r] = 1000.0 * elapsed_ms(*start, *end) / iters;
    std::lock_guard<std::mutex> lk(mu);
    buf = Buffer();
  });
  return *std::max_element(us.begin(), us.end());
}

std::vector<int> parse_list(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p;) {
    out.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // Ranks sharing one GPU need eager kernel loading (runtime/comm/peer_communicator.h); CUDA reads
  // the variable when it starts, which is after this line.
  setenv("CUDA_MODULE_LOADING", "EAGER", /*overwrite=*/0);
  const char* json_path = nullptr;
  int iters = 50;
  std::vector<int> tps;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
    else if (!std::strcmp(argv[i], "--iters") && i + 1 < argc) iters = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--tp") && i + 1 < argc) tps = parse_list(argv[++i]);
    else if (argv[i][0] != '-') json_path = argv[i];  // positional: as the other benches (bench/device_check.sh)
    else {
      std::fprintf(stderr, "usage: %s [out.json | --json out.json] [--iters N] [--tp 2,4]\n", argv[0]);
      return 2;
    }
  }
  const int gpus = cuda_device_count();
  if (gpus == 0) {
    std::fprintf(stderr, "no CUDA device\n");
    return 1;
  }
  const bool one_gpu = gpus == 1;
  if (tps.empty()) {
    for (int t : {2, 4, 8}) {
      if (one_gpu ? t <= 4 : t <= gpus) tps.push_back(t);
    }
  }
  std::map<int, std::unique_ptr<Device>> devs;
  for (int g = 0; g < gpus; ++g) devs[g] = create_device(DeviceId{DeviceKind::kCUDA, g});
  const std::string gpu_name = devs[0]->properties().name;
  std::vector<size_t> sizes;
  for (size_t b = size_t{4} << 10; b <= (size_t{64} << 20); b *= 4) sizes.push_back(b);
  std::vector<Row> rows;
  auto add = [&](int tp, const char* impl, const char* placement, DType dt, size_t bytes, double us) {
    Row r{tp, impl, placement, dtype_name(dt), bytes, us, 0, 0};
    r.algbw = bytes / (us * 1e3);  // GB/s
    r.busbw = tp > 1 ? r.algbw * 2.0 * (tp - 1) / tp : r.algbw;
    rows.push_back(r);
    std::printf("%-4d %-5s %-9s %-5s %10zu %10.2f %9.2f %9.2f\n", tp, impl, placement, r.dtype.c_str(), bytes, us,
                r.algbw, r.busbw);
    std::fflush(stdout);
  };
  std::printf("%s, %d GPU(s), %d iterations per row\n", gpu_name.c_str(), gpus, iters);
  std::printf("%-4s %-5s %-9s %-5s %10s %10s %9s %9s\n", "tp", "impl", "placement", "dtype", "bytes", "us", "algbw",
              "busbw");
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (int tp : tps) {
      std::vector<DeviceId> ids;
      for (int r = 0; r < tp; ++r) ids.push_back(DeviceId{DeviceKind::kCUDA, one_gpu ? 0 : r});
      try {
        auto peer = create_peer_communicators(ids);
        for (size_t b : sizes) add(tp, "peer", one_gpu ? "one_gpu" : "distinct", dt, b, time_all_reduce(peer, devs, b, dt, iters));
      } catch (const std::exception& e) {
        std::printf("peer tp %d: %s\n", tp, e.what());
      }
      if (!one_gpu && nccl_available()) {
        setenv("ELI_ALLREDUCE", "nccl", 1);
        try {
          auto nccl = create_nccl_communicators(ids);
          for (size_t b : sizes) add(tp, "nccl", "distinct", dt, b, time_all_reduce(nccl, devs, b, dt, iters));
        } catch (const std::exception& e) {
          std::printf("nccl tp %d: %s\n", tp, e.what());
        }
      }
    }
    if (one_gpu && nccl_available()) {
      setenv("ELI_ALLREDUCE", "nccl", 1);
      try {
        auto nccl = create_nccl_communicators({DeviceId{DeviceKind::kCUDA, 0}});
        for (size_t b : sizes) add(1, "nccl", "one_gpu", dt, b, time_all_reduce(nccl, devs, b, dt, iters));
      } catch (const std::exception& e) {
        std::printf("nccl world 1: %s\n", e.what());
      }
    }
  }
  if (json_path != nullptr) {
    FILE* f = std::fopen(json_path, "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", json_path);
      return 1;
    }
    std::fprintf(f, "{\"bench\": \"allreduce\", \"gpu\": \"%s\", \"gpus\": %d, \"iters\": %d, \"rows\": [\n",
                 gpu_name.c_str(), gpus, iters);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f,
                   "  {\"tp\": %d, \"impl\": \"%s\", \"placement\": \"%s\", \"dtype\": \"%s\", \"bytes\": %zu, "
                   "\"us\": %.3f, \"algbw_gbs\": %.3f, \"busbw_gbs\": %.3f}%s\n",
                   r.tp, r.impl.c_str(), r.placement.c_str(), r.dtype.c_str(), r.bytes, r.us, r.algbw, r.busbw,
                   i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  return 0;
}
