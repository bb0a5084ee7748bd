// tests/cpp/test_cuda_sampling.cc: Op::kSample on CUDA against the CPU reference, and DeviceSampler
// on a CUDA device against the host Sampler. Skips without a GPU. Uses only the Device API.
//
// One sampling semantics on every device (kernels/sample_ops.h): the kernel must match the reference
// exactly in every token (greedy and sampled: the same counter RNG, integer top-p masses, no libm),
// status, top-n id and penalised logit; logprobs within 1e-4 (the lse sums in another order).
// Vocab sizes 1, 7, 1000, 32000, 128256, 151936. DeviceSampler on the GPU gives the host Sampler's
// tokens on the same logits. Also prints kernel timings (ELI_PRINT_TIMINGS=1).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/registry.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"
#include "runtime/runner/device_sampler.h"
#include "runtime/runner/sampler.h"
#include "tests/cpp/device_test_util.h"
#include "tests/cpp/kernel_test_util.h"
#include "tests/cpp/sampling_test_util.h"

namespace eli {
namespace {

using stest::HostBatch;
using stest::RowParams;

class CudaKernelSample : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    dev_ = create_cuda_device(0);
    ctx_.stream = dev_->default_stream().native();
    entry_ = find_kernel(Op::kSample, DeviceKind::kCUDA, DType::kF32);
    ASSERT_NE(entry_, nullptr);
  }
  std::unique_ptr<Device> dev_;
  ExecContext ctx_;
  const KernelEntry* entry_ = nullptr;
};

// A HostBatch staged on the device; run() launches the kernel and copies every output back.
struct DeviceBatch {
  Device& dev;
  HostBatch& b;
  DeviceBuffer<float> logits, pen_raw, logprob, top_logprobs;
  DeviceBuffer<double> temperature, top_p, min_p, rep, pres, freq;
  DeviceBuffer<int32_t> top_k, n_logprobs, pen_offsets, pen_tokens, pen_counts, token, status, top_ids;
  DeviceBuffer<uint64_t> seed, offset;
  DeviceBuffer<float> pen_bias;
  DeviceBuffer<int32_t> mask_row;
  DeviceBuffer<uint32_t> masks;
  SampleArgs a{};

  DeviceBatch(Device& d, HostBatch& hb)
      : dev(d), b(hb), logits(d, hb.logits), pen_raw(d, hb.pen_raw), logprob(d, hb.logprob),
        top_logprobs(d, hb.top_logprobs), temperature(d, hb.temperature), top_p(d, hb.top_p), min_p(d, hb.min_p),
        rep(d, hb.rep), pres(d, hb.pres), freq(d, hb.freq), top_k(d, hb.top_k), n_logprobs(d, hb.n_logprobs),
        pen_offsets(d, hb.pen_offsets), pen_tokens(d, hb.pen_tokens), pen_counts(d, hb.pen_counts),
        token(d, hb.token), status(d, hb.status), top_ids(d, hb.top_ids), seed(d, hb.seed), offset(d, hb.offset),
        pen_bias(d, hb.pen_bias), mask_row(d, hb.mask_row), masks(d, hb.masks) {
    a = hb.args();
    a.token = token.get();
    a.logprob = logprob.get();
    a.top_ids = hb.top_stride > 0 ? top_ids.get() : nullptr;
    a.top_logprobs = hb.top_stride > 0 ? top_logprobs.get() : nullptr;
    a.status = status.get();
    a.logits = logits.get();
    a.penalty_raw = pen_raw.get();
    a.temperature = temperature.get();
    a.top_k = top_k.get();
    a.top_p = top_p.get();
    a.min_p = min_p.get();
    a.repetition_penalty = rep.get();
    a.presence_penalty = pres.get();
    a.frequency_penalty = freq.get();
    a.seed = seed.get();
    a.offset = offset.get();
    a.n_logprobs = n_logprobs.get();
    a.penalty_offsets = pen_offsets.get();
    a.penalty_tokens = pen_tokens.get();
    a.penalty_counts = pen_counts.get();
    a.penalty_bias = hb.any_bias ? pen_bias.get() : nullptr;
    a.allow_mask = hb.masks.empty() ? nullptr : masks.get();
    a.mask_row = mask_row.get();
  }
  void run(const KernelEntry& e, const ExecContext& ctx) {
    e.fn(&a, ctx);
    dev.synchronize();
    b.token = token.download();
    b.status = status.download();
    b.logprob = logprob.download();
    b.top_ids = top_ids.download();
    b.top_logprobs = top_logprobs.download();
    b.logits = logits.download();
    b.pen_raw = pen_raw.download();
  }
};

void run_ref(HostBatch& b) {
  SampleArgs a = b.args();
  get_kernel(Op::kSample, DeviceKind::kCPU, DType::kF32, "ref").fn(&a, ExecContext{});
}

TEST_F(CudaKernelSample, MatchesReference) {
  int total_mismatches = 0, total_rows = 0;
  // Under a sanitizer: the smallest vocabularies and the largest (the same kernel paths).
  const std::vector<int64_t> vocabs = ktest::under_sanitizer() ? std::vector<int64_t>{1, 7, 1000, 151936}
                                                               : std::vector<int64_t>{1, 7, 1000, 32000, 128256, 151936};
  for (int64_t V : vocabs) {
    for (stest::NamedBatch& nb : stest::kernel_cases(V, 100 + V)) {
      HostBatch want = nb.batch;
      run_ref(want);
      HostBatch got = nb.batch;
      DeviceBatch db(*dev_, got);
      db.run(*entry_, ctx_);
      total_mismatches += stest::compare_batches(want, got, 1e-4, 0, nb.name);
      total_rows += static_cast<int>(want.n);
    }
  }
  std::printf("[ NOTE ] sampled tokens differing from the reference: %d of %d rows\n", total_mismatches, total_rows);
}

// Random parameters, seeds and logits (tests/cpp/sampling_test_util.h): the reference's tokens.
TEST_F(CudaKernelSample, RandomSweepMatchesReference) {
  int batch = 0;
  for (HostBatch& b : stest::random_batches(77, ktest::under_sanitizer() ? 6 : 40, 40000)) {
    HostBatch want = b;
    run_ref(want);
    HostBatch got = b;
    DeviceBatch db(*dev_, got);
    db.run(*entry_, ctx_);
    stest::compare_batches(want, got, 1e-4, 0, "sweep batch " + std::to_string(batch++));
  }
}

// The same batch twice: identical outputs (no dependence on scheduling).
TEST_F(CudaKernelSample, Deterministic) {
  for (stest::NamedBatch& nb : stest::kernel_cases(ktest::under_sanitizer() ? 3000 : 32000, 7)) {
    HostBatch first = nb.batch, second = nb.batch;
    DeviceBatch d1(*dev_, first);
    d1.run(*entry_, ctx_);
    DeviceBatch d2(*dev_, second);
    d2.run(*entry_, ctx_);
    EXPECT_EQ(first.token, second.token) << nb.name;
    // Bitwise: a non-finite row reports its NaN logit, and NaN != NaN.
    ASSERT_EQ(first.logprob.size(), second.logprob.size()) << nb.name;
    EXPECT_EQ(0, std::memcmp(first.logprob.data(), second.logprob.data(), first.logprob.size() * sizeof(float)))
        << nb.name;
  }
}

// Chi-square of the GPU's draws over many counter-RNG seeds against the filtered softmax.
TEST_F(CudaKernelSample, DistributionMatchesFilteredSoftmax) {
  const int64_t V = 50;
  std::mt19937_64 rng(5);
  std::vector<float> z(static_cast<size_t>(V));
  stest::fill_normal(z.data(), V, rng, 1.3f);
  z[7] = z[8] = z[9] = 2.0f;
  struct P {
    double t;
    int32_t k;
    double p, mp;
  };
  for (const P& pp : {P{0.8, 0, 1.0, 0.0}, P{1.3, 7, 1.0, 0.0}, P{1.0, 0, 0.6, 0.0}, P{1.0, 20, 0.8, 0.0},
                      P{0.9, 0, 1.0, 0.1}, P{1.5, 30, 0.9, 0.05}}) {
    // Under a sanitizer only the agreement with the reference is checked, on fewer rows.
    const bool stats = !ktest::under_sanitizer();
    const int n = stats ? 40000 : 512;
    std::vector<RowParams> rows(n);
    for (int i = 0; i < n; ++i) {
      rows[i].temperature = pp.t;
      rows[i].top_k = pp.k;
      rows[i].top_p = pp.p;
      rows[i].min_p = pp.mp;
      rows[i].seed = 0xABCDEFull + static_cast<uint64_t>(i) * 104729u;
      rows[i].offset = static_cast<uint64_t>(i % 13);
    }
    HostBatch b(V, V, 0, rows);
    for (int i = 0; i < n; ++i) std::copy(z.begin(), z.end(), b.row(i));
    HostBatch want = b;
    run_ref(want);
    DeviceBatch db(*dev_, b);
    db.run(*entry_, ctx_);
    // Expected probabilities: the reference's survivors (checked against the host sampler's
    // semantics in test_sampling_ref.cc) weighted by the softmax.
    std::vector<double> probs(static_cast<size_t>(V), 0.0);
    {
      std::vector<int32_t> order(static_cast<size_t>(V));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t c) { return z[a] > z[c]; });
      const size_t k = (pp.k > 1 && pp.k < V) ? static_cast<size_t>(pp.k) : order.size();
      order.resize(k);
      const double zmax = z[order[0]];
      double total = 0.0;
      std::vector<double> w(static_cast<size_t>(V), 0.0);
      for (int32_t t : order) total += (w[t] = std::exp((z[t] - zmax) / pp.t));
      double cum = 0.0, sum = 0.0;
      for (int32_t t : order) {
        if (w[t] >= pp.mp) sum += (probs[t] = w[t]);
        cum += w[t];
        if (pp.p < 1.0 && cum >= pp.p * total) break;
      }
      for (double& v : probs) v /= sum;
    }
    std::vector<int64_t> counts(static_cast<size_t>(V), 0);
    int same = 0;
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(b.status[i], kSampleOk);
      ASSERT_TRUE(b.token[i] >= 0 && b.token[i] < V);
      ++counts[b.token[i]];
      same += b.token[i] == want.token[i];
    }
    EXPECT_EQ(same, n) << "GPU and reference draws (one semantics) must agree";
    if (!stats) continue;
    double chi2 = 0.0;
    int df = -1;
    for (int64_t t = 0; t < V; ++t) {
      if (probs[t] == 0.0) {
        EXPECT_EQ(counts[t], 0) << "token " << t;
        continue;
      }
      const double e = probs[t] * n;
      chi2 += (counts[t] - e) * (counts[t] - e) / e;
      ++df;
    }
    if (df > 0) EXPECT_LT(chi2, df + 8.0 * std::sqrt(2.0 * df) + 10.0) << "t " << pp.t << " k " << pp.k;
  }
}

// DeviceSampler on the GPU against the host Sampler (every token, logprobs, top-n, errors) and
// against DeviceSampler on the CPU device, on identical logits: the same tokens, sampled or not.
TEST_F(CudaKernelSample, DeviceSamplerMatchesHostSampler) {
  auto cpu = create_cpu_device();
  for (int64_t V : {7, 32000, 128256}) {
    std::mt19937_64 rng(V);
    std::vector<SamplingParams> ps;
    std::vector<std::vector<int32_t>> prompts, outs;
    for (int i = 0; i < 12; ++i) {
      SamplingParams p;
      p.temperature = i % 3 == 0 ? 0.0 : 0.8;
      p.top_k = i % 4 == 1 ? 50 : 0;
      p.top_p = i % 4 == 2 ? 0.9 : 1.0;
      p.min_p = i == 7 ? 0.05 : 0.0;
      p.logprobs = i % 2 ? (i % 5) * 5 : -1;
      p.repetition_penalty = i % 5 == 3 ? 1.15 : 1.0;
      p.frequency_penalty = i % 6 == 4 ? 0.3 : 0.0;
      p.has_seed = i == 5;
      p.seed = 4242;
      ps.push_back(p);
      std::vector<int32_t> pr, ou;
      for (int j = 0; j < 30; ++j) pr.push_back(static_cast<int32_t>(rng() % V));
      for (int j = 0; j < 9; ++j) ou.push_back(static_cast<int32_t>(rng() % V));
      prompts.push_back(pr);
      outs.push_back(ou);
    }
    const int64_t n = static_cast<int64_t>(ps.size());
    std::vector<float> logits(static_cast<size_t>(n * V));
    stest::fill_normal(logits.data(), n * V, rng, 2.5f);
    logits[static_cast<size_t>(4 * V + V / 2)] = std::nanf("");  // row 4 fails alone

    auto run_on = [&](Device& dev, std::vector<SampleResult>* out, std::vector<std::string>* errs) {
      std::vector<SequenceSamplingState> states;
      for (int64_t i = 0; i < n; ++i) {
        states.emplace_back(ps[i], prompts[i], 500 + i);
        for (int32_t t : outs[i]) states.back().append_output(t);
      }
      std::vector<const SamplingParams*> pp;
      std::vector<SequenceSamplingState*> ss;
      for (int64_t i = 0; i < n; ++i) {
        pp.push_back(&ps[i]);
        ss.push_back(&states[i]);
      }
      DeviceBuffer<float> d(dev, logits);
      DeviceSampler sampler(dev, 8, V);  // 12 rows: two chunks
      sampler.sample(d.get(), n, V, pp, ss, out, errs);
    };
    std::vector<SampleResult> gpu, cpu_out;
    std::vector<std::string> gpu_err, cpu_err;
    run_on(*dev_, &gpu, &gpu_err);
    run_on(*cpu, &cpu_out, &cpu_err);
    Sampler host;
    int differ = 0;
    for (int64_t i = 0; i < n; ++i) {
      SCOPED_TRACE("V=" + std::to_string(V) + " row " + std::to_string(i));
      EXPECT_EQ(gpu_err[i].empty(), cpu_err[i].empty());
      SequenceSamplingState st(ps[i], prompts[i], 500 + i);
      for (int32_t t : outs[i]) st.append_output(t);
      if (i == 4) {
        EXPECT_NE(gpu_err[i].find("non-finite logits: logit["), std::string::npos) << gpu_err[i];
        continue;
      }
      ASSERT_TRUE(gpu_err[i].empty()) << gpu_err[i];
      const SampleResult want = host.sample(logits.data() + i * V, V, ps[i], st);
      EXPECT_EQ(gpu[i].token, want.token);
      differ += gpu[i].token != cpu_out[i].token;
      if (ps[i].logprobs >= 0) {
        EXPECT_NEAR(gpu[i].logprob, cpu_out[i].logprob, 1e-4);
        EXPECT_NEAR(gpu[i].logprob, want.logprob, 1e-4);
      }
      ASSERT_EQ(gpu[i].top_logprobs.size(), want.top_logprobs.size());
      for (size_t j = 0; j < want.top_logprobs.size(); ++j) {
        EXPECT_EQ(gpu[i].top_logprobs[j].first, want.top_logprobs[j].first) << j;
        EXPECT_NEAR(gpu[i].top_logprobs[j].second, want.top_logprobs[j].second, 1e-4) << j;
      }
    }
    EXPECT_EQ(differ, 0) << "V=" << V;
  }
}

// Timings (printed, never asserted): the kernel alone and DeviceSampler end to end, vocab 128256.
// A measurement, not a test: it runs only with ELI_PRINT_TIMINGS=1 (speed belongs to bench/).
TEST_F(CudaKernelSample, Timings) {
  const char* want = std::getenv("ELI_PRINT_TIMINGS");
  if (want == nullptr || want[0] != '1') GTEST_SKIP() << "measurement only: set ELI_PRINT_TIMINGS=1";
  const int64_t V = 128256;
  struct Cfg {
    const char* name;
    int rows;
    RowParams p;
  };
  auto mk = [](double t, int32_t k, double p, int32_t nlp) {
    RowParams r;
    r.temperature = t;
    r.top_k = k;
    r.top_p = p;
    r.n_logprobs = nlp;
    return r;
  };
  const Cfg cfgs[] = {{"greedy", 1, mk(0.0, 0, 1.0, -1)},          {"greedy+logprobs20", 1, mk(0.0, 0, 1.0, 20)},
                      {"temperature 0.8", 1, mk(0.8, 0, 1.0, -1)},  {"top_k 50", 1, mk(0.8, 50, 1.0, -1)},
                      {"top_p 0.9", 1, mk(0.8, 0, 0.9, -1)},        {"top_k 50 top_p 0.9", 1, mk(0.8, 50, 0.9, -1)},
                      {"greedy x64", 64, mk(0.0, 0, 1.0, -1)},      {"top_p 0.9 x64", 64, mk(0.8, 0, 0.9, -1)}};
  std::mt19937_64 rng(1);
  for (const Cfg& c : cfgs) {
    std::vector<RowParams> rows(static_cast<size_t>(c.rows), c.p);
    for (int i = 0; i < c.rows; ++i) rows[i].seed = static_cast<uint64_t>(i) + 1;
    HostBatch b(V, V, c.p.n_logprobs > 0 ? c.p.n_logprobs : 0, rows);
    stest::fill_normal(b.logits.data(), static_cast<int64_t>(b.logits.size()), rng, 3.0f);
    DeviceBatch db(*dev_, b);
    std::vector<double> us;
    for (int it = 0; it < 40; ++it) {
      dev_->synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      entry_->fn(&db.a, ctx_);
      dev_->synchronize();
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(us.begin(), us.end());
    std::printf("[ TIME ] sample kernel V=%lld %-22s rows=%3d: median %8.1f us (incl. launch + sync)\n",
                static_cast<long long>(V), c.name, c.rows, us[us.size() / 2]);
  }
  // End to end through DeviceSampler, batch 1, greedy and top-p.
  for (double top_p : {1.0, 0.9}) {
    SamplingParams p;
    p.temperature = top_p < 1.0 ? 0.8 : 0.0;
    p.top_p = top_p;
    SequenceSamplingState st(p, {1, 2, 3}, 9);
    std::vector<float> logits(static_cast<size_t>(V));
    stest::fill_normal(logits.data(), V, rng, 3.0f);
    DeviceBuffer<float> d(*dev_, logits);
    DeviceSampler sampler(*dev_, 256, V);
    std::vector<SampleResult> out;
    std::vector<std::string> errs;
    std::vector<double> us;
    for (int it = 0; it < 40; ++it) {
      const auto t0 = std::chrono::steady_clock::now();
      sampler.sample(d.get(), 1, V, {&p}, {&st}, &out, &errs);
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(us.begin(), us.end());
    std::printf("[ TIME ] DeviceSampler::sample V=%lld batch 1 %s: median %8.1f us\n", static_cast<long long>(V),
                top_p < 1.0 ? "top_p 0.9" : "greedy", us[us.size() / 2]);
  }
}

}  // namespace
}  // namespace eli
