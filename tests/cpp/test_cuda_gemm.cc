// tests/cpp/test_cuda_gemm.cc: the CUDA matrix products of the 16-bit paths (bf16 and f16, every
// 16-bit case runs for both) against their "ref" entries: Op::kGemv (decode GEMV,
// kernels/cuda/gemv.cu) and Op::kGemm (cuBLASLt, kernels/cuda/gemm_cublaslt.cu).
// Suites CudaKernelGemv* / CudaKernelGemm* (the device script's CudaKernel* filter runs them); they
// skip without a CUDA device. Uses only the Device API (no CUDA headers).
//
// Every case: fresh random inputs (never zeros), outputs poisoned with a sentinel first (padding
// columns of strided outputs must keep it bit for bit), odd and real shapes, strided and misaligned
// pointers (which push the kernels onto their scalar / low-alignment paths), all fusions (the GEMV's
// gated epilogue with SiLU and with GELU-tanh). The
// tolerance is per element from an error bound of f32 accumulation: c * 2^-23 * sqrt(k) * sum|terms|
// (operands are exact in both: the GEMV keeps f32 x and reads the same 16-bit w as the reference;
// the GEMM's x is already 16-bit), plus the output's own rounding (bf16 out: 2^-8 relative, i.e.
// twice a naive bf16 implementation's half-ulp; f16 out: 2^-10 relative, twice f16's half-ulp, plus
// 2^-23 absolute for its subnormals), as CONVENTIONS.md asks. A 16-bit x of the other 16-bit type
// than the weights, or a 16-bit out of the other type, must be rejected (kUnsupported).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
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

constexpr float kPoison = -77777.0f;  // outputs start as this; padding must keep it
constexpr double kEps = 1.1920928955078125e-07;  // 2^-23

// A device copy of a host vector placed `off` elements past an aligned allocation (off > 0 makes
// the pointer misaligned for 16-byte loads).
template <typename T>
class Staged {
 public:
  Staged(Device& dev, const std::vector<T>& host, int off) : off_(off), n_(host.size()) {
    std::vector<T> padded(static_cast<size_t>(off) + host.size());
    for (int i = 0; i < off; ++i) padded[static_cast<size_t>(i)] = host.empty() ? T{} : host[0];
    std::copy(host.begin(), host.end(), padded.begin() + off);
    buf_ = std::make_unique<DeviceBuffer<T>>(dev, padded);
  }
  T* ptr() const { return buf_->get() + off_; }
  void upload(const std::vector<T>& host) {
    std::vector<T> padded = buf_->download();
    std::copy(host.begin(), host.end(), padded.begin() + off_);
    buf_->upload(padded);
  }
  std::vector<T> download() const {
    std::vector<T> all = buf_->download();
    return std::vector<T>(all.begin() + off_, all.begin() + off_ + static_cast<std::ptrdiff_t>(n_));
  }

 private:
  int off_;
  size_t n_;
  std::unique_ptr<DeviceBuffer<T>> buf_;
};

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}
std::vector<float> from_bf16(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_f32(v[i]);
  return out;
}
// Values as a bf16 tensor holds them (exactly representable), so f32 and bf16 runs see the same numbers.
std::vector<float> round_bf16(std::vector<float> v) {
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}
// The same for either 16-bit type: bits of `dt` (kBF16 or kF16), their values, and values rounded
// to `dt` (kF32: rounded to bf16, so f32 runs see the numbers they always did).
std::vector<uint16_t> to_16(DType dt, const std::vector<float>& v) {
  if (dt != DType::kF16) return to_bf16(v);
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_f16(v[i]);
  return out;
}
std::vector<float> from_16(DType dt, const std::vector<uint16_t>& v) {
  if (dt != DType::kF16) return from_bf16(v);
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f16_to_f32(v[i]);
  return out;
}
std::vector<float> round_to(DType dt, std::vector<float> v) {
  if (dt != DType::kF16) return round_bf16(std::move(v));
  for (float& x : v) x = f16_to_f32(f32_to_f16(x));
  return v;
}
bool is16(DType dt) { return dt == DType::kBF16 || dt == DType::kF16; }

// The 16-bit weight / activation types every 16-bit case runs for.
constexpr DType k16Bit[] = {DType::kBF16, DType::kF16};
// The GEMV's gated epilogues (kNone: none).
constexpr GatedAct kNoGate = GatedAct::kNone, kSilu = GatedAct::kSilu, kGelu = GatedAct::kGeluTanh;
constexpr GatedAct kGates[] = {kNoGate, kSilu, kGelu};

// Elements [r * stride + c] for c < width are compared within tol[r * width + c]; the rest (padding)
// must equal `want` exactly (bitwise, so the poison value).
void expect_within(const std::vector<float>& got, const std::vector<float>& want, const std::vector<double>& tol,
                   int64_t rows, int64_t width, int64_t stride, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < stride && r * stride + c < static_cast<int64_t>(got.size()); ++c) {
      const size_t i = static_cast<size_t>(r * stride + c);
      bool ok;
      double allowed = 0.0;
      if (c < width) {
        allowed = tol[static_cast<size_t>(r * width + c)];
        ok = std::fabs(static_cast<double>(got[i]) - want[i]) <= allowed;  // NaN fails
      } else {
        ok = std::memcmp(&got[i], &want[i], sizeof(float)) == 0;
      }
      if (!ok && ++bad <= 4) {
        ADD_FAILURE() << what << ": [row " << r << ", col " << c << "] got " << got[i] << " want " << want[i]
                      << (c < width ? " allowed error " + std::to_string(allowed) : std::string(" (padding)"));
      }
    }
  }
  EXPECT_EQ(bad, 0u) << what;
}

class CudaKernelTestBase : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    dev_ = create_cuda_device(0);
    ctx_.stream = dev_->default_stream().native();
  }
  std::unique_ptr<Device> dev_;
  ExecContext ctx_;
};

// ============================================================================================
// GEMV
// ============================================================================================

struct GemvCase {
  DType wdt;
  int64_t m, n, k;
  bool norm = false, bias = false;
  GatedAct gated = kNoGate;
  bool accumulate = false;
  float norm_offset = 0.0f;
  int64_t x_pad = 0, out_pad = 0;          // row stride = width + pad
  int x_off = 0, w_off = 0, out_off = 0, g_off = 0, bias_off = 0;  // misalignment, in elements
  std::string name() const {
    return std::string("gemv ") + dtype_name(wdt) + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
           " k=" + std::to_string(k) + (norm ? " norm" : "") + (norm_offset != 0.f ? "+1" : "") +
           (bias ? " bias" : "") + (gated != kNoGate ? std::string(" ") + gated_act_name(gated) : "") +
           (accumulate ? " acc" : "") +
           " x_pad=" + std::to_string(x_pad) + " out_pad=" + std::to_string(out_pad) + " off(x,w,out,g,b)=" +
           std::to_string(x_off) + std::to_string(w_off) + std::to_string(out_off) + std::to_string(g_off) +
           std::to_string(bias_off);
  }
};

// Host inputs of one GEMV case (device copies are made from them).
struct GemvData {
  std::vector<float> x, w, bias, g, out0;  // out0: the output before the call (poison / accumulate base)
};

GemvData make_gemv_data(const GemvCase& c, std::mt19937& rng) {
  const int64_t n_out = c.gated != kNoGate ? c.n / 2 : c.n;
  const int64_t x_stride = c.k + c.x_pad, out_stride = n_out + c.out_pad;
  GemvData d;
  d.x = random_floats(static_cast<size_t>(c.m * x_stride), rng, -2.f, 2.f);
  d.w = round_to(c.wdt, random_floats(static_cast<size_t>(c.n * c.k), rng, -1.f, 1.f));
  d.bias = random_floats(static_cast<size_t>(c.n), rng, -1.f, 1.f);
  // Stored norm weights around 1 (or around 0 with offset 1, like Gemma's (weight - 1) checkpoints).
  d.g = random_floats(static_cast<size_t>(c.k), rng, 0.5f - c.norm_offset, 1.5f - c.norm_offset);
  d.out0.assign(static_cast<size_t>(c.m * out_stride), kPoison);
  if (c.accumulate) {
    std::vector<float> base = random_floats(static_cast<size_t>(c.m * n_out), rng, -3.f, 3.f);
    for (int64_t r = 0; r < c.m; ++r)
      for (int64_t j = 0; j < n_out; ++j) d.out0[static_cast<size_t>(r * out_stride + j)] = base[static_cast<size_t>(r * n_out + j)];
  }
  return d;
}

// Allowed error per output element (m, n_out): see the file header.
std::vector<double> gemv_tolerance(const GemvCase& c, const GemvData& d) {
  const int64_t n_out = c.gated != kNoGate ? c.n / 2 : c.n;
  const int64_t x_stride = c.k + c.x_pad, out_stride = n_out + c.out_pad;
  std::vector<double> tol(static_cast<size_t>(c.m * n_out));
  std::vector<double> xn(static_cast<size_t>(c.k)), y(static_cast<size_t>(c.n)), err(static_cast<size_t>(c.n));
  const double acc_c = 8.0 * kEps * std::sqrt(static_cast<double>(c.k));
  for (int64_t r = 0; r < c.m; ++r) {
    const float* x = d.x.data() + r * x_stride;
    double inv = 1.0;
    if (c.norm) {
      double ss = 0.0;
      for (int64_t j = 0; j < c.k; ++j) ss += static_cast<double>(x[j]) * x[j];
      inv = 1.0 / std::sqrt(ss / static_cast<double>(c.k) + 1e-6);
    }
    for (int64_t j = 0; j < c.k; ++j) xn[j] = c.norm ? x[j] * inv * (d.g[j] + c.norm_offset) : x[j];
    for (int64_t i = 0; i < c.n; ++i) {
      const float* w = d.w.data() + i * c.k;
      double s = c.bias ? d.bias[i] : 0.0, mag = c.bias ? std::fabs(d.bias[i]) : 0.0;
      for (int64_t j = 0; j < c.k; ++j) {
        s += xn[j] * w[j];
        mag += std::fabs(xn[j] * w[j]);
      }
      y[i] = s;
      err[i] = acc_c * mag + 4.0 * kEps * std::fabs(s);
    }
    for (int64_t j = 0; j < n_out; ++j) {
      double t, v;
      if (c.gated != kNoGate) {
        // act(g) * up: the gate's error through act' (|silu'| <= 1.1, |gelu_tanh'| <= 1.13), the
        // up's through act(g), the f32 evaluation of act (a few ulps; GELU's 1 + tanhf(z) cancels
        // for negative g: an absolute error of a few ulps of 1 times 0.5 |g|).
        const double g = y[j], u = y[j + n_out];
        const double a = c.gated == kGelu
                             ? 0.5 * g * (1.0 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)))
                             : g / (1.0 + std::exp(-g));
        v = a * u;
        t = 1.2 * std::fabs(u) * err[j] + std::fabs(a) * err[j + n_out] + 8.0 * kEps * std::fabs(v);
        if (c.gated == kGelu) t += 4.0 * kEps * 0.5 * std::fabs(g) * std::fabs(u);
      } else {
        v = y[j];
        t = err[j];
      }
      if (c.accumulate) t += 2.0 * kEps * (std::fabs(d.out0[static_cast<size_t>(r * out_stride + j)]) + std::fabs(v));
      tol[static_cast<size_t>(r * n_out + j)] = t + 1e-30;
    }
  }
  return tol;
}

// Runs `c` on the CUDA entry `e` and on the reference with the same inputs; compares.
void run_gemv_case(Device& dev, const ExecContext& ctx, const KernelEntry& e, const GemvCase& c, std::mt19937& rng) {
  ASSERT_EQ(e.dtype, c.wdt);
  const KernelEntry* ref = find_kernel(Op::kGemv, DeviceKind::kCPU, c.wdt, "ref");
  ASSERT_NE(ref, nullptr);
  const int64_t n_out = c.gated != kNoGate ? c.n / 2 : c.n;
  const int64_t x_stride = c.k + c.x_pad, out_stride = n_out + c.out_pad;
  const GemvData d = make_gemv_data(c, rng);
  const std::vector<uint16_t> w_bf16 = to_16(c.wdt, d.w);  // bf16 or f16 bits
  const bool bf16 = is16(c.wdt);

  std::vector<float> want = d.out0;
  GemvArgs h{want.data(), d.x.data(), bf16 ? static_cast<const void*>(w_bf16.data()) : d.w.data(),
             c.bias ? d.bias.data() : nullptr, c.norm ? d.g.data() : nullptr, c.m, c.n, c.k, out_stride, x_stride};
  h.norm_eps = 1e-6f;
  h.norm_weight_offset = c.norm_offset;
  h.gated = c.gated;
  h.accumulate = c.accumulate;
  ref->fn(&h, ExecContext{});

  Staged<float> dx(dev, d.x, c.x_off), dwf(dev, bf16 ? std::vector<float>{} : d.w, c.w_off),
      db(dev, d.bias, c.bias_off), dg(dev, d.g, c.g_off), dout(dev, d.out0, c.out_off);
  Staged<uint16_t> dwb(dev, bf16 ? w_bf16 : std::vector<uint16_t>{}, c.w_off);
  GemvArgs a = h;
  a.out = dout.ptr();
  a.x = dx.ptr();
  a.w = bf16 ? static_cast<const void*>(dwb.ptr()) : dwf.ptr();
  a.bias = c.bias ? db.ptr() : nullptr;
  a.norm_weight = c.norm ? dg.ptr() : nullptr;
  e.fn(&a, ctx);
  dev.synchronize();
  expect_within(dout.download(), want, gemv_tolerance(c, d), c.m, n_out, out_stride, c.name());
}

class CudaKernelGemvTest : public CudaKernelTestBase {
 protected:
  const KernelEntry& entry(DType dt) {
    const KernelEntry* e = find_kernel(Op::kGemv, DeviceKind::kCUDA, dt);
    if (e == nullptr) throw Error(ErrorKind::kUnsupported, "no CUDA gemv entry");
    return *e;
  }
  void run(const GemvCase& c) {
    SCOPED_TRACE(c.name());
    run_gemv_case(*dev_, ctx_, entry(c.wdt), c, rng_);
  }
  std::mt19937 rng_{20251126};
};

TEST_F(CudaKernelGemvTest, RealShapes16Bit) {
  for (DType dt : k16Bit) {
    // Llama-3.2-1B / 3.1-8B decode projections (n scaled down where the host reference would be slow).
    for (int64_t m : {1, 2, 4, 8}) {
      run({dt, m, 3072, 2048, /*norm=*/true});                                    // qkv + input norm
      run({dt, m, 2048, 2048, false, false, kNoGate, /*accumulate=*/true});        // o + residual
      run({dt, m, 4096, 2048, true, false, kSilu});                               // gate_up (cut)
      run({dt, m, 2048, 8192, false, false, kNoGate, true});                      // down + residual
    }
    run({dt, 1, 16384, 2048, true, false, kSilu});  // full 1B gate_up
    run({dt, 1, 4096, 14336, false, false, kNoGate, true});  // 8B down
    run({dt, 3, 6144, 4096, true, true});  // 8B qkv with bias (Qwen-style)
    run({dt, 1, 512, 4096});               // small n: few CTAs
    run({dt, 5, 1000, 576, true, true, kNoGate, true});  // SmolLM2-ish k
    // Gemma 3 (1B: hidden 1152, intermediate 6912) GELU-tanh gate_up, norm offset 1 (weights - 1).
    for (int64_t m : {1, 4}) {
      GemvCase g{dt, m, 2 * 6912, 1152, true, false, kGelu};
      g.norm_offset = 1.0f;
      run(g);
    }
  }
}

TEST_F(CudaKernelGemvTest, OddShapesAllFusions) {
  for (DType dt : k16Bit) {
    // Every m, small and odd n, k multiple of 8 (vector path) and not (scalar path).
    for (int64_t m = 1; m <= 8; ++m) {
      for (int64_t k : {8, 24, 1000, 1032, 7, 13, 1001}) {
        for (int64_t n : {2, 6, 130, 1058}) {
          GemvCase c{dt, m, n, k};
          const int v = static_cast<int>((m * 7 + k + n) % 24);  // a spread of flag combinations
          c.norm = v & 1;
          c.bias = v & 2;
          c.accumulate = v & 4;
          c.gated = kGates[v >> 3];
          run(c);
        }
      }
    }
    // Every gate with every other flag on one odd shape.
    for (GatedAct gated : {kSilu, kGelu})
      for (int flags = 0; flags < 8; ++flags) {
        GemvCase c{dt, 3, 130, 1001};
        c.norm = flags & 1;
        c.bias = flags & 2;
        c.accumulate = flags & 4;
        c.gated = gated;
        run(c);
      }
    // n = 1 and 3 (odd: no gating), every flag.
    for (int flags = 0; flags < 8; ++flags) {
      GemvCase c{dt, 1 + flags % 8, 1 + 2 * (flags % 2), 40 + flags};
      c.norm = flags & 1;
      c.bias = flags & 2;
      c.accumulate = flags & 4;
      run(c);
    }
    // Norm with weight offset 1 (checkpoints storing weight - 1), on both paths.
    GemvCase o{dt, 2, 300, 512, true};
    o.norm_offset = 1.0f;
    run(o);
    o.k = 509;
    run(o);
  }
}

TEST_F(CudaKernelGemvTest, StridesAndMisalignment) {
  for (DType dt : k16Bit) {
    for (GatedAct gated : kGates) {
      GemvCase c{dt, 4, 1200, 1024, true, true, gated, true};
      c.x_pad = 4;  // still 16-byte rows: vector path
      c.out_pad = 5;
      run(c);
      c.x_pad = 3;  // rows not 16-byte aligned: scalar path
      run(c);
      c.x_pad = 0;
      c.out_pad = 0;
      for (int which = 0; which < 5; ++which) {
        GemvCase d = c;
        d.x_off = which == 0;
        d.w_off = which == 1;
        d.out_off = which == 2;
        d.g_off = which == 3;
        d.bias_off = which == 4;
        run(d);
      }
    }
    // Everything misaligned and strided at once, odd k.
    GemvCase all{dt, 7, 66, 333, true, true, kSilu, true};
    all.x_pad = 1;
    all.out_pad = 2;
    all.x_off = all.w_off = all.out_off = all.g_off = all.bias_off = 1;
    run(all);
  }
}

TEST_F(CudaKernelGemvTest, ManyRowsSplitIntoLaunches) {
  // m > kGemvMaxRows is outside the op's contract for speed but must still be right.
  for (DType dt : k16Bit) {
    run({dt, 11, 300, 256, true, true, kSilu, true});
    run({dt, 13, 300, 256, true, true, kGelu, false});
    run({dt, 17, 64, 40});
  }
}

// f16 weights: values bf16 cannot hold (11 significant bits), large and tiny (subnormal f16)
// magnitudes, so a kernel reading them as bf16 or dropping mantissa bits fails.
TEST_F(CudaKernelGemvTest, F16WeightsFullPrecision) {
  const KernelEntry& e = entry(DType::kF16);
  const KernelEntry* ref = find_kernel(Op::kGemv, DeviceKind::kCPU, DType::kF16, "ref");
  ASSERT_NE(ref, nullptr);
  for (int64_t k : {1024, 1001}) {  // vector and scalar paths
    GemvCase c{DType::kF16, 3, 64, k, false, false, kNoGate, false};
    GemvData d = make_gemv_data(c, rng_);
    std::vector<uint16_t> wh(d.w.size());
    for (size_t i = 0; i < wh.size(); ++i) {
      const uint32_t r = static_cast<uint32_t>(rng_());
      // Sign, exponent 1..29 (2^-14 .. 2^14; 0 now and then: subnormal), a random 10-bit mantissa.
      const uint32_t ex = (i % 17 == 0) ? 0u : 1u + (r >> 12) % 29u;
      wh[i] = static_cast<uint16_t>(((r >> 31) << 15) | (ex << 10) | (r & 0x3ffu));
      d.w[i] = f16_to_f32(wh[i]);
    }
    const int64_t n_out = c.n;
    std::vector<float> want = d.out0;
    GemvArgs h{want.data(), d.x.data(), wh.data(), nullptr, nullptr, c.m, c.n, c.k, n_out, c.k};
    ref->fn(&h, ExecContext{});
    Staged<float> dx(*dev_, d.x, 0), dout(*dev_, d.out0, 0);
    Staged<uint16_t> dw(*dev_, wh, 0);
    GemvArgs a = h;
    a.out = dout.ptr();
    a.x = dx.ptr();
    a.w = dw.ptr();
    e.fn(&a, ctx_);
    dev_->synchronize();
    expect_within(dout.download(), want, gemv_tolerance(c, d), c.m, n_out, n_out, "gemv f16 full precision");
  }
}

TEST_F(CudaKernelGemvTest, F32Weights) {
  for (int64_t m : {1, 3, 8}) {
    run({DType::kF32, m, 2048, 1024, true, false, kNoGate, true});
    run({DType::kF32, m, 130, 100, true, true, kSilu, false});
    run({DType::kF32, m, 130, 100, true, true, kGelu, true});
    run({DType::kF32, m, 1100, 77, false, true, kNoGate, true});
  }
  GemvCase c{DType::kF32, 2, 258, 512, true, true, kGelu, true};
  c.w_off = 1;
  run(c);
  c.w_off = 0;
  c.x_pad = 4;
  c.out_pad = 3;
  run(c);
}

TEST_F(CudaKernelGemvTest, RejectsBadArguments) {
  for (DType dt : k16Bit) {
    const KernelEntry& e = entry(dt);
    GemvArgs a{nullptr, nullptr, nullptr, nullptr, nullptr, 1, 3, 8, 3, 8};
    a.gated = kSilu;  // odd n
    EXPECT_THROW(e.fn(&a, ctx_), Error);
    a.gated = kGelu;
    EXPECT_THROW(e.fn(&a, ctx_), Error);
    GemvArgs z{nullptr, nullptr, nullptr, nullptr, nullptr, 0, 16, 8, 16, 8};  // m = 0: nothing to do
    EXPECT_NO_THROW(e.fn(&z, ctx_));
  }
}

TEST_F(CudaKernelGemvTest, CapturedInCudaGraph) {
  if (!graphs_supported()) GTEST_SKIP() << "no graph support";
  for (DType dt : k16Bit) {
    SCOPED_TRACE(dtype_name(dt));
    const KernelEntry& e = entry(dt);
    const KernelEntry* ref = find_kernel(Op::kGemv, DeviceKind::kCPU, dt, "ref");
    ASSERT_NE(ref, nullptr);
    GemvCase c{dt, 2, 2048, 1024, true, true, kSilu, false};
    const int64_t n_out = c.n / 2;
    GemvData d = make_gemv_data(c, rng_);
    const std::vector<uint16_t> wb = to_16(dt, d.w);
    Staged<float> dx(*dev_, d.x, 0), db(*dev_, d.bias, 0), dg(*dev_, d.g, 0), dout(*dev_, d.out0, 0);
    Staged<uint16_t> dw(*dev_, wb, 0);
    GemvArgs a{dout.ptr(), dx.ptr(), dw.ptr(), db.ptr(), dg.ptr(), c.m, c.n, c.k, n_out, c.k};
    a.gated = kSilu;
    e.fn(&a, ctx_);  // warm-up, as the engine does before capture
    dev_->synchronize();
    std::unique_ptr<StepGraph> graph = capture_step_graph(ctx_.stream, [&] { e.fn(&a, ctx_); });
    // New activations after capture: the replay must read them.
    d.x = random_floats(d.x.size(), rng_, -2.f, 2.f);
    dx.upload(d.x);
    dout.upload(d.out0);
    graph->replay(ctx_.stream);
    dev_->synchronize();
    std::vector<float> want = d.out0;
    GemvArgs h{want.data(), d.x.data(), wb.data(), d.bias.data(), d.g.data(), c.m, c.n, c.k, n_out, c.k};
    h.gated = kSilu;
    ref->fn(&h, ExecContext{});
    expect_within(dout.download(), want, gemv_tolerance(c, d), c.m, n_out, n_out, "gemv graph replay");
  }
}

// Two dependent GEMVs back to back (the second reads the first's output as x), launched with
// programmatic dependent launch (the default on sm_90) and without it, directly and from a graph:
// the second must never see the first's poisoned output.
TEST_F(CudaKernelGemvTest, DependentLaunchesSeeFinishedInputs) {
  for (DType dt : k16Bit) {
    SCOPED_TRACE(dtype_name(dt));
    const KernelEntry& e = entry(dt);
    const KernelEntry* ref = find_kernel(Op::kGemv, DeviceKind::kCPU, dt, "ref");
    ASSERT_NE(ref, nullptr);
    const int64_t m = 3, n1 = 8192, k1 = 4096, n2 = 3000;  // first is big (slow), second reads all of it
    GemvCase c1{dt, m, n1, k1, true};
    GemvCase c2{dt, m, n2, n1, false, true, kNoGate, true};
    const GemvData d1 = make_gemv_data(c1, rng_);
    GemvData d2 = make_gemv_data(c2, rng_);
    const std::vector<uint16_t> w1 = to_16(dt, d1.w), w2 = to_16(dt, d2.w);
    const std::vector<float> poison(static_cast<size_t>(m * n1), 1e30f);
    Staged<float> dx1(*dev_, d1.x, 0), dg1(*dev_, d1.g, 0), dmid(*dev_, poison, 0), db2(*dev_, d2.bias, 0),
        dout2(*dev_, d2.out0, 0);
    Staged<uint16_t> dw1(*dev_, w1, 0), dw2(*dev_, w2, 0);
    GemvArgs a1{dmid.ptr(), dx1.ptr(), dw1.ptr(), nullptr, dg1.ptr(), m, n1, k1, n1, k1};
    GemvArgs a2{dout2.ptr(), dmid.ptr(), dw2.ptr(), db2.ptr(), nullptr, m, n2, n1, n2, n1};
    a2.accumulate = true;
    auto check = [&](const std::string& what) {
      // The second GEMV's reference takes the first's device output as its input.
      const std::vector<float> mid = dmid.download();
      std::vector<float> want = d2.out0;
      GemvArgs h{want.data(), mid.data(), w2.data(), d2.bias.data(), nullptr, m, n2, n1, n2, n1};
      h.accumulate = true;
      ref->fn(&h, ExecContext{});
      GemvData dd = d2;
      dd.x = mid;
      expect_within(dout2.download(), want, gemv_tolerance(c2, dd), m, n2, n2, what);
      for (float v : mid) ASSERT_LT(std::fabs(v), 1e29f) << what << ": first GEMV left poison";
    };
    const int saved = cuda::knob(cuda::Knob::kGemvPdl);
    for (int pdl : {1, 0}) {
      cuda::set_knob(cuda::Knob::kGemvPdl, pdl);
      for (int rep = 0; rep < 3; ++rep) {
        dmid.upload(poison);
        dout2.upload(d2.out0);
        e.fn(&a1, ctx_);
        e.fn(&a2, ctx_);
        dev_->synchronize();
        check("stream, GEMV PDL " + std::to_string(pdl));
      }
      if (graphs_supported()) {
        std::unique_ptr<StepGraph> graph = capture_step_graph(ctx_.stream, [&] {
          e.fn(&a1, ctx_);
          e.fn(&a2, ctx_);
        });
        for (int rep = 0; rep < 3; ++rep) {
          dmid.upload(poison);
          dout2.upload(d2.out0);
          graph->replay(ctx_.stream);
          dev_->synchronize();
          check("graph, GEMV PDL " + std::to_string(pdl));
        }
      }
    }
    cuda::set_knob(cuda::Knob::kGemvPdl, saved);
  }
}

// ============================================================================================
// GEMM
// ============================================================================================

struct GemmCase {
  DType wdt;      // == x dtype
  DType out_dt;
  int64_t m, n, k;
  bool bias = false, accumulate = false;
  int64_t x_pad = 0, out_pad = 0;
  int x_off = 0, w_off = 0, out_off = 0, bias_off = 0;
  size_t workspace = 0;
  std::string name() const {
    return std::string("gemm w/x ") + dtype_name(wdt) + " out " + dtype_name(out_dt) + " m=" + std::to_string(m) +
           " n=" + std::to_string(n) + " k=" + std::to_string(k) + (bias ? " bias" : "") + (accumulate ? " acc" : "") +
           " x_pad=" + std::to_string(x_pad) + " out_pad=" + std::to_string(out_pad) + " off(x,w,out,b)=" +
           std::to_string(x_off) + std::to_string(w_off) + std::to_string(out_off) + std::to_string(bias_off) +
           " ws=" + std::to_string(workspace);
  }
};

class CudaKernelGemmTest : public CudaKernelTestBase {
 protected:
  const KernelEntry& entry(DType dt) {
    const KernelEntry* e = find_kernel(Op::kGemm, DeviceKind::kCUDA, dt);
    if (e == nullptr) throw Error(ErrorKind::kUnsupported, "no CUDA gemm entry");
    return *e;
  }
  void run(const GemmCase& c);
  std::mt19937 rng_{1126};
};

void CudaKernelGemmTest::run(const GemmCase& c) {
  SCOPED_TRACE(c.name());
  const KernelEntry& e = entry(c.wdt);
  const KernelEntry* ref = find_kernel(Op::kGemm, DeviceKind::kCPU, c.wdt, "ref");
  ASSERT_NE(ref, nullptr);
  // in_bf16 / out_bf16: a 16-bit buffer (bf16 or f16: wdt / out_dt says which).
  const bool in_bf16 = is16(c.wdt), out_bf16 = is16(c.out_dt);
  const int64_t x_stride = c.k + c.x_pad, out_stride = c.n + c.out_pad;
  // Operands: values exactly representable in the 16-bit type (bf16 for f32 operands: the same
  // numbers as a bf16 run).
  const std::vector<float> x = round_to(c.wdt, random_floats(static_cast<size_t>(c.m * x_stride), rng_, -1.f, 1.f));
  const std::vector<float> w = round_to(c.wdt, random_floats(static_cast<size_t>(c.n * c.k), rng_, -1.f, 1.f));
  const std::vector<float> bias = random_floats(static_cast<size_t>(c.n), rng_, -1.f, 1.f);
  const std::vector<uint16_t> xb = to_16(c.wdt, x), wb = to_16(c.wdt, w);
  std::vector<float> out0(static_cast<size_t>(c.m * out_stride), kPoison);
  if (c.accumulate) {
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j)
        out0[static_cast<size_t>(i * out_stride + j)] = std::uniform_real_distribution<float>(-3.f, 3.f)(rng_);
  }
  if (out_bf16) out0 = round_to(c.out_dt, out0);  // the poison, as the 16-bit buffer holds it (f16: -inf)
  const std::vector<uint16_t> out0_b = to_16(c.out_dt, out0);

  // Reference.
  std::vector<float> want_f = out0;
  std::vector<uint16_t> want_b = out0_b;
  GemmArgs h{out_bf16 ? static_cast<void*>(want_b.data()) : want_f.data(),
             in_bf16 ? static_cast<const void*>(xb.data()) : x.data(),
             in_bf16 ? static_cast<const void*>(wb.data()) : w.data(),
             c.bias ? bias.data() : nullptr, c.m, c.n, c.k, out_stride, x_stride};
  h.x_dtype = c.wdt;
  h.out_dtype = c.out_dt;
  h.accumulate = c.accumulate;
  ref->fn(&h, ExecContext{});
  const std::vector<float> want = out_bf16 ? from_16(c.out_dt, want_b) : want_f;

  // Device.
  Staged<float> dxf(*dev_, in_bf16 ? std::vector<float>{} : x, c.x_off),
      dwf(*dev_, in_bf16 ? std::vector<float>{} : w, c.w_off), db(*dev_, bias, c.bias_off),
      doutf(*dev_, out_bf16 ? std::vector<float>{} : out0, c.out_off);
  Staged<uint16_t> dxb(*dev_, in_bf16 ? xb : std::vector<uint16_t>{}, c.x_off),
      dwb(*dev_, in_bf16 ? wb : std::vector<uint16_t>{}, c.w_off),
      doutb(*dev_, out_bf16 ? out0_b : std::vector<uint16_t>{}, c.out_off);
  std::unique_ptr<DeviceBuffer<uint8_t>> ws;
  if (c.workspace) ws = std::make_unique<DeviceBuffer<uint8_t>>(*dev_, c.workspace);
  GemmArgs a = h;
  a.out = out_bf16 ? static_cast<void*>(doutb.ptr()) : doutf.ptr();
  a.x = in_bf16 ? static_cast<const void*>(dxb.ptr()) : dxf.ptr();
  a.w = in_bf16 ? static_cast<const void*>(dwb.ptr()) : dwf.ptr();
  a.bias = c.bias ? db.ptr() : nullptr;
  a.workspace = ws ? ws->get() : nullptr;
  a.workspace_bytes = c.workspace;
  e.fn(&a, ctx_);
  dev_->synchronize();
  const std::vector<float> got = out_bf16 ? from_16(c.out_dt, doutb.download()) : doutf.download();

  // Tolerance from |terms|; y excludes the bias (the bf16 fallback may round before adding it).
  std::vector<double> tol(static_cast<size_t>(c.m * c.n));
  const double acc_c = 32.0 * kEps * std::sqrt(static_cast<double>(std::max<int64_t>(c.k, 1)));
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      double y = 0.0, mag = c.bias ? std::fabs(bias[j]) : 0.0;
      for (int64_t p = 0; p < c.k; ++p) {
        const double t = static_cast<double>(x[i * x_stride + p]) * w[j * c.k + p];
        y += t;
        mag += std::fabs(t);
      }
      const double wv = want[static_cast<size_t>(i * out_stride + j)];
      double t = acc_c * mag + 4.0 * kEps * std::fabs(wv);
      // 16-bit out: the product's rounding, the bias (rounded to the out type by cuBLASLt's epilogue
      // for a 16-bit D) and the sum's rounding: up to about one ulp of each (bf16: 2^-8 relative;
      // f16: 2^-10, and 2^-24 absolute below f16's normal range, taken generously).
      if (out_bf16) {
        const double ulp = c.out_dt == DType::kF16 ? std::ldexp(1.0, -10) : std::ldexp(1.0, -8);
        t += ulp * (std::fabs(y) + std::fabs(wv) + (c.bias ? 2.0 * std::fabs(bias[j]) : 0.0));
        if (c.out_dt == DType::kF16) t += std::ldexp(1.0, -23);
      }
      if (c.accumulate) t += 2.0 * kEps * std::fabs(out0[static_cast<size_t>(i * out_stride + j)]);
      tol[static_cast<size_t>(i * c.n + j)] = t + 1e-30;
    }
  }
  expect_within(got, want, tol, c.m, c.n, out_stride, c.name());
}

TEST_F(CudaKernelGemmTest, OddShapes16Bit) {
  for (DType B : k16Bit) {  // bf16, then f16 (x, w and a 16-bit out)
    const DType F = DType::kF32;
    run({B, F, 1, 1, 1});
    run({B, F, 7, 33, 100});
    run({B, F, 64, 256, 512, /*bias=*/true});
    run({B, F, 300, 257, 515, true, /*accumulate=*/true});
    run({B, F, 129, 64, 2048, false, true});
    run({B, F, 5, 1000, 8, true});
    run({B, F, 2, 3, 3, true, true});
    run({B, B, 300, 256, 1000, true});
    run({B, B, 17, 33, 7});
    run({B, B, 128, 128, 128, true});
    run({B, B, 1, 2049, 64, true});
  }
}

TEST_F(CudaKernelGemmTest, F32Operands) {
  const DType B = DType::kBF16, H = DType::kF16, F = DType::kF32;
  run({F, F, 33, 65, 129, true, true});
  run({F, F, 300, 100, 64});
  run({F, F, 1, 7, 5, true});
  run({F, B, 16, 40, 24, true});
  run({F, B, 9, 31, 77});
  run({F, H, 16, 40, 24, true});  // f32 operands with an f16 out: the SIMT fallback
  run({F, H, 9, 31, 77});
}

TEST_F(CudaKernelGemmTest, StridesMisalignmentWorkspace) {
  const DType F = DType::kF32;
  for (DType B : k16Bit) {
    for (DType out : {F, B}) {
      GemmCase c{B, out, 70, 96, 136, true, out == F};
      c.x_pad = 3;
      c.out_pad = 5;
      run(c);
      c.x_pad = c.out_pad = 0;
      for (int which = 0; which < 4; ++which) {
        GemmCase d = c;
        d.x_off = which == 0;
        d.w_off = which == 1;
        d.out_off = which == 2;
        d.bias_off = which == 3;
        run(d);
      }
      c.workspace = size_t{4} << 20;
      run(c);
      c.m = 257;
      c.k = 1030;
      run(c);
    }
  }
  GemmCase f{F, F, 45, 50, 61, true, true};
  f.x_pad = 1;
  f.out_pad = 2;
  f.x_off = f.w_off = f.out_off = f.bias_off = 1;
  run(f);
}

TEST_F(CudaKernelGemmTest, PlanReuseWithNewPointers) {
  // The same shape again: the cached plan must take this call's bias pointer (and buffers). The
  // bf16 and f16 runs share the shape: the plan cache must keep them apart (it keys on the dtypes).
  const DType F = DType::kF32;
  for (DType B : k16Bit) {
    for (int rep = 0; rep < 3; ++rep) run({B, F, 48, 80, 96, true, rep == 2});
    for (int rep = 0; rep < 2; ++rep) run({B, B, 48, 80, 96, true});
  }
  run({DType::kBF16, F, 48, 80, 96, true});  // bf16 again after f16
}

TEST_F(CudaKernelGemmTest, EmptyK) {
  const DType F = DType::kF32;
  for (DType B : k16Bit) {
    run({B, F, 3, 5, 0, true, true});
    run({B, F, 3, 5, 0, false, false});
    run({B, B, 4, 6, 0, true, false});
  }
}

TEST_F(CudaKernelGemmTest, RejectsBadArguments) {
  const KernelEntry& e = entry(DType::kBF16);
  GemmArgs a{nullptr, nullptr, nullptr, nullptr, 4, 4, 4, 4, 4};
  a.out_dtype = DType::kBF16;
  a.accumulate = true;  // accumulate needs an f32 out
  EXPECT_THROW(e.fn(&a, ctx_), Error);
  GemmArgs b{nullptr, nullptr, nullptr, nullptr, 4, 4, 4, 4, 4};
  b.x_dtype = DType::kF32;  // x must match the bf16 weights
  try {
    e.fn(&b, ctx_);
    ADD_FAILURE() << "no error for f32 x with bf16 weights";
  } catch (const Error& err) {
    EXPECT_EQ(err.kind(), ErrorKind::kUnsupported);
  }
}

// The two 16-bit types never mix: x of the other type than the weights, or a 16-bit out of the
// other type, is kUnsupported (before any pointer is looked at); accumulate needs an f32 out.
TEST_F(CudaKernelGemmTest, RejectsMixed16BitTypes) {
  const DType B = DType::kBF16, H = DType::kF16, F = DType::kF32;
  struct Bad {
    DType w, x, out;
    bool accumulate;
  };
  for (const Bad& c : {Bad{H, B, F, false}, Bad{B, H, F, false}, Bad{H, F, F, false}, Bad{H, H, B, false},
                       Bad{B, B, H, false}, Bad{F, H, F, false}, Bad{F, B, F, false}}) {
    GemmArgs a{nullptr, nullptr, nullptr, nullptr, 4, 4, 4, 4, 4};
    a.x_dtype = c.x;
    a.out_dtype = c.out;
    a.accumulate = c.accumulate;
    const std::string what =
        std::string("w ") + dtype_name(c.w) + " x " + dtype_name(c.x) + " out " + dtype_name(c.out);
    try {
      entry(c.w).fn(&a, ctx_);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& err) {
      EXPECT_EQ(err.kind(), ErrorKind::kUnsupported) << what << ": " << err.what();
    }
  }
  GemmArgs acc{nullptr, nullptr, nullptr, nullptr, 4, 4, 4, 4, 4};
  acc.x_dtype = H;
  acc.out_dtype = H;
  acc.accumulate = true;  // accumulate needs an f32 out
  EXPECT_THROW(entry(H).fn(&acc, ctx_), Error);
}

TEST_F(CudaKernelGemmTest, CapturedInCudaGraph) {
  if (!graphs_supported()) GTEST_SKIP() << "no graph support";
  for (DType dt : k16Bit) {
    SCOPED_TRACE(dtype_name(dt));
    const KernelEntry& e = entry(dt);
    const KernelEntry* ref = find_kernel(Op::kGemm, DeviceKind::kCPU, dt, "ref");
    ASSERT_NE(ref, nullptr);
    const int64_t m = 96, n = 192, k = 256;
    std::vector<float> x = round_to(dt, random_floats(static_cast<size_t>(m * k), rng_, -1.f, 1.f));
    const std::vector<float> w = round_to(dt, random_floats(static_cast<size_t>(n * k), rng_, -1.f, 1.f));
    const std::vector<float> bias = random_floats(static_cast<size_t>(n), rng_, -1.f, 1.f);
    const std::vector<float> out0 = random_floats(static_cast<size_t>(m * n), rng_, -1.f, 1.f);
    Staged<uint16_t> dx(*dev_, to_16(dt, x), 0), dw(*dev_, to_16(dt, w), 0);
    Staged<float> db(*dev_, bias, 0), dout(*dev_, out0, 0);
    DeviceBuffer<uint8_t> ws(*dev_, size_t{8} << 20);
    GemmArgs a{dout.ptr(), dx.ptr(), dw.ptr(), db.ptr(), m, n, k, n, k};
    a.x_dtype = dt;
    a.accumulate = true;
    a.workspace = ws.get();
    a.workspace_bytes = size_t{8} << 20;
    e.fn(&a, ctx_);  // warm-up: creates the handle and the plan outside the capture
    dev_->synchronize();
    std::unique_ptr<StepGraph> graph = capture_step_graph(ctx_.stream, [&] { e.fn(&a, ctx_); });
    x = round_to(dt, random_floats(x.size(), rng_, -1.f, 1.f));
    dx.upload(to_16(dt, x));
    dout.upload(out0);
    graph->replay(ctx_.stream);
    dev_->synchronize();
    std::vector<float> want = out0;
    const std::vector<uint16_t> xb = to_16(dt, x), wb = to_16(dt, w);
    GemmArgs h{want.data(), xb.data(), wb.data(), bias.data(), m, n, k, n, k};
    h.x_dtype = dt;
    h.accumulate = true;
    ref->fn(&h, ExecContext{});
    std::vector<double> tol(want.size());
    for (size_t i = 0; i < want.size(); ++i) tol[i] = 32.0 * kEps * 16.0 * (k * 0.5 + 4.0) + 1e-6;
    expect_within(dout.download(), want, tol, m, n, n, "gemm graph replay");
  }
}

}  // namespace
}  // namespace eli
