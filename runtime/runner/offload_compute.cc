// runtime/runner/offload_compute.cc: see offload_compute.h.
#include "runtime/runner/offload_compute.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>
#include <vector>

#include "eli/error.h"
#include "kernels/ops.h"
#include "kernels/registry.h"
#include "runtime/core/float_convert.h"
#include "runtime/core/format_bytes.h"
#include "runtime/device/buffer.h"
#include "runtime/device/device.h"
#include "runtime/device/stream.h"

namespace eli {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// "12.3 GB/s"
std::string rate_text(double bytes_per_s) {
  std::ostringstream o;
  o.precision(3);
  o << bytes_per_s / 1e9 << " GB/s";
  return o.str();
}

std::string ms_text(double ms) {
  std::ostringstream o;
  o.precision(4);
  o << ms << " ms";
  return o.str();
}

}  // namespace

OffloadComputeMode parse_offload_compute(const std::string& mode) {
  if (mode == "stream") return OffloadComputeMode::kStream;
  if (mode == "cpu") return OffloadComputeMode::kCpu;
  if (mode == "auto") return OffloadComputeMode::kAuto;
  ELI_THROW(kInvalidArgument, "offload_compute must be \"auto\", \"stream\" or \"cpu\", got \"", mode, "\"");
}

OffloadRates measure_offload_rates(Device& device, ThreadPool& pool) {
  OffloadRates r;
  // Pinned host -> device: one warm-up copy, then three timed.
  {
    constexpr size_t kBytes = size_t{64} << 20;
    Buffer host = device.allocate_buffer(kBytes, BufferType::kPinnedHost);
    std::memset(host.mutable_data(), 0, kBytes);
    Buffer dev = device.allocate_buffer(kBytes, BufferType::kDevice);
    const Stream& st = device.default_stream();
    device.copy_host_to_device(dev.mutable_data(), host.data(), kBytes, st.native());
    st.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 3; ++i) device.copy_host_to_device(dev.mutable_data(), host.data(), kBytes, st.native());
    st.synchronize();
    r.h2d_bytes_per_s = 3.0 * kBytes / std::max(seconds_since(t0), 1e-9);
  }
  // The two buffers go back to the driver, not to the pools' caches (the budget was planned before).
  device.release_cached(BufferType::kDevice);
  device.release_cached(BufferType::kPinnedHost);
  // eli's CPU kernels on a bf16 4096 x 4096 matrix (32 MiB: past the caches of most CPUs).
  constexpr int64_t kN = 4096, kK = 4096, kRows = 32;
  std::vector<uint16_t> w(static_cast<size_t>(kN * kK));
  for (size_t i = 0; i < w.size(); ++i) w[i] = f32_to_bf16(static_cast<float>(static_cast<int>(i % 7) - 3) * 0.01f);
  std::vector<float> x(static_cast<size_t>(kRows * kK), 0.5f), out(static_cast<size_t>(kRows * kN));
  ExecContext ctx;
  ctx.pool = &pool;
  {
    GemvArgs a{};
    a.out = out.data();
    a.x = x.data();
    a.w = w.data();
    a.m = 1;
    a.n = kN;
    a.k = kK;
    a.out_stride = kN;
    a.x_stride = kK;
    const KernelEntry& gemv = get_kernel(Op::kGemv, DeviceKind::kCPU, DType::kBF16);
    gemv.fn(&a, ctx);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 3; ++i) gemv.fn(&a, ctx);
    r.cpu_read_bytes_per_s = 3.0 * static_cast<double>(w.size() * sizeof(uint16_t)) / std::max(seconds_since(t0), 1e-9);
  }
  {
    GemmArgs g{};
    g.out = out.data();
    g.x = x.data();
    g.w = w.data();
    g.m = kRows;
    g.n = kN;
    g.k = kK;
    g.out_stride = kN;
    g.x_stride = kK;
    g.x_dtype = DType::kF32;
    g.out_dtype = DType::kF32;
    const KernelEntry& gemm = get_kernel(Op::kGemm, DeviceKind::kCPU, DType::kBF16);
    const auto t0 = std::chrono::steady_clock::now();
    gemm.fn(&g, ctx);
    r.cpu_flops = 2.0 * kRows * kN * kK / std::max(seconds_since(t0), 1e-9);
  }
  return r;
}

uint64_t layer_params(const ModelSpec& s) {
  const uint64_t h = static_cast<uint64_t>(s.hidden_size), hd = static_cast<uint64_t>(s.head_dim);
  const uint64_t q = static_cast<uint64_t>(s.n_heads) * hd, kv = static_cast<uint64_t>(s.n_kv_heads) * hd;
  return h * (q + 2 * kv) + q * h + 3 * h * static_cast<uint64_t>(s.intermediate_size);
}

OffloadComputeChoice choose_offload_compute(OffloadComputeMode mode, const OffloadPlan& plan, const ModelSpec& spec,
                                            DeviceKind device, const OffloadRates& rates, int64_t max_num_seqs,
                                            bool explicit_map) {
  OffloadComputeChoice c;
  const int64_t n_off = static_cast<int64_t>(plan.tier_of_layer.size());
  if (n_off == 0) return c;
  if (explicit_map && mode != OffloadComputeMode::kStream) {
    // The map chose the layers: the CPU stage can take them only as the model's first layers.
    const bool prefix = plan.tier_of_layer.begin()->first == plan.first_layer &&
                        plan.tier_of_layer.rbegin()->first == plan.first_layer + n_off - 1;
    if (!prefix) {
      ELI_CHECK_ARG(mode != OffloadComputeMode::kCpu, "offload_compute=cpu computes the model's first layers on "
                    "the CPU, but offload_map offloads layers ", plan.tier_of_layer.begin()->first, "..",
                    plan.tier_of_layer.rbegin()->first, " with resident layers among or before them; map the "
                    "first layers (\"0-K:host\") or use offload_compute=stream");
      c.reason = "offload_compute=auto with an offload_map of layers other than the first ones: streamed";
      return c;
    }
  }
  const uint64_t bytes = plan.host_bytes + plan.disk_bytes;
  auto take_cpu = [&](const std::string& why) {
    // The first layers: as many as the streaming plan offloads, the GPU stage keeping at least one.
    c.cpu_layers = std::min<int64_t>(n_off, plan.n_layers - 1);
    c.cpu_bytes = c.cpu_layers == n_off ? bytes : bytes / static_cast<uint64_t>(n_off) * static_cast<uint64_t>(c.cpu_layers);
    c.reason = why;
  };
  if (mode == OffloadComputeMode::kStream) {
    c.reason = "offload_compute=stream";
    return c;
  }
  if (mode == OffloadComputeMode::kCpu) {
    take_cpu("offload_compute=cpu");
    return c;
  }
  if (device == DeviceKind::kCPU) {  // the CPU's "device" budget only stands in for a GPU's
    c.reason = "offload_compute=auto on the CPU backend: streamed";
    return c;
  }
  // "auto": the cost of the n offloaded layers per step either way (see the header).
  const double params = static_cast<double>(layer_params(spec)) * static_cast<double>(n_off);
  c.batch = std::max<int64_t>(1, std::min<int64_t>(max_num_seqs, 32));
  c.stream_ms = 1e3 * static_cast<double>(bytes) / std::max(rates.h2d_bytes_per_s, 1.0);
  const double read_ms = 1e3 * static_cast<double>(bytes) / std::max(rates.cpu_read_bytes_per_s, 1.0);
  auto flops_ms = [&](int64_t b) { return 1e3 * 2.0 * params * static_cast<double>(b) / std::max(rates.cpu_flops, 1.0); };
  c.cpu_ms_1 = std::max(read_ms, flops_ms(1));
  c.cpu_ms_batch = std::max(read_ms, flops_ms(c.batch));
  const std::string est = "offload_compute=auto: streaming " + std::to_string(n_off) + " layers (" +
                          format_bytes(bytes) + " at " + rate_text(rates.h2d_bytes_per_s) + ") ~" +
                          ms_text(c.stream_ms) + " per step; the CPU (" + rate_text(rates.cpu_read_bytes_per_s) +
                          " read, " + std::to_string(static_cast<int64_t>(rates.cpu_flops / 1e9)) + " GFLOP/s) ~" +
                          ms_text(c.cpu_ms_1) + " for 1 token, ~" + ms_text(c.cpu_ms_batch) + " for " +
                          std::to_string(c.batch);
  if (c.cpu_ms_1 < c.stream_ms && c.cpu_ms_batch < c.stream_ms) {
    take_cpu(est + ": computed on the CPU");
  } else {
    c.reason = est + ": streamed";
  }
  return c;
}

std::string describe_cpu_stage(const OffloadComputeChoice& c, int64_t n_layers, const std::string& device_name) {
  return "layers " + layer_range(0, c.cpu_layers - 1) + " computed on the CPU (" + format_bytes(c.cpu_bytes) +
         " of host memory), layers " + layer_range(c.cpu_layers, n_layers - 1) + " on " + device_name + "; " + c.reason;
}

}  // namespace eli
