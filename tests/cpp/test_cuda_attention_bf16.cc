// tests/cpp/test_cuda_attention_bf16.cc: the CUDA 16-bit-KV-cache attention (Op::kAttention, CUDA,
// bf16 and f16: split-K decode and tensor-core prefill, kernels/cuda/attention_*.cu) against
// attention_ref_bf16 / attention_ref_f16 on ragged paged batches. Every case runs once per cache
// type (the suites are parametrized by it; "16-bit" q / out below means the cache's type): decode
// batches (1..64 sequences, contexts 1..5000, block sizes 16 / 5 / 1 / 64, with, without and with a
// too-small workspace), speculative multi-token decode, prefill of single sequences 1..2100 tokens
// and ragged batches mixing prefill chunks at nonzero start positions with decode tokens; GQA
// groups 1/4/8 and MQA, head_dim 64/128/80/96 plus odd ones (20, 33, 8, 192, 256), sliding windows,
// q f32 / 16-bit, out f32 / 16-bit, padded and misaligned q / out / cache pointers (scalar paths),
// queries that see nothing (zero rows), unknown host bounds, and CUDA-graph capture. Split-K decode
// combines its splits in the kernel through arrival counters that every launch must leave at zero:
// tests reuse workspaces across shapes and launches, use more workspaces than the launcher has
// counter slots, and replay a graph captured with upper bounds while the device-side contexts
// change (empty splits).
//
// Every device output (and workspace) is poisoned with NaN first; padding columns must keep the
// poison bits. Tolerance: max |err| <= tol.max_rel * max |ref| and relative L2 error <=
// tol.l2_rel, with (2e-2, 1e-2) for bf16 and (4e-3, 2e-3) for f16 (3 more mantissa bits: P and
// the outputs round 8 times more finely); where the reference is exactly zero (no visible
// position) the output must be 0. The reference always writes f32 (so 16-bit-out rounding is part
// of the measured error) and reads exactly the q bits the device reads. Suites start with
// CudaKernelAttn (device_run.sh filter 'CudaKernel*'; full names CudaKernelAttn/<suite>.<test>/<cache
// dtype>); they skip without a GPU, except the argument checks that need no device (a q or out of
// the other 16-bit type than the cache's is refused).
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "eli/error.h"
#include "kernels/cuda_tuning_knobs.h"
#include "kernels/ops.h"
#include "kernels/ref/float_convert.h"
#include "kernels/registry.h"
#include "runtime/device/device.h"
#include "runtime/device/pooled_device.h"
#include "runtime/device/step_graph.h"
#include "tests/cpp/device_test_util.h"

namespace eli {
namespace {

constexpr uint32_t kPoisonF32 = 0x7fc00badu;  // a quiet NaN
constexpr uint16_t kPoisonBf16 = 0x7fc1u;     // a quiet NaN
constexpr uint16_t kPoisonF16 = 0x7e01u;      // a quiet NaN

// The 16-bit cache types under test, and their bits <-> f32.
uint16_t poison16(DType dt) { return dt == DType::kF16 ? kPoisonF16 : kPoisonBf16; }
uint16_t to16(DType dt, float f) { return dt == DType::kF16 ? f32_to_f16(f) : f32_to_bf16(f); }
float from16(DType dt, uint16_t h) { return dt == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h); }

// Error bounds of a cache type (see the top of the file).
struct Tolerance {
  double max_rel, l2_rel;
};
Tolerance tolerance(DType dt) { return dt == DType::kF16 ? Tolerance{4e-3, 2e-3} : Tolerance{2e-2, 1e-2}; }

// The element type of a case's q or out: f32, or the cache's 16-bit type.
enum class Elt { kF32, kHalf };

// One sequence: context_len cached positions, n_new query tokens at positions first_pos, +1, ...
// (default first_pos: context_len - n_new, i.e. the last n_new positions of the context).
struct Seq {
  int32_t ctx, n_new;
  int32_t first_pos = INT32_MIN;
};

struct AttnCase {
  std::string name;
  std::vector<Seq> seqs;
  int64_t nh = 8, nkv = 2, hd = 128, bs = 16, window = 0;
  Elt q_dtype = Elt::kHalf, out_dtype = Elt::kHalf;
  int64_t q_pad = 0, out_pad = 0;    // extra elements per row of q / out
  bool workspace = true;             // attention_workspace_bytes(T, nh, hd) of scratch
  size_t ws_bytes = 0;               // nonzero: this many bytes of scratch instead
  bool bounds = true;                // pass max_query_len / max_context_len (false: 0, unknown)
  bool ctx_bound = true;             // with bounds: pass max_context_len too (false: 0)
  int64_t mql = 0;                   // nonzero: max_query_len to pass (an upper bound)
  bool misalign_q = false, misalign_out = false, misalign_kv = false;  // pointers + 1 element
  bool reverse_positions = false;    // a sequence's queries in descending position order
  void* ws_ptr = nullptr;            // nonzero: this caller-owned workspace of ws_bytes (poisoned here)
};

// The batch of a case on the host: cu_seqlens, positions, context_lens and a block table whose
// blocks come from a shuffled pool; unused table entries are -1 (must never be read).
struct Batch {
  std::vector<int32_t> cu{0}, pos, ctx, tables;
  int64_t mbps = 1, n_blocks = 0, max_q = 0, max_ctx = 0;
  int64_t n_tokens() const { return static_cast<int64_t>(pos.size()); }
  int64_t n_seqs() const { return static_cast<int64_t>(ctx.size()); }
};

Batch make_batch(const AttnCase& c, std::mt19937& rng) {
  Batch b;
  int64_t total = 0;
  for (const Seq& s : c.seqs) {
    const int64_t nb = (s.ctx + c.bs - 1) / c.bs;
    b.mbps = std::max(b.mbps, nb + 1);  // a spare column of -1
    total += nb;
  }
  b.n_blocks = total + 3;
  std::vector<int32_t> ids(static_cast<size_t>(b.n_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  b.tables.assign(static_cast<size_t>(c.seqs.size() * b.mbps), -1);
  size_t next = 0;
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    const Seq& q = c.seqs[s];
    const int64_t nb = (q.ctx + c.bs - 1) / c.bs;
    for (int64_t j = 0; j < nb; ++j) b.tables[s * b.mbps + j] = ids[next++];
    b.ctx.push_back(q.ctx);
    const int32_t first = q.first_pos == INT32_MIN ? q.ctx - q.n_new : q.first_pos;
    std::vector<int32_t> p(static_cast<size_t>(q.n_new));
    for (int32_t i = 0; i < q.n_new; ++i) p[i] = first + i;
    if (c.reverse_positions) std::reverse(p.begin(), p.end());
    b.pos.insert(b.pos.end(), p.begin(), p.end());
    b.cu.push_back(static_cast<int32_t>(b.pos.size()));
    b.max_q = std::max<int64_t>(b.max_q, q.n_new);
    b.max_ctx = std::max<int64_t>(b.max_ctx, q.ctx);
  }
  return b;
}

std::vector<uint16_t> random16(DType dt, size_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<uint16_t> v(n);
  for (uint16_t& x : v) x = to16(dt, d(rng));
  return v;
}

float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::string dtype_param_name(const ::testing::TestParamInfo<DType>& i) { return dtype_name(i.param); }

// Parametrized by the cache type (bf16 or f16).
class CudaKernelAttn16 : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    dev_ = create_cuda_device(0);
    ctx_.stream = dev_->default_stream().native();
    cuda_ = find_kernel(Op::kAttention, DeviceKind::kCUDA, cache_);
    ref_ = find_kernel(Op::kAttention, DeviceKind::kCPU, cache_, "ref");
    ASSERT_NE(cuda_, nullptr);
    ASSERT_NE(ref_, nullptr);
  }

  // A case's q / out element type as a DType.
  DType dtype(Elt e) const { return e == Elt::kHalf ? cache_ : DType::kF32; }

  // Host data of a case (the q the device reads, in its dtype; caches in the cache type).
  struct Data {
    Batch b;
    int64_t q_stride = 0, out_stride = 0, q_off = 0, out_off = 0, kv_off = 0;
    std::vector<float> qf;      // (q_off + T * q_stride) f32 values (q_dtype f32)
    std::vector<uint16_t> qh;   // the same rounded to the cache type (q_dtype 16-bit)
    std::vector<uint16_t> kc, vc;  // (kv_off + NB * B * nkv * hd)
  };

  Data make_data(const AttnCase& c) {
    Data d;
    d.b = make_batch(c, rng_);
    const int64_t T = d.b.n_tokens(), row = c.nh * c.hd;
    d.q_stride = row + c.q_pad;
    d.out_stride = row + c.out_pad;
    d.q_off = c.misalign_q ? 1 : 0;
    d.out_off = c.misalign_out ? 1 : 0;
    d.kv_off = c.misalign_kv ? 1 : 0;
    d.qf = random_floats(static_cast<size_t>(d.q_off + T * d.q_stride), rng_, -2.f, 2.f);
    d.qh.resize(d.qf.size());
    for (size_t i = 0; i < d.qf.size(); ++i) {
      d.qh[i] = to16(cache_, d.qf[i]);
      if (c.q_dtype == Elt::kHalf) d.qf[i] = from16(cache_, d.qh[i]);  // one set of values either way
    }
    const size_t cache = static_cast<size_t>(d.kv_off + d.b.n_blocks * c.bs * c.nkv * c.hd);
    d.kc = random16(cache_, cache, rng_, -2.f, 2.f);
    d.vc = random16(cache_, cache, rng_, -1.f, 1.f);
    return d;
  }

  AttentionArgs host_args(const AttnCase& c, const Data& d, std::vector<float>& ref) const {
    const void* q = c.q_dtype == Elt::kHalf ? static_cast<const void*>(d.qh.data() + d.q_off)
                                            : static_cast<const void*>(d.qf.data() + d.q_off);
    AttentionArgs h{ref.data(), q, d.kc.data() + d.kv_off, d.vc.data() + d.kv_off, d.b.cu.data(), d.b.pos.data(),
                    d.b.ctx.data(), d.b.tables.data(), d.b.n_seqs(), c.nh, c.nkv, c.hd, c.bs, d.b.mbps,
                    d.q_stride, c.nh * c.hd, c.window, 1.0f / std::sqrt(static_cast<float>(c.hd))};
    h.q_dtype = dtype(c.q_dtype);
    h.out_dtype = DType::kF32;
    return h;
  }

  // Runs the case on the device (poisoned output and workspace) and checks it against the reference.
  void run_case(const AttnCase& c) {
    SCOPED_TRACE(c.name);
    Data d = make_data(c);
    const int64_t T = d.b.n_tokens(), row = c.nh * c.hd;
    std::vector<float> ref(static_cast<size_t>(std::max<int64_t>(T, 1) * row), 0.f);
    AttentionArgs h = host_args(c, d, ref);
    ref_->fn(&h, ExecContext{});

    DeviceBuffer<float> dqf(*dev_, d.qf);
    DeviceBuffer<uint16_t> dqh(*dev_, d.qh), dkc(*dev_, d.kc), dvc(*dev_, d.vc);
    DeviceBuffer<int32_t> dcu(*dev_, d.b.cu), dpos(*dev_, d.b.pos), dctx(*dev_, d.b.ctx), dtab(*dev_, d.b.tables);
    const size_t out_n = static_cast<size_t>(d.out_off + T * d.out_stride);
    DeviceBuffer<float> dof(*dev_, std::vector<float>(out_n, bits_f32(kPoisonF32)));
    DeviceBuffer<uint16_t> doh(*dev_, std::vector<uint16_t>(out_n, poison16(cache_)));
    size_t ws_bytes = c.ws_bytes ? c.ws_bytes : attention_workspace_bytes(T, c.nh, c.hd);
    if (!c.workspace) ws_bytes = 0;
    DeviceBuffer<float> dws(*dev_, std::vector<float>(c.ws_ptr ? 1 : ws_bytes / 4 + 1, bits_f32(kPoisonF32)));
    void* ws = dws.get();
    if (c.ws_ptr != nullptr) {
      ws = c.ws_ptr;
      const std::vector<float> poison(ws_bytes / 4, bits_f32(kPoisonF32));
      if (!poison.empty()) dev_->copy_host_to_device(ws, poison.data(), poison.size() * 4);
    }

    const bool out_half = c.out_dtype == Elt::kHalf;
    AttentionArgs a = h;
    a.out = out_half ? static_cast<void*>(doh.get() + d.out_off) : static_cast<void*>(dof.get() + d.out_off);
    a.q = c.q_dtype == Elt::kHalf ? static_cast<const void*>(dqh.get() + d.q_off)
                                  : static_cast<const void*>(dqf.get() + d.q_off);
    a.k_cache = dkc.get() + d.kv_off;
    a.v_cache = dvc.get() + d.kv_off;
    a.cu_seqlens = dcu.get();
    a.positions = dpos.get();
    a.context_lens = dctx.get();
    a.block_tables = dtab.get();
    a.out_stride = d.out_stride;
    a.out_dtype = dtype(c.out_dtype);
    a.max_query_len = c.bounds ? (c.mql ? c.mql : d.b.max_q) : 0;
    a.max_context_len = c.bounds && c.ctx_bound ? d.b.max_ctx : 0;
    a.workspace = c.workspace ? ws : nullptr;
    a.workspace_bytes = ws_bytes;
    cuda_->fn(&a, ctx_);
    dev_->synchronize();

    // Device output as f32 (poison kept as NaN bits), then the checks.
    std::vector<float> got(out_n);
    std::vector<uint32_t> bits(out_n);
    if (out_half) {
      std::vector<uint16_t> o = doh.download();
      for (size_t i = 0; i < out_n; ++i) {
        got[i] = from16(cache_, o[i]);
        bits[i] = o[i] == poison16(cache_) ? kPoisonF32 : 0u;
      }
    } else {
      got = dof.download();
      for (size_t i = 0; i < out_n; ++i) std::memcpy(&bits[i], &got[i], 4);
    }
    check(c, d, ref, got, bits);
  }

  void check(const AttnCase& c, const Data& d, const std::vector<float>& ref, const std::vector<float>& got,
             const std::vector<uint32_t>& bits) const {
    const Tolerance tol = tolerance(cache_);
    const int64_t T = d.b.n_tokens(), row = c.nh * c.hd;
    double max_ref = 0, max_err = 0, err2 = 0, ref2 = 0;
    size_t non_finite = 0, nonzero_where_zero = 0, padding_written = 0;
    int64_t worst = -1;
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t j = 0; j < d.out_stride; ++j) {
        const size_t gi = static_cast<size_t>(d.out_off + t * d.out_stride + j);
        if (j >= row) {
          if (bits[gi] != kPoisonF32) ++padding_written;
          continue;
        }
        const double r = ref[static_cast<size_t>(t * row + j)], g = got[gi];
        if (!std::isfinite(g)) {
          ++non_finite;
          continue;
        }
        if (r == 0.0 && g != 0.0) ++nonzero_where_zero;
        const double e = std::fabs(g - r);
        if (e > max_err) {
          max_err = e;
          worst = t * row + j;
        }
        err2 += e * e;
        ref2 += r * r;
        max_ref = std::max(max_ref, std::fabs(r));
      }
    }
    if (d.out_off && bits[0] != kPoisonF32) ++padding_written;
    EXPECT_EQ(non_finite, 0u) << "non-finite outputs (unwritten rows keep the NaN poison)";
    EXPECT_EQ(nonzero_where_zero, 0u) << "queries with no visible position must give exact zeros";
    EXPECT_EQ(padding_written, 0u) << "elements outside the output rows were written";
    EXPECT_LE(max_err, tol.max_rel * max_ref)
        << "max |err| " << max_err << " at token " << worst / std::max<int64_t>(row, 1) << " elem "
        << worst % std::max<int64_t>(row, 1) << ", max |ref| " << max_ref << " (" << dtype_name(cache_) << " cache)";
    EXPECT_LE(std::sqrt(err2), tol.l2_rel * std::sqrt(ref2))
        << "relative L2 error " << std::sqrt(err2 / std::max(ref2, 1e-300)) << " (" << dtype_name(cache_) << " cache)";
  }

  // Converts a case's host output (16-bit bits) to f32 values and poison markers for check.
  void from16_out(const std::vector<uint16_t>& o, std::vector<float>* got, std::vector<uint32_t>* bits) const {
    got->resize(o.size());
    bits->resize(o.size());
    for (size_t i = 0; i < o.size(); ++i) {
      (*got)[i] = from16(cache_, o[i]);
      (*bits)[i] = o[i] == poison16(cache_) ? kPoisonF32 : 0u;
    }
  }

  const DType cache_ = GetParam();
  std::unique_ptr<Device> dev_;
  ExecContext ctx_;
  const KernelEntry* cuda_ = nullptr;
  const KernelEntry* ref_ = nullptr;
  std::mt19937 rng_{20240611};
};

std::vector<Seq> decode_seqs(std::initializer_list<int32_t> ctxs, int32_t n_new = 1) {
  std::vector<Seq> v;
  for (int32_t c : ctxs) v.push_back({c, n_new});
  return v;
}

// ---- decode (max_query_len <= 4): split-K ---------------------------------------------------

TEST_P(CudaKernelAttn16, DecodeLongContextLlamaShapes) {
  // Llama-3.1-8B (hd 128) and Llama-3.2-1B (hd 64) shapes, batch 1: many splits, and one split.
  for (int64_t hd : {128, 64}) {
    for (bool ws : {true, false}) {
      AttnCase c;
      c.name = "decode ctx 4096 hd " + std::to_string(hd) + (ws ? " ws" : " no ws");
      c.seqs = decode_seqs({4096});
      c.nh = 32;
      c.nkv = 8;
      c.hd = hd;
      c.workspace = ws;
      run_case(c);
    }
  }
  AttnCase c;
  c.name = "decode ctx 4097 hd 128 q f32 out f32";
  c.seqs = decode_seqs({4097});
  c.nh = 32;
  c.nkv = 8;
  c.q_dtype = Elt::kF32;
  c.out_dtype = Elt::kF32;
  run_case(c);
}

TEST_P(CudaKernelAttn16, DecodeBatchesOfManySequences) {
  std::uniform_int_distribution<int32_t> len(1, 5000);
  for (int n : {1, 3, 17, 64}) {
    for (int64_t bs : {16, 5}) {
      std::vector<Seq> seqs;
      for (int i = 0; i < n; ++i) seqs.push_back({len(rng_), 1});
      seqs[0].ctx = 1;  // a one-position context
      AttnCase c;
      c.name = "decode batch " + std::to_string(n) + " bs " + std::to_string(bs);
      c.seqs = seqs;
      c.nh = 8;
      c.nkv = 2;
      c.hd = n == 64 ? 64 : 128;
      c.bs = bs;
      c.q_dtype = n % 2 ? Elt::kF32 : Elt::kHalf;
      c.out_dtype = bs == 5 ? Elt::kF32 : Elt::kHalf;
      run_case(c);
      c.name += " no ws";
      c.workspace = false;
      run_case(c);
    }
  }
}

TEST_P(CudaKernelAttn16, DecodeRingDepthsBothMatch) {
  // The decode kernel's K/V ring is 2 or 3 stages deep, chosen per device (the deeper one where it
  // keeps the occupancy); the kAttnStages knob forces each, so both run here whatever the GPU.
  const int saved = cuda::knob(cuda::Knob::kAttnStages);
  std::uniform_int_distribution<int32_t> len(1, 3000);
  for (int stages : {2, 3}) {
    cuda::set_knob(cuda::Knob::kAttnStages, stages);
    for (int64_t hd : {128, 64, 256}) {
      std::vector<Seq> seqs;
      for (int i = 0; i < 9; ++i) seqs.push_back({len(rng_), 1});
      seqs[3].ctx = 1;
      AttnCase c;
      c.name = "decode ring " + std::to_string(stages) + " hd " + std::to_string(hd);
      c.seqs = seqs;
      c.nh = 16;
      c.nkv = hd == 64 ? 2 : 4;
      c.hd = hd;
      c.bs = 16;
      run_case(c);
      c.name += " multi-token";
      for (Seq& q : c.seqs) q.n_new = std::min(q.ctx, 3);
      run_case(c);
    }
  }
  cuda::set_knob(cuda::Knob::kAttnStages, saved);
}

TEST_P(CudaKernelAttn16, DecodeGroupsAndHeadDims) {
  struct H {
    int64_t nh, nkv;
  };
  // group 1, 4, 8 and MQA (group 12: two query chunks of 8)
  for (H hs : {H{4, 4}, H{8, 2}, H{16, 2}, H{12, 1}}) {
    for (int64_t hd : {64, 128, 80, 96}) {
      AttnCase c;
      c.name = "decode nh " + std::to_string(hs.nh) + " nkv " + std::to_string(hs.nkv) + " hd " + std::to_string(hd);
      c.seqs = decode_seqs({1, 2, 7, 16, 17, 100, 1000, 2345});
      c.nh = hs.nh;
      c.nkv = hs.nkv;
      c.hd = hd;
      c.bs = hd == 80 ? 5 : 16;
      c.q_pad = 3;   // odd q stride: scalar q reads
      c.out_pad = 5;
      c.q_dtype = hd == 96 ? Elt::kF32 : Elt::kHalf;
      c.out_dtype = hd == 64 ? Elt::kF32 : Elt::kHalf;
      run_case(c);
    }
  }
}

TEST_P(CudaKernelAttn16, DecodeOddHeadDimsAndScalarPaths) {
  // hd 20 and 33 (not a multiple of 8: element loads; odd: single-element stores), 8 (one live
  // chunk), 192 and 256 (32 threads a row), misaligned cache / q / out pointers, block sizes 1,
  // 3, 5, 7 and 64.
  struct V {
    int64_t hd, bs;
    bool mis_kv, mis_q, mis_out;
  };
  for (V v : {V{20, 16, false, false, false}, V{8, 1, false, false, false}, V{192, 16, false, false, false},
              V{256, 64, false, false, false}, V{128, 16, true, false, false}, V{64, 16, false, true, true},
              V{256, 5, true, true, true}, V{36, 3, false, false, true}, V{33, 7, false, false, false}}) {
    for (Elt qd : {Elt::kHalf, Elt::kF32}) {
      AttnCase c;
      c.name = "decode hd " + std::to_string(v.hd) + " bs " + std::to_string(v.bs) + " mis " +
               std::to_string(v.mis_kv) + std::to_string(v.mis_q) + std::to_string(v.mis_out) + " q " +
               dtype_name(dtype(qd));
      c.seqs = decode_seqs({3, 64, 513, 3000});
      c.nh = 6;
      c.nkv = 2;
      c.hd = v.hd;
      c.bs = v.bs;
      c.misalign_kv = v.mis_kv;
      c.misalign_q = v.mis_q;
      c.misalign_out = v.mis_out;
      c.q_dtype = qd;
      c.out_dtype = qd == Elt::kF32 ? Elt::kHalf : Elt::kF32;
      run_case(c);
    }
  }
}

TEST_P(CudaKernelAttn16, DecodeMultiTokenAndWindows) {
  // Speculative / short chunks: 1..4 queries per sequence (causal among themselves), with
  // sliding windows, GQA 4 (16 queries per kv head: two chunks).
  for (int64_t window : {0, 1, 37, 1000}) {
    AttnCase c;
    c.name = "decode multi-token window " + std::to_string(window);
    c.seqs = {{3, 3}, {4, 4}, {50, 2}, {3000, 4}, {4500, 1}, {129, 4}};
    c.nh = 12;
    c.nkv = 3;
    c.hd = 128;
    c.window = window;
    c.q_dtype = window % 2 ? Elt::kF32 : Elt::kHalf;
    run_case(c);
    c.name += " no ws";
    c.workspace = false;
    run_case(c);
  }
}

TEST_P(CudaKernelAttn16, DecodeWorkspaceAndBoundsEdgeCases) {
  AttnCase c;
  c.seqs = decode_seqs({4096, 1500, 77});
  c.nh = 32;
  c.nkv = 8;
  c.hd = 128;
  const size_t per_split = static_cast<size_t>(3) * 32 * (128 + 2) * sizeof(float);
  c.name = "workspace for 3 splits";
  c.ws_bytes = per_split * 3 + 17;
  run_case(c);
  c.name = "workspace for 1 split";
  c.ws_bytes = per_split + 5;
  run_case(c);
  c.name = "max_query_len 4 over 1-token sequences, max_context_len unknown";
  c.ws_bytes = 0;
  c.mql = 4;
  c.ctx_bound = false;
  run_case(c);
  // Queries that see nothing (empty context: zero rows), positions past the context, an empty
  // sequence in the middle of the batch.
  AttnCase z;
  z.name = "decode zero rows and empty sequences";
  z.seqs = {{0, 1, 0}, {10, 1, 20}, {5, 0}, {300, 1}, {0, 2, 0}, {9, 2, 40}};
  z.nh = 8;
  z.nkv = 2;
  z.hd = 64;
  run_case(z);
  z.name += " no ws";
  z.workspace = false;
  run_case(z);
}

TEST_P(CudaKernelAttn16, DecodeSplitCountersAcrossWorkspacesAndLaunches) {
  // The split counters of the in-kernel combine: shapes with different split counts, groups and
  // workspace layouts run back to back on the same (poisoned) workspaces, over more workspaces
  // than the launcher has counter slots (16), round robin, so that slots are evicted and reused.
  // A launch that left a counter nonzero would make a later one combine early or never (NaN
  // poison in the output).
  struct Shape {
    std::vector<Seq> seqs;
    int64_t nh, nkv, hd, bs;
  };
  const std::vector<Shape> shapes = {
      {decode_seqs({4096}), 32, 8, 128, 16},
      {decode_seqs({3000, 77, 1}), 32, 8, 64, 16},
      {decode_seqs({1000, 999, 5, 2000}, 2), 12, 3, 128, 5},  // two tokens a sequence: chunks of 8
      {decode_seqs({700}), 8, 1, 256, 16},
      {{{2500, 1}, {0, 1, 0}}, 16, 2, 96, 7},  // and a query that sees nothing
  };
  const size_t ws_bytes = attention_workspace_bytes(8, 32, 256);  // enough for every shape
  std::vector<std::unique_ptr<DeviceBuffer<float>>> ws;
  for (int i = 0; i < 20; ++i) ws.push_back(std::make_unique<DeviceBuffer<float>>(*dev_, ws_bytes / 4));
  for (int round = 0; round < 3; ++round) {
    for (size_t w = 0; w < ws.size(); ++w) {
      const Shape& sh = shapes[(w + static_cast<size_t>(round)) % shapes.size()];
      AttnCase c;
      c.name = "workspace " + std::to_string(w) + " round " + std::to_string(round) + " hd " + std::to_string(sh.hd);
      c.seqs = sh.seqs;
      c.nh = sh.nh;
      c.nkv = sh.nkv;
      c.hd = sh.hd;
      c.bs = sh.bs;
      c.q_dtype = w % 2 ? Elt::kF32 : Elt::kHalf;
      c.out_dtype = round == 1 ? Elt::kF32 : Elt::kHalf;
      c.ws_ptr = ws[w]->get();
      c.ws_bytes = ws_bytes;
      run_case(c);
      if (HasFailure()) return;
    }
  }
}

// ---- prefill (max_query_len > 4 or unknown): tensor cores -----------------------------------

TEST_P(CudaKernelAttn16, PrefillSingleSequences) {
  for (int32_t n : {1, 5, 63, 64, 65, 129, 700}) {
    for (int64_t hd : {128, 64}) {
      AttnCase c;
      c.name = "prefill " + std::to_string(n) + " hd " + std::to_string(hd);
      c.seqs = {{n, n}};
      c.nh = 8;
      c.nkv = 2;
      c.hd = hd;
      c.bounds = n % 2 == 0;  // unknown bounds half of the time (1-token prefill runs the prefill kernel)
      c.q_dtype = n % 3 ? Elt::kHalf : Elt::kF32;
      c.out_dtype = hd == 64 ? Elt::kF32 : Elt::kHalf;
      run_case(c);
    }
  }
}

TEST_P(CudaKernelAttn16, PrefillLongSequence) {
  for (int64_t hd : {64, 128}) {
    AttnCase c;
    c.name = "prefill 2100 hd " + std::to_string(hd);
    c.seqs = {{2100, 2100}};
    c.nh = 2;
    c.nkv = 1;
    c.hd = hd;
    run_case(c);
  }
  AttnCase w;
  w.name = "prefill 1500 window 256";
  w.seqs = {{1500, 1500}};
  w.nh = 4;
  w.nkv = 2;
  w.hd = 128;
  w.window = 256;
  w.bs = 5;
  run_case(w);
}

TEST_P(CudaKernelAttn16, PrefillRaggedBatches) {
  // Prefill chunks at nonzero start positions (chunked prefill / prefix caching) mixed with
  // decode tokens, queries past their context and empty ones, shuffled blocks of odd size.
  const std::vector<Seq> seqs = {{300, 300}, {1000, 77}, {50, 1}, {4000, 1}, {129, 64},
                                 {0, 1, 0},  {5, 0},     {70, 23}, {17, 17}, {40, 6, 100}};
  for (int64_t window : {0, 100, 1}) {
    for (int64_t bs : {16, 5}) {
      AttnCase c;
      c.name = "ragged window " + std::to_string(window) + " bs " + std::to_string(bs);
      c.seqs = seqs;
      c.nh = 8;
      c.nkv = 2;
      c.hd = 128;
      c.bs = bs;
      c.window = window;
      c.q_dtype = bs == 5 ? Elt::kF32 : Elt::kHalf;
      c.out_dtype = window == 100 ? Elt::kF32 : Elt::kHalf;
      c.q_pad = bs == 5 ? 4 : 8;
      c.out_pad = 3;
      c.bounds = window != 1;
      run_case(c);
    }
  }
  AttnCase r;
  r.name = "ragged, positions in descending order";
  r.seqs = seqs;
  r.reverse_positions = true;
  r.nh = 4;
  r.nkv = 1;
  r.hd = 64;
  run_case(r);
}

TEST_P(CudaKernelAttn16, MixedBatchesSplitBetweenDecodeAndPrefillKernels) {
  // Continuous batching's mixed steps: hundreds of decode rows beside a few prefill chunks. With
  // enough (sequence, kv head) pairs the launcher sends the one-query sequences to the decode
  // kernel and the rest to the prefill kernel; every sequence must come out as the reference's,
  // including queries past their context, empty sequences, windows and sequences of 2..4 queries
  // (the prefill kernel's).
  std::uniform_int_distribution<int32_t> len(1, 900), q(2, 40);
  for (int64_t window : {0, 128}) {
    for (int64_t nkv : {8, 2}) {
      std::vector<Seq> seqs;
      for (int i = 0; i < 300; ++i) {
        const int32_t ctx = len(rng_);
        if (i % 50 == 7) {
          const int32_t n = std::min(ctx, q(rng_));
          seqs.push_back({ctx, n});             // a prefill chunk ending at its context
        } else if (i % 50 == 11) {
          seqs.push_back({ctx, 3});             // a short multi-query sequence (prefill kernel)
        } else if (i == 13) {
          seqs.push_back({5, 0});               // no queries
        } else if (i == 17) {
          seqs.push_back({0, 1, 0});            // a query with an empty context
        } else {
          seqs.push_back({ctx, 1});             // a decode row
        }
      }
      AttnCase c;
      c.name = "mixed 300 seqs nkv " + std::to_string(nkv) + " window " + std::to_string(window);
      c.seqs = seqs;
      c.nh = 32;
      c.nkv = nkv;
      c.hd = 128;
      c.window = window;
      c.out_dtype = window ? Elt::kF32 : Elt::kHalf;
      run_case(c);
    }
  }
}

TEST_P(CudaKernelAttn16, PrefillGroupsAndHeadDims) {
  struct H {
    int64_t nh, nkv;
  };
  const std::vector<Seq> seqs = {{200, 200}, {333, 90}, {20, 1}, {64, 64}};
  for (H hs : {H{4, 4}, H{8, 2}, H{16, 2}, H{8, 1}}) {
    for (int64_t hd : {64, 128, 80, 96, 20, 8, 33, 192, 256}) {
      AttnCase c;
      c.name = "prefill nh " + std::to_string(hs.nh) + " nkv " + std::to_string(hs.nkv) + " hd " + std::to_string(hd);
      c.seqs = seqs;
      c.nh = hs.nh;
      c.nkv = hs.nkv;
      c.hd = hd;
      c.bs = hd == 80 ? 5 : 16;
      c.q_dtype = hd % 3 ? Elt::kHalf : Elt::kF32;
      c.out_dtype = hd > 100 ? Elt::kF32 : Elt::kHalf;
      c.q_pad = hs.nkv == 1 ? 3 : 0;
      c.out_pad = hs.nkv == 1 ? 1 : 0;
      c.window = hs.nh == 16 ? 50 : 0;
      run_case(c);
    }
  }
}

TEST_P(CudaKernelAttn16, PrefillMisalignedPointers) {
  for (int i = 0; i < 3; ++i) {
    AttnCase c;
    c.name = "prefill misaligned " + std::to_string(i);
    c.seqs = {{150, 150}, {90, 33}};
    c.nh = 4;
    c.nkv = 2;
    c.hd = i == 2 ? 64 : 128;
    c.misalign_kv = i == 0;
    c.misalign_q = i >= 1;
    c.misalign_out = i >= 1;
    c.q_dtype = i == 1 ? Elt::kF32 : Elt::kHalf;
    c.out_dtype = i == 2 ? Elt::kF32 : Elt::kHalf;
    run_case(c);
  }
}

// ---- CUDA graphs ----------------------------------------------------------------------------

TEST_P(CudaKernelAttn16, CapturedInCudaGraph) {
  if (!graphs_supported()) GTEST_SKIP() << "no graph support";
  for (bool decode : {true, false}) {
    SCOPED_TRACE(decode ? "decode (split-K + combine)" : "prefill");
    AttnCase c;
    c.seqs = decode ? decode_seqs({4096, 100}) : std::vector<Seq>{{300, 300}, {500, 40}};
    c.nh = 8;
    c.nkv = 2;
    c.hd = 128;
    Data d = make_data(c);
    const int64_t T = d.b.n_tokens(), row = c.nh * c.hd;
    DeviceBuffer<uint16_t> dq(*dev_, d.qh), dkc(*dev_, d.kc), dvc(*dev_, d.vc);
    DeviceBuffer<int32_t> dcu(*dev_, d.b.cu), dpos(*dev_, d.b.pos), dctx(*dev_, d.b.ctx), dtab(*dev_, d.b.tables);
    DeviceBuffer<uint16_t> dout(*dev_, std::vector<uint16_t>(static_cast<size_t>(T * row), poison16(cache_)));
    const size_t ws_bytes = attention_workspace_bytes(T, c.nh, c.hd);
    DeviceBuffer<float> dws(*dev_, ws_bytes / 4);
    std::vector<float> ref(static_cast<size_t>(T * row));
    AttentionArgs a = host_args(c, d, ref);
    a.out = dout.get();
    a.q = dq.get();
    a.k_cache = dkc.get();
    a.v_cache = dvc.get();
    a.cu_seqlens = dcu.get();
    a.positions = dpos.get();
    a.context_lens = dctx.get();
    a.block_tables = dtab.get();
    a.out_stride = row;
    a.out_dtype = cache_;
    a.max_query_len = d.b.max_q;
    a.max_context_len = d.b.max_ctx;
    a.workspace = dws.get();
    a.workspace_bytes = ws_bytes;
    cuda_->fn(&a, ctx_);  // warm-up, as the engine does before capture
    dev_->synchronize();
    std::unique_ptr<StepGraph> graph = capture_step_graph(ctx_.stream, [&] { cuda_->fn(&a, ctx_); });
    // New queries after capture: the replay must read them.
    for (size_t i = 0; i < d.qh.size(); ++i) {
      d.qh[i] = to16(cache_, -from16(cache_, d.qh[i]) * 0.5f);
      d.qf[i] = from16(cache_, d.qh[i]);
    }
    dq.upload(d.qh);
    dout.upload(std::vector<uint16_t>(static_cast<size_t>(T * row), poison16(cache_)));
    graph->replay(ctx_.stream);
    dev_->synchronize();
    AttentionArgs h = host_args(c, d, ref);
    ref_->fn(&h, ExecContext{});
    std::vector<float> got;
    std::vector<uint32_t> bits;
    from16_out(dout.download(), &got, &bits);
    c.name = "graph";
    d.out_stride = row;
    check(c, d, ref, got, bits);
  }
}

TEST_P(CudaKernelAttn16, DecodeGraphReplaysWithChangingContexts) {
  // As the engine decodes under CUDA graphs: captured once with upper bounds (one query per
  // sequence, max_context_len = the block table's capacity: the most splits), then replayed while
  // the device-side contexts, positions, block tables and queries change, down to contexts of 0
  // and 1 (most splits empty). Some rounds replay several times back to back, one runs an eager
  // launch of another shape on the same workspace first; every replay must match the reference.
  if (!graphs_supported()) GTEST_SKIP() << "no graph support";
  for (int64_t hd : {128, 64}) {
    SCOPED_TRACE("hd " + std::to_string(hd));
    AttnCase c;
    c.nh = 32;
    c.nkv = 8;
    c.hd = hd;
    const int64_t S = 3, cap_blocks = 256, row = c.nh * c.hd;
    Data d;
    d.b.mbps = cap_blocks;
    d.b.n_blocks = S * cap_blocks + 3;
    d.b.cu = {0, 1, 2, 3};
    d.b.pos.assign(S, 0);
    d.b.ctx.assign(S, 0);
    d.b.tables.assign(static_cast<size_t>(S * cap_blocks), -1);
    d.q_stride = d.out_stride = row;
    const size_t cache = static_cast<size_t>(d.b.n_blocks * c.bs * c.nkv * c.hd);
    d.kc = random16(cache_, cache, rng_, -2.f, 2.f);
    d.vc = random16(cache_, cache, rng_, -1.f, 1.f);
    DeviceBuffer<uint16_t> dq(*dev_, static_cast<size_t>(S * row)), dkc(*dev_, d.kc), dvc(*dev_, d.vc);
    DeviceBuffer<int32_t> dcu(*dev_, d.b.cu), dpos(*dev_, d.b.pos), dctx(*dev_, d.b.ctx), dtab(*dev_, d.b.tables);
    DeviceBuffer<uint16_t> dout(*dev_, static_cast<size_t>(S * row));
    const size_t ws_bytes = attention_workspace_bytes(S, c.nh, c.hd);
    DeviceBuffer<float> dws(*dev_, std::vector<float>(ws_bytes / 4, bits_f32(kPoisonF32)));

    // New contexts (query at the last position; position 0 for an empty context: no visible kv),
    // freshly shuffled blocks and queries, uploaded to the buffers the graph reads.
    auto set_round = [&](std::vector<int32_t> ctxs) {
      std::vector<int32_t> ids(static_cast<size_t>(d.b.n_blocks));
      std::iota(ids.begin(), ids.end(), 0);
      std::shuffle(ids.begin(), ids.end(), rng_);
      std::fill(d.b.tables.begin(), d.b.tables.end(), -1);
      size_t next = 0;
      for (int64_t s = 0; s < S; ++s) {
        d.b.ctx[s] = ctxs[static_cast<size_t>(s)];
        d.b.pos[s] = std::max(ctxs[static_cast<size_t>(s)] - 1, 0);
        for (int64_t j = 0; j < (d.b.ctx[s] + c.bs - 1) / c.bs; ++j) d.b.tables[s * cap_blocks + j] = ids[next++];
      }
      d.qf = random_floats(static_cast<size_t>(S * row), rng_, -2.f, 2.f);
      d.qh.resize(d.qf.size());
      for (size_t i = 0; i < d.qf.size(); ++i) {
        d.qh[i] = to16(cache_, d.qf[i]);
        d.qf[i] = from16(cache_, d.qh[i]);
      }
      dq.upload(d.qh);
      dpos.upload(d.b.pos);
      dctx.upload(d.b.ctx);
      dtab.upload(d.b.tables);
      dout.upload(std::vector<uint16_t>(static_cast<size_t>(S * row), poison16(cache_)));
    };
    auto check_round = [&](const std::string& name) {
      std::vector<float> ref(static_cast<size_t>(S * row));
      AttentionArgs h = host_args(c, d, ref);
      ref_->fn(&h, ExecContext{});
      std::vector<float> got;
      std::vector<uint32_t> bits;
      from16_out(dout.download(), &got, &bits);
      SCOPED_TRACE(name);
      check(c, d, ref, got, bits);
    };

    AttentionArgs a{dout.get(), dq.get(), dkc.get(), dvc.get(), dcu.get(), dpos.get(), dctx.get(), dtab.get(),
                    S, c.nh, c.nkv, c.hd, c.bs, cap_blocks, row, row, 0, 1.0f / std::sqrt(static_cast<float>(c.hd))};
    a.q_dtype = cache_;
    a.out_dtype = cache_;
    a.max_query_len = 1;
    a.max_context_len = cap_blocks * c.bs;
    a.workspace = dws.get();
    a.workspace_bytes = ws_bytes;
    set_round({4096, 1, 700});
    cuda_->fn(&a, ctx_);  // eager, as the engine runs a shape before capturing it
    dev_->synchronize();
    check_round("eager");
    std::unique_ptr<StepGraph> graph = capture_step_graph(ctx_.stream, [&] { cuda_->fn(&a, ctx_); });
    const std::vector<std::vector<int32_t>> rounds = {
        {1, 4096, 17}, {0, 2049, 4000}, {128, 129, 130}, {4096, 4096, 4096}, {5, 3000, 1}, {0, 0, 64}};
    for (size_t r = 0; r < rounds.size(); ++r) {
      if (r == 3) {  // another shape on the same workspace, eagerly, between replays
        AttnCase other;
        other.name = "eager launch between replays";
        other.seqs = decode_seqs({3333, 12});
        other.nh = 16;
        other.nkv = 4;
        other.hd = 128;
        other.ws_ptr = dws.get();
        other.ws_bytes = ws_bytes;
        run_case(other);
      }
      set_round(rounds[r]);
      for (size_t k = 0; k <= r % 3; ++k) graph->replay(ctx_.stream);
      dev_->synchronize();
      check_round("replay round " + std::to_string(r));
      if (HasFailure()) return;
    }
  }
}

// ---- argument checks (no device needed: they fail before any launch) ------------------------

// Parametrized by the cache type, like CudaKernelAttn16, but without its device.
class CudaKernelAttnArgs : public ::testing::TestWithParam<DType> {};

TEST_P(CudaKernelAttnArgs, RejectsHeadDimOver256AndBadHeads) {
  const DType cache = GetParam();
  const KernelEntry* e = find_kernel(Op::kAttention, DeviceKind::kCUDA, cache);
  if (e == nullptr) GTEST_SKIP() << "CUDA backend not built";
  AttentionArgs a{nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 4, 2, 257, 16, 1,
                  4 * 257, 4 * 257, 0, 0.0625f};
  a.q_dtype = cache;
  a.out_dtype = cache;
  try {
    e->fn(&a, ExecContext{});
    ADD_FAILURE() << "head_dim 257 accepted";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::kUnsupported) << err.what();
  }
  a.head_dim = 64;
  a.n_heads = 6;
  a.n_kv_heads = 4;  // not a divisor
  EXPECT_THROW(e->fn(&a, ExecContext{}), Error);
  a.n_heads = 8;
  a.q_dtype = DType::kI32;
  EXPECT_THROW(e->fn(&a, ExecContext{}), Error);
}

TEST_P(CudaKernelAttnArgs, RejectsQOrOutOfTheOther16BitType) {
  // A bf16 q or out with an f16 cache and vice versa: refused as unsupported (no silent
  // reinterpretation of the bits). n_seqs = 0, so a launcher that accepted them would return
  // without touching the (null) pointers.
  const DType cache = GetParam();
  const DType other = cache == DType::kF16 ? DType::kBF16 : DType::kF16;
  const KernelEntry* e = find_kernel(Op::kAttention, DeviceKind::kCUDA, cache);
  if (e == nullptr) GTEST_SKIP() << "CUDA backend not built";
  struct IO {
    DType q, out;
  };
  for (IO io : {IO{other, DType::kF32}, IO{other, cache}, IO{DType::kF32, other}, IO{cache, other}, IO{other, other}}) {
    SCOPED_TRACE(std::string("q ") + dtype_name(io.q) + " out " + dtype_name(io.out));
    AttentionArgs a{nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 8, 2, 64, 16, 1,
                    8 * 64, 8 * 64, 0, 0.125f};
    a.q_dtype = io.q;
    a.out_dtype = io.out;
    try {
      e->fn(&a, ExecContext{});
      ADD_FAILURE() << "accepted";
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), ErrorKind::kUnsupported) << err.what();
    }
  }
  // The matching combinations pass the checks (and do nothing: no sequences).
  for (IO io : {IO{cache, cache}, IO{DType::kF32, cache}, IO{cache, DType::kF32}, IO{DType::kF32, DType::kF32}}) {
    SCOPED_TRACE(std::string("q ") + dtype_name(io.q) + " out " + dtype_name(io.out));
    AttentionArgs a{nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 8, 2, 64, 16, 1,
                    8 * 64, 8 * 64, 0, 0.125f};
    a.q_dtype = io.q;
    a.out_dtype = io.out;
    EXPECT_NO_THROW(e->fn(&a, ExecContext{}));
  }
}

INSTANTIATE_TEST_SUITE_P(CudaKernelAttn, CudaKernelAttn16, ::testing::Values(DType::kBF16, DType::kF16),
                         dtype_param_name);
INSTANTIATE_TEST_SUITE_P(CudaKernelAttn, CudaKernelAttnArgs, ::testing::Values(DType::kBF16, DType::kF16),
                         dtype_param_name);

}  // namespace
}  // namespace eli
