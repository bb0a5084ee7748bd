// bench/cuda_matmul_bench.cc: memory-bandwidth ceilings and the registry's CUDA matrix products, in
// one run on one GPU:
//   1. device-to-device copy bandwidth (cudaMemcpyAsync of 1 GiB; bytes read + written),
//   2. a read-only ceiling (a streaming-sum kernel over 2 GiB, best of a few launch shapes),
//   3. Op::kGemv (bf16 weights) at m = 1, 4, 8 for the Llama-3.2-1B / 3.1-8B decode shapes: GB/s of
//      weights and the fraction of the read ceiling; weights rotate among copies whose total is
//      >= 4x the L2, so DRAM is measured; calls are replayed from a CUDA graph (as a decode step),
//   4. Op::kGemm (cuBLASLt, bf16) at m = 512 and 2048 for the same shapes: TFLOP/s,
// plus a quick correctness check of the GEMV against the CPU reference. Medians of many runs
// (cudaEvents). Table on stdout; JSON to argv[1] if given. Random weights, never zeros.
//
// It calls the production kernels through the registry (never copies of them). It holds a kernel
// of its own (the read ceiling), so it is compiled as CUDA (CMake sets the language).
// Build: cmake -DELI_BUILD_BENCH=ON -DELI_CUDA=ON ... && cmake --build BUILD --target eli_cuda_matmul_bench
// Run:   BUILD/eli_cuda_matmul_bench [out.json]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "bench/cuda_bench_util.cuh"
#include "kernels/cuda_tuning_knobs.h"
#include "kernels/ops.h"
#include "kernels/ref/float_convert.h"
#include "kernels/registry.h"

using namespace eli;
using namespace eli::bench;

namespace {

// f32 or bf16 uniform in [lo, hi).
void fill(void* p, DType dt, size_t n, uint32_t seed, float lo, float hi) {
  if (dt == DType::kBF16) {
    fill_uniform_bf16(p, n, seed, lo, hi - lo);
  } else {
    fill_uniform_f32(p, n, seed, lo, hi - lo);
  }
}

struct Shape {
  const char* model;
  const char* name;
  int64_t n, k;
  GatedAct gated;  // the gate_up projections' fused activation (kNone: none)
  bool norm, accumulate;
  int layers;  // how often a decode step runs it
};

const Shape kShapes[] = {
    {"llama-3.2-1b", "qkv", 3072, 2048, GatedAct::kNone, true, false, 16},
    {"llama-3.2-1b", "o", 2048, 2048, GatedAct::kNone, false, true, 16},
    {"llama-3.2-1b", "gate_up", 16384, 2048, GatedAct::kSilu, true, false, 16},
    {"llama-3.2-1b", "down", 2048, 8192, GatedAct::kNone, false, true, 16},
    {"llama-3.2-1b", "lm_head", 128256, 2048, GatedAct::kNone, true, false, 1},
    {"llama-3.1-8b", "qkv", 6144, 4096, GatedAct::kNone, true, false, 32},
    {"llama-3.1-8b", "o", 4096, 4096, GatedAct::kNone, false, true, 32},
    {"llama-3.1-8b", "gate_up", 28672, 4096, GatedAct::kSilu, true, false, 32},
    {"llama-3.1-8b", "down", 4096, 14336, GatedAct::kNone, false, true, 32},
    {"llama-3.1-8b", "lm_head", 128256, 4096, GatedAct::kNone, true, false, 1},
};

struct Row {
  std::string what;
  double us, gbps, frac_read, tflops;
};

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const char* json_path = argc > 1 ? argv[1] : nullptr;
  CHECK_CUDA(cudaSetDevice(0));
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  int driver = 0, runtime = 0;
  CHECK_CUDA(cudaDriverGetVersion(&driver));
  CHECK_CUDA(cudaRuntimeGetVersion(&runtime));
  std::printf("device: %s, %d SMs, L2 %.0f MB, %.1f GB, driver %d, runtime %d\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize / 1e6, prop.totalGlobalMem / 1e9, driver, runtime);
  cudaStream_t s;
  CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  ExecContext ctx;
  ctx.stream = s;
  std::vector<Row> rows;

  // ---- 1. device-to-device copy -----------------------------------------------------------
  double copy_bw = 0.0;
  {
    const size_t bytes = size_t{1} << 30;
    void* src = dmalloc(bytes);
    void* dst = dmalloc(bytes);
    fill(src, DType::kF32, bytes / 4, 1, -1.f, 1.f);
    const double t = time_median(s, 2, 20, [&] { CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s)); });
    copy_bw = 2.0 * bytes / t;
    rows.push_back({"d2d copy 1 GiB (read+write)", t * 1e6, copy_bw / 1e9, 0.0, 0.0});
    CHECK_CUDA(cudaFree(src));
    CHECK_CUDA(cudaFree(dst));
  }

  // ---- 2. read-only ceiling ---------------------------------------------------------------
  std::string best_cfg;
  const double read_bw = read_ceiling<4>(
      s, prop, [](void* p, size_t bytes) { fill(p, DType::kF32, bytes / 4, 2, -1.f, 1.f); }, &best_cfg);
  rows.push_back({"read-only stream 2 GiB (best " + best_cfg + ")", kReadCeilingBytes / read_bw * 1e6, read_bw / 1e9, 1.0,
                  0.0});

  // ---- 3. GEMV ----------------------------------------------------------------------------
  const KernelEntry& gemv = get_kernel(Op::kGemv, DeviceKind::kCUDA, DType::kBF16);
  const KernelEntry& gemv_ref = get_kernel(Op::kGemv, DeviceKind::kCPU, DType::kBF16, "ref");
  // m = 1 decode step per model (weights only): [pdl, no pdl][model]
  double step_time[2][2] = {{0, 0}, {0, 0}}, step_bytes[2] = {0, 0};
  bool check_ok = true;
  for (const Shape& sh : kShapes) {
    const size_t wbytes = static_cast<size_t>(sh.n) * sh.k * 2;
    const int nbuf = rotate_copies(rotate_target_bytes(prop), wbytes);
    std::vector<void*> w(nbuf);
    for (int i = 0; i < nbuf; ++i) {
      w[i] = dmalloc(wbytes);
      fill(w[i], DType::kBF16, wbytes / 2, 100 + i, -1.f, 1.f);
    }
    const int64_t n_out = sh.gated != GatedAct::kNone ? sh.n / 2 : sh.n;
    float* x = static_cast<float*>(dmalloc(kGemvMaxRows * sh.k * 4));
    float* g = static_cast<float*>(dmalloc(sh.k * 4));
    float* out = static_cast<float*>(dmalloc(kGemvMaxRows * n_out * 4));
    fill(x, DType::kF32, kGemvMaxRows * sh.k, 7, -2.f, 2.f);
    fill(g, DType::kF32, sh.k, 8, 0.5f, 1.5f);
    fill(out, DType::kF32, kGemvMaxRows * n_out, 9, -1.f, 1.f);
    for (int64_t m : {1, 4, 8}) {
      GemvArgs a{out, x, nullptr, nullptr, sh.norm ? g : nullptr, m, sh.n, sh.k, n_out, sh.k};
      a.gated = sh.gated;
      a.accumulate = sh.accumulate;
      // A graph of `iters` calls rotating through the weight copies (a decode step is a graph too),
      // with programmatic dependent launch between the calls (the default) or without it (m = 1 only;
      // in a real step other kernels sit between the GEMVs).
      auto measure = [&](bool pdl) {
        cuda::set_knob(cuda::Knob::kGemvPdl, pdl ? 1 : 0);  // in force for the capture below
        const double t = time_rotating(s, gemv, a, w, ctx);
        cuda::set_knob(cuda::Knob::kGemvPdl, 1);
        return t;
      };
      for (bool pdl : {true, false}) {
        if (!pdl && m != 1) continue;
        const double t = measure(pdl);
        const double bw = wbytes / t;
        char what[160];
        std::snprintf(what, sizeof(what), "gemv %s %s %lldx%lld%s m=%lld%s", sh.model, sh.name, (long long)sh.n,
                      (long long)sh.k, sh.gated == GatedAct::kSilu ? " swiglu" : sh.gated == GatedAct::kGeluTanh ? " geglu" : "", (long long)m,
                      pdl ? "" : " no-pdl");
        rows.push_back({what, t * 1e6, bw / 1e9, bw / read_bw, 2.0 * m * sh.n * sh.k / t / 1e12});
        if (m == 1) {
          const int mi = std::string(sh.model) == "llama-3.2-1b" ? 0 : 1;
          step_time[pdl ? 0 : 1][mi] += t * sh.layers;
          if (pdl) step_bytes[mi] += static_cast<double>(wbytes) * sh.layers;
        }
      }
      // Correctness spot check on the smaller shapes: the last call (weights w[0]) vs the reference.
      if (wbytes <= (size_t{64} << 20) && m != 8) {
        std::vector<float> hx(m * sh.k), hg(sh.k), hout(m * n_out), want(m * n_out);
        std::vector<uint16_t> hw(wbytes / 2);
        fill(out, DType::kF32, kGemvMaxRows * n_out, 11, -1.f, 1.f);
        CHECK_CUDA(cudaMemcpy(want.data(), out, want.size() * 4, cudaMemcpyDeviceToHost));
        a.w = w[0];
        gemv.fn(&a, ctx);
        CHECK_CUDA(cudaStreamSynchronize(s));
        CHECK_CUDA(cudaMemcpy(hout.data(), out, hout.size() * 4, cudaMemcpyDeviceToHost));
        CHECK_CUDA(cudaMemcpy(hx.data(), x, hx.size() * 4, cudaMemcpyDeviceToHost));
        CHECK_CUDA(cudaMemcpy(hg.data(), g, hg.size() * 4, cudaMemcpyDeviceToHost));
        CHECK_CUDA(cudaMemcpy(hw.data(), w[0], wbytes, cudaMemcpyDeviceToHost));
        GemvArgs h = a;
        h.out = want.data();
        h.x = hx.data();
        h.w = hw.data();
        h.norm_weight = sh.norm ? hg.data() : nullptr;
        gemv_ref.fn(&h, ExecContext{});
        double worst = 0.0, scale = 1e-3;
        for (size_t i = 0; i < want.size(); ++i) {
          worst = std::max(worst, std::fabs(static_cast<double>(hout[i]) - want[i]));
          scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
        }
        if (!(worst <= 1e-4 * scale)) {
          std::printf("!! gemv check failed: %s %s m=%lld: worst error %g (max |ref| %g)\n", sh.model, sh.name,
                      (long long)m, worst, scale);
          check_ok = false;
        }
      }
    }
    for (void* p : w) CHECK_CUDA(cudaFree(p));
    CHECK_CUDA(cudaFree(x));
    CHECK_CUDA(cudaFree(g));
    CHECK_CUDA(cudaFree(out));
  }

  // ---- 4. GEMM (cuBLASLt) -------------------------------------------------------------------
  const KernelEntry& gemm = get_kernel(Op::kGemm, DeviceKind::kCUDA, DType::kBF16);
  {
    const size_t ws_bytes = size_t{32} << 20;
    void* ws = dmalloc(ws_bytes);
    for (const Shape& sh : kShapes) {
      for (int64_t m : {512, 2048}) {
        const size_t wbytes = static_cast<size_t>(sh.n) * sh.k * 2;
        // Residual adds (o, down) accumulate into an f32 out; the rest write bf16 (or f32 logits).
        const bool lm = std::string(sh.name) == "lm_head";
        const DType out_dt = sh.accumulate || lm ? DType::kF32 : DType::kBF16;
        void* w = dmalloc(wbytes);
        void* x = dmalloc(static_cast<size_t>(m) * sh.k * 2);
        void* out = dmalloc(static_cast<size_t>(m) * sh.n * (out_dt == DType::kF32 ? 4 : 2));
        fill(w, DType::kBF16, wbytes / 2, 21, -1.f, 1.f);
        fill(x, DType::kBF16, static_cast<size_t>(m) * sh.k, 22, -1.f, 1.f);
        fill(out, out_dt, static_cast<size_t>(m) * sh.n, 23, -1.f, 1.f);
        GemmArgs a{out, x, w, nullptr, m, sh.n, sh.k, sh.n, sh.k};
        a.x_dtype = DType::kBF16;
        a.out_dtype = out_dt;
        a.accumulate = sh.accumulate;
        a.workspace = ws;
        a.workspace_bytes = ws_bytes;
        const double t = time_median(s, 3, 20, [&] { gemm.fn(&a, ctx); });
        const double flops = 2.0 * m * sh.n * sh.k;
        char what[160];
        std::snprintf(what, sizeof(what), "gemm %s %s %lldx%lld m=%lld out %s%s", sh.model, sh.name, (long long)sh.n,
                      (long long)sh.k, (long long)m, dtype_name(out_dt), sh.accumulate ? " +=" : "");
        rows.push_back({what, t * 1e6, (wbytes + m * sh.k * 2.0) / t / 1e9, 0.0, flops / t / 1e12});
        CHECK_CUDA(cudaFree(w));
        CHECK_CUDA(cudaFree(x));
        CHECK_CUDA(cudaFree(out));
      }
    }
    CHECK_CUDA(cudaFree(ws));
  }
  CHECK_CUDA(cudaDeviceSynchronize());

  // ---- report -------------------------------------------------------------------------------
  std::printf("\n%-58s %10s %9s %8s %9s\n", "case", "us", "GB/s", "of read", "TFLOP/s");
  for (const Row& r : rows) {
    std::printf("%-58s %10.2f %9.1f %7.1f%% %9.2f\n", r.what.c_str(), r.us, r.gbps, 100.0 * r.frac_read, r.tflops);
  }
  const char* models[2] = {"llama-3.2-1b", "llama-3.1-8b"};
  for (int i = 0; i < 2; ++i) {
    for (int p = 0; p < 2; ++p) {
      const double bw = step_bytes[i] / step_time[p][i];
      std::printf("decode step GEMVs (m=1, weights only, %s) %s: %.1f us, %.1f GB/s = %.1f%% of read, %.1f%% of copy;"
                  " %.0f tok/s if nothing else ran\n",
                  p == 0 ? "pdl" : "no pdl", models[i], step_time[p][i] * 1e6, bw / 1e9, 100.0 * bw / read_bw,
                  100.0 * bw / copy_bw, 1.0 / step_time[p][i]);
    }
  }
  std::printf("gemv correctness spot checks: %s\n", check_ok ? "ok" : "FAILED");

  if (json_path != nullptr) {
    FILE* f = std::fopen(json_path, "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", json_path);
      return 1;
    }
    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    std::fprintf(f, "{\n  \"bench\": \"cuda_matmul_bench\",\n  \"date\": \"%s\",\n  \"device\": \"%s\",\n", date,
                 json_escape(prop.name).c_str());
    std::fprintf(f, "  \"sms\": %d,\n  \"l2_bytes\": %d,\n  \"driver\": %d,\n  \"runtime\": %d,\n",
                 prop.multiProcessorCount, prop.l2CacheSize, driver, runtime);
    std::fprintf(f, "  \"copy_bytes_per_s\": %.6g,\n  \"read_bytes_per_s\": %.6g,\n", copy_bw, read_bw);
    std::fprintf(f, "  \"gemv_check_ok\": %s,\n  \"decode_step_gemv\": [\n", check_ok ? "true" : "false");
    for (int i = 0; i < 2; ++i) {
      std::fprintf(f, "    {\"model\": \"%s\", \"seconds_pdl\": %.6g, \"seconds_no_pdl\": %.6g, \"bytes\": %.6g}%s\n",
                   models[i], step_time[0][i], step_time[1][i], step_bytes[i], i == 0 ? "," : "");
    }
    std::fprintf(f, "  ],\n  \"rows\": [\n");
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f, "    {\"case\": \"%s\", \"us\": %.6g, \"gb_per_s\": %.6g, \"frac_read\": %.6g, \"tflops\": %.6g}%s\n",
                   json_escape(r.what).c_str(), r.us, r.gbps, r.frac_read, r.tflops, i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    std::printf("wrote %s\n", json_path);
  }
  CHECK_CUDA(cudaStreamDestroy(s));
  return check_ok ? 0 : 2;
}
