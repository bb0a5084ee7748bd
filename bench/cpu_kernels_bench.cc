// bench/cpu_kernels_bench.cc: tiny benchmark of the registry's CPU matrix products (Op::kGemm and,
// for decode row counts, Op::kGemv; GFLOP/s, and GB/s of weights). Calls the production kernels via
// the registry.
// Build: cmake -DELI_BUILD_BENCH=ON ... && cmake --build BUILD --target eli_cpu_kernels_bench
// Usage: ./a.out [threads] [variant]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kernels/ref/float_convert.h"
#include "kernels/registry.h"
#include "runtime/core/thread_pool.h"

using namespace eli;

template <typename Args>
static double time_it(const KernelEntry& e, Args a, ThreadPool* pool, int reps) {
  ExecContext ctx;
  ctx.pool = pool;
  e.fn(&a, ctx);  // warm-up
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) e.fn(&a, ctx);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  ThreadPool pool(threads);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-1, 1);
  struct Shape { int64_t m, n, k; int reps; };
  for (Shape s : {Shape{1, 4096, 4096, 50}, Shape{4, 4096, 4096, 30}, Shape{256, 2048, 2048, 3},
                  Shape{512, 4096, 1024, 3}}) {
    std::vector<float> x(s.m * s.k), w(s.n * s.k), out(s.m * s.n);
    for (float& v : x) v = d(rng);
    for (float& v : w) v = d(rng);
    std::vector<uint16_t> wh(w.size());
    for (size_t i = 0; i < w.size(); ++i) wh[i] = f32_to_bf16(w[i]);
    for (const KernelEntry& e : all_kernels()) {
      if ((e.op != Op::kGemm && e.op != Op::kGemv) || e.device != DeviceKind::kCPU) continue;
      if (e.op == Op::kGemv && s.m > kGemvMaxRows) continue;
      if (e.usable != nullptr && !e.usable()) continue;
      if (argc > 2 && std::string(e.variant) != argv[2]) continue;
      if (std::string(e.variant) == "ref" && s.m * s.n * s.k > (1 << 24)) continue;
      if (e.dtype != DType::kF32 && e.dtype != DType::kBF16) continue;  // the f16 references
      const bool bf16 = e.dtype == DType::kBF16;
      const void* wp = bf16 ? static_cast<const void*>(wh.data()) : w.data();
      double sec;
      if (e.op == Op::kGemm) {
        GemmArgs a{out.data(), x.data(), wp, nullptr, s.m, s.n, s.k, s.n, s.k};
        a.x_dtype = DType::kF32;
        a.out_dtype = DType::kF32;
        sec = time_it(e, a, &pool, s.reps);
      } else {
        GemvArgs a{out.data(), x.data(), wp, nullptr, nullptr, s.m, s.n, s.k, s.n, s.k};
        sec = time_it(e, a, &pool, s.reps);
      }
      const double gflops = 2.0 * s.m * s.n * s.k / sec * 1e-9;
      const double gbs = static_cast<double>(s.n * s.k * (bf16 ? 2 : 4)) / sec * 1e-9;
      std::printf("%-4s m=%4ld n=%5ld k=%5ld %-5s %-8s %8.3f ms %7.1f GFLOP/s %6.1f GB/s(w)\n", op_name(e.op),
                  (long)s.m, (long)s.n, (long)s.k, dtype_name(e.dtype), e.variant, sec * 1e3, gflops, gbs);
    }
  }
  return 0;
}
