// tests/cpp/test_sampling_emu.cc: the CUDA sampling kernel's device code (kernels/cuda/
// sampling_kernel.cuh) run on the CPU through tests/cpp/cuda_emu.h, against the reference. This
// checks the kernel's algorithm (histograms, radix refinement, ranked ties, bitonic sort, scans,
// barriers) in every build; it must match the reference exactly, tokens included (as the GPU must:
// the semantics use no libm and no FMA, see kernels/sample_math.h). The same cases run on the GPU
// in test_cuda_sampling.cc.
#include "tests/cpp/cuda_emu.h"  // first: the CUDA built-ins for the kernel source

#define ELI_SAMPLE_KERNEL_NS sample_kernel_emu
#include "kernels/cuda/sampling_kernel.cuh"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/registry.h"
#include "tests/cpp/sampling_test_util.h"

namespace eli {
namespace {

using stest::HostBatch;

void run_emulated(HostBatch& b, unsigned block, uint32_t order_seed) {
  SampleArgs a = b.args();
  cuda_emu::launch(static_cast<unsigned>(b.n), block, order_seed,
                   [&a] { sample_kernel_emu::sample_rows_kernel(a); });
}

// Runs the cases of stest::kernel_cases (those whose name starts with one of `only`, if given).
void check_cases(int64_t V, unsigned block, uint64_t seed, const std::vector<std::string>& only = {}) {
  for (stest::NamedBatch& nb : stest::kernel_cases(V, seed)) {
    if (!only.empty() && std::none_of(only.begin(), only.end(), [&](const std::string& o) {
          return nb.name.compare(0, o.size(), o) == 0;
        })) {
      continue;
    }
    HostBatch want = nb.batch;
    SampleArgs a = want.args();
    get_kernel(Op::kSample, DeviceKind::kCPU, DType::kF32, "ref").fn(&a, ExecContext{});
    HostBatch got = nb.batch;
    ASSERT_NO_THROW(run_emulated(got, block, static_cast<uint32_t>(seed + V)));
    stest::compare_batches(want, got, 2e-5, 0, nb.name + " block=" + std::to_string(block));
  }
}

TEST(SampleKernelEmu, TinyVocabs) {
  for (int64_t V : {1, 2, 7, 33}) check_cases(V, 64, 1);
}

TEST(SampleKernelEmu, SmallVocab) { check_cases(1000, 128, 2); }

// Past the shared list's capacity (4096): radix refinement and ranked ties.
TEST(SampleKernelEmu, ListOverflowPaths) { check_cases(9000, 256, 3); }

// Random parameters and seeds (tests/cpp/sampling_test_util.h): the reference's tokens, exactly.
TEST(SampleKernelEmu, RandomSweep) {
  int batch = 0;
  for (HostBatch& b : stest::random_batches(31, 5, 2500)) {
    HostBatch want = b;
    SampleArgs a = want.args();
    get_kernel(Op::kSample, DeviceKind::kCPU, DType::kF32, "ref").fn(&a, ExecContext{});
    HostBatch got = b;
    ASSERT_NO_THROW(run_emulated(got, 128, static_cast<uint32_t>(batch)));
    stest::compare_batches(want, got, 2e-5, 0, "sweep batch " + std::to_string(batch++));
  }
}

TEST(SampleKernelEmu, OneWarpAndFullBlock) {
  check_cases(1000, 32, 4);
  check_cases(6000, 1024, 5, {"greedy", "ties", "penalties"});  // slow to emulate: a subset
}

}  // namespace
}  // namespace eli
