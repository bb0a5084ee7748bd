// tests/cpp/test_sampling_cpu.cc: the CPU kSample kernel (kernels/cpu/sampling_cpu.cc, variant
// "cpu", the engine's sampler on the CPU) against the reference (variant "ref"): every output
// identical (tokens, statuses, top ids, penalised logits, and logprobs too: both sum the lse in
// the same order), on the named cases that take every path, on a sweep of random parameters and
// seeds, whatever the thread pool and the batch around a row. Also prints (ELI_PRINT_TIMINGS=1)
// the per-step cost at the default model's vocab (49152).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kernels/registry.h"
#include "runtime/core/thread_pool.h"
#include "tests/cpp/sampling_test_util.h"

namespace eli {
namespace {

using stest::HostBatch;
using stest::RowParams;

void run(HostBatch& b, const char* variant, ThreadPool* pool = nullptr) {
  SampleArgs a = b.args();
  ExecContext ctx;
  ctx.pool = pool;
  get_kernel(Op::kSample, DeviceKind::kCPU, DType::kF32, variant).fn(&a, ctx);
}

// Row r of b as a batch of its own.
HostBatch row_batch(const HostBatch& b, int64_t r) {
  RowParams p;
  p.temperature = b.temperature[r];
  p.top_k = b.top_k[r];
  p.top_p = b.top_p[r];
  p.min_p = b.min_p[r];
  p.repetition = b.rep[r];
  p.presence = b.pres[r];
  p.frequency = b.freq[r];
  p.seed = b.seed[r];
  p.offset = b.offset[r];
  p.n_logprobs = b.n_logprobs[r];
  for (int32_t j = b.pen_offsets[r]; j < b.pen_offsets[r + 1]; ++j) p.penalties.emplace_back(b.pen_tokens[j], b.pen_counts[j]);
  HostBatch one(b.vocab, b.stride, b.top_stride, {p});
  std::copy(b.logits.begin() + r * b.stride, b.logits.begin() + (r + 1) * b.stride, one.logits.begin());
  return one;
}

TEST(SampleCpu, IsTheDefaultCpuKernel) {
  const KernelEntry* e = find_kernel(Op::kSample, DeviceKind::kCPU, DType::kF32);
  ASSERT_NE(e, nullptr);
  EXPECT_STREQ(e->variant, "cpu");
}

TEST(SampleCpu, NamedCasesMatchReferenceExactly) {
  ThreadPool pool(8);  // V = 20000 with fewer rows than threads: each row split into 2 chunks
  for (int64_t V : {1, 2, 7, 33, 1000, 20000}) {
    for (stest::NamedBatch& nb : stest::kernel_cases(V, 40 + V)) {
      HostBatch want = nb.batch;
      run(want, "ref");
      HostBatch got = nb.batch;
      run(got, "cpu", &pool);
      stest::compare_batches(want, got, 0.0, 0, nb.name);
    }
  }
}

// Random parameters, seeds, offsets, penalties and logit shapes (including heavy ties), many rows.
TEST(SampleCpu, RandomSweepMatchesReferenceExactly) {
  int rows_checked = 0, batch = 0;
  for (HostBatch& b : stest::random_batches(2024, 24, 6000)) {
    HostBatch want = b;
    run(want, "ref");
    HostBatch got = b;
    run(got, "cpu");
    stest::compare_batches(want, got, 0.0, 0, "sweep batch " + std::to_string(batch++));
    rows_checked += static_cast<int>(b.n);
  }
  EXPECT_GT(rows_checked, 100);
}

// A row's token depends on its own logits, seed and offset only: not on its neighbours, its
// position in the batch or the threads.
TEST(SampleCpu, RowsAreIndependentOfTheBatch) {
  const int64_t V = 5000;
  std::mt19937_64 rng(7);
  std::vector<RowParams> rows(9);
  for (int i = 0; i < 9; ++i) {
    rows[i].temperature = 0.6 + 0.1 * i;
    rows[i].top_k = i % 3 == 0 ? 100 : 0;
    rows[i].top_p = i % 2 ? 0.9 : 1.0;
    rows[i].seed = 1000 + static_cast<uint64_t>(i);
    rows[i].offset = static_cast<uint64_t>(i * 3);
  }
  HostBatch b(V, V, 0, rows);
  stest::fill_normal(b.logits.data(), static_cast<int64_t>(b.logits.size()), rng, 3.0f);
  HostBatch whole = b;
  ThreadPool pool(2);
  run(whole, "cpu", &pool);
  for (int i = 8; i >= 0; --i) {
    HostBatch one(V, V, 0, {rows[i]});
    std::copy(b.row(i), b.row(i) + V, one.row(0));
    run(one, "cpu");
    EXPECT_EQ(one.token[0], whole.token[i]) << "row " << i;
  }
}

// Splitting a row over threads (fewer rows than threads) changes nothing: every cross-chunk
// combination is exact.
TEST(SampleCpu, ThreadCountDoesNotChangeOutputs) {
  std::vector<HostBatch> batches;
  for (HostBatch& b : stest::random_batches(99, 8, 40000)) {
    if (b.vocab >= 16384) batches.push_back(b);
  }
  ASSERT_GE(batches.size(), 3u);
  ThreadPool p2(2), p8(8);
  for (size_t i = 0; i < batches.size(); ++i) {
    HostBatch want = batches[i];
    run(want, "ref");
    for (ThreadPool* pool : {&p2, &p8}) {
      // One row at a time (the chunked path) and the whole batch.
      for (int64_t r = 0; r < batches[i].n; ++r) {
        HostBatch one = row_batch(batches[i], r);
        run(one, "cpu", pool);
        EXPECT_EQ(one.token[0], want.token[r]) << "batch " << i << " row " << r << " threads " << pool->n_threads();
        EXPECT_EQ(one.logprob[0], want.logprob[r]) << "batch " << i << " row " << r;
      }
      HostBatch got = batches[i];
      run(got, "cpu", pool);
      stest::compare_batches(want, got, 0.0, 0, "batch " + std::to_string(i) + " threads " +
                                                     std::to_string(pool->n_threads()));
    }
  }
}

// The per-step cost of sampling one row at the default model's vocab (SmolLM2: 49152), printed.
TEST(SampleCpu, Timings) {
  const char* want = std::getenv("ELI_PRINT_TIMINGS");
  if (want == nullptr || want[0] != '1') GTEST_SKIP() << "measurement only: set ELI_PRINT_TIMINGS=1";
  const int64_t V = 49152;
  struct Cfg {
    const char* name;
    double t;
    int32_t k;
    double p, mp;
    int32_t nlp;
  };
  const Cfg cfgs[] = {{"greedy", 0.0, 0, 1.0, 0.0, -1},          {"temperature 0.8", 0.8, 0, 1.0, 0.0, -1},
                      {"temperature 1.0", 1.0, 0, 1.0, 0.0, -1},  {"top_k 50", 0.8, 50, 1.0, 0.0, -1},
                      {"top_p 0.95", 0.8, 0, 0.95, 0.0, -1},      {"top_k 50 top_p 0.9", 0.8, 50, 0.9, 0.0, -1},
                      {"min_p 0.05", 1.0, 0, 1.0, 0.05, -1},      {"top_p 0.9 logprobs 5", 0.7, 0, 0.9, 0.0, 5}};
  std::mt19937_64 rng(1);
  for (const Cfg& c : cfgs) {
    RowParams r;
    r.temperature = c.t;
    r.top_k = c.k;
    r.top_p = c.p;
    r.min_p = c.mp;
    r.n_logprobs = c.nlp;
    HostBatch b(V, V, c.nlp > 0 ? c.nlp : 0, {r});
    // Shaped like a real LM row: a bulk ~22 below the max, a few candidates near it.
    stest::fill_normal(b.logits.data(), V, rng, 4.0f, -5.0f);
    for (int i = 0; i < 20; ++i) b.logits[static_cast<size_t>(rng() % V)] = 12.0f + static_cast<float>(i % 5);
    const std::vector<float> logits = b.logits;
    for (const char* variant : {"ref", "cpu"}) {
      std::vector<double> us;
      for (int it = 0; it < 30; ++it) {
        b.logits = logits;
        b.offset[0] = static_cast<uint64_t>(it);
        const auto t0 = std::chrono::steady_clock::now();
        run(b, variant);
        us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(us.begin(), us.end());
      std::printf("[ TIME ] sample %-3s V=%lld %-22s median %8.1f us\n", variant, static_cast<long long>(V), c.name,
                  us[us.size() / 2]);
    }
  }
}

}  // namespace
}  // namespace eli
