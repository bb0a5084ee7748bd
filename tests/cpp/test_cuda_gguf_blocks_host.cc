// tests/cpp/test_cuda_gguf_blocks_host.cc: the device code of the CUDA GGUF kernels that can run on
// the CPU (kernels/cuda/gguf_blocks.cuh compiles as plain C++: the per-type block decoders and the
// integer dot products of an item with an 8-bit activation block), against gguf-py's numpy
// dequantization (tests/data/quant/, by scripts/make_quant_references.py: all 12 types) and against the
// reference dequantization (kernels/ref/dequant_ref.cc, for the types it has). Runs in CI; the
// kernels' thread mapping, loads and reductions are covered on the GPU by test_cuda_gguf_kernels.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/gguf_blocks.cuh"
#include "kernels/ref/dequant_ref.h"
#include "tests/cpp/gguf_test_blocks.h"

namespace eli {
namespace {

template <typename T>
std::vector<T> read_fixture(const std::string& name) {
  std::ifstream f(std::string(ELI_TEST_DATA_DIR) + "/quant/" + name, std::ios::binary);
  EXPECT_TRUE(f.good()) << "missing fixture " << name << " (scripts/make_quant_references.py)";
  const std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

// Every item of gguf-py's random blocks decodes to gguf-py's values (bit for bit in practice: the
// same products in the same order; the bound allows an FMA contraction).
class GgufBlockDecodeGgufPy : public ::testing::TestWithParam<DType> {};
TEST_P(GgufBlockDecodeGgufPy, ItemsMatchGgufPyDequantization) {
  const DType t = GetParam();
  const std::vector<uint8_t> raw = read_fixture<uint8_t>(std::string(dtype_name(t)) + ".blocks");
  const std::vector<float> ref = read_fixture<float>(std::string(dtype_name(t)) + ".f32");
  const DTypeInfo& info = dtype_info(t);
  ASSERT_GT(raw.size(), 0u);
  ASSERT_EQ(raw.size() % static_cast<size_t>(info.block_bytes), 0u);
  const int64_t blocks = static_cast<int64_t>(raw.size()) / info.block_bytes;
  ASSERT_EQ(ref.size(), static_cast<size_t>(blocks * info.block_elems));
  const bool known = gguf::visit_block(t, [&](auto blk) {
    using B = decltype(blk);
    for (int64_t b = 0; b < blocks; ++b) {
      float amax = 0.f;
      for (int e = 0; e < B::kElems; ++e) amax = std::max(amax, std::fabs(ref[b * B::kElems + e]));
      for (int s = 0; s < B::kItems; ++s) {
        gguf::WItem it;
        B::item(raw.data() + b * B::kBytes, s, it);
        for (int e = 0; e < gguf::kItemElems; ++e) {
          const float want = ref[b * B::kElems + s * gguf::kItemElems + e];
          ASSERT_LE(std::fabs(gguf::item_value(it, e) - want), 1e-6f * amax)
              << dtype_name(t) << " block " << b << " item " << s << " element " << e;
        }
      }
    }
  });
  EXPECT_TRUE(known);
}

class GgufBlockDecode : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (dequant_ref_kernel(GetParam()) == nullptr)
      GTEST_SKIP() << dtype_name(GetParam()) << ": no reference dequantizer in this build yet (kernels/ref)";
  }
};

// Every item of random blocks decodes to the reference's values: w = a[h] * q + b[h].
TEST_P(GgufBlockDecode, ItemsMatchReferenceDequantization) {
  const DType t = GetParam();
  const DTypeInfo& info = dtype_info(t);
  std::mt19937 rng(5 + static_cast<int>(t));
  const int64_t blocks = 7, k = blocks * info.block_elems;
  const std::vector<uint8_t> w = gguf_test::random_rows(t, 1, k, rng);
  std::vector<float> ref(static_cast<size_t>(k));
  dequant_row_ref(t, w.data(), ref.data(), k);
  bool known = gguf::visit_block(t, [&](auto blk) {
    using B = decltype(blk);
    ASSERT_EQ(B::kElems, info.block_elems);
    ASSERT_EQ(B::kBytes, info.block_bytes);
    ASSERT_EQ(B::kItems * gguf::kItemElems, B::kElems);
    for (int64_t b = 0; b < blocks; ++b) {
      float amax = 0.f;  // the block's largest weight: the scale of the rounding differences
      for (int e = 0; e < B::kElems; ++e) amax = std::max(amax, std::fabs(ref[b * B::kElems + e]));
      for (int s = 0; s < B::kItems; ++s) {
        gguf::WItem it;
        B::item(w.data() + b * B::kBytes, s, it);
        for (int e = 0; e < gguf::kItemElems; ++e) {
          const float want = ref[b * B::kElems + s * gguf::kItemElems + e];
          const float got = gguf::item_value(it, e);
          ASSERT_LE(std::fabs(got - want), 1e-6f * amax + 1e-30f)
              << dtype_name(t) << " block " << b << " item " << s << " element " << e << ": got " << got << " want " << want;
        }
      }
    }
  });
  EXPECT_TRUE(known);
}

// item_dot (the GEMV's integer dot products) equals sum(w * dq(x)) over a row of gguf-py's blocks,
// where dq(x) is the 8-bit activation block dequantized: only f32 rounding separates them.
TEST_P(GgufBlockDecodeGgufPy, ItemDotMatchesDequantizedProduct) {
  const DType t = GetParam();
  const std::vector<uint8_t> w = read_fixture<uint8_t>(std::string(dtype_name(t)) + ".blocks");
  const std::vector<float> wref = read_fixture<float>(std::string(dtype_name(t)) + ".f32");
  const int64_t k = static_cast<int64_t>(wref.size());
  ASSERT_GE(k, 256);
  std::mt19937 rng(17 + static_cast<int>(t));
  std::vector<float> x(static_cast<size_t>(k));
  std::uniform_real_distribution<float> u(-3.f, 3.f);
  for (float& v : x) v = u(rng);
  for (int64_t j = 64; j < std::min<int64_t>(96, k); ++j) x[j] = 0.f;  // an all-zero activation block: d = 0
  x[5] = 0.f;
  gguf::visit_block(t, [&](auto blk) {
    using B = decltype(blk);
    double want = 0.0, mag = 0.0;
    float got = 0.f;
    for (int64_t i = 0; i < k / gguf::kItemElems; ++i) {
      const gguf_test::Q8Block xb = gguf_test::quantize_block(&x[i * gguf::kItemElems]);
      int32_t xq[8];
      std::memcpy(xq, xb.q, 32);
      gguf::WItem it;
      const int64_t sb = i / B::kItems;
      B::item(w.data() + sb * B::kBytes, static_cast<int>(i % B::kItems), it);
      got += gguf::item_dot<B>(it, xq, xb.d, xb.s);
      for (int e = 0; e < gguf::kItemElems; ++e) {
        const double p = static_cast<double>(wref[i * gguf::kItemElems + e]) * xb.d * xb.q[e];
        want += p;
        mag += std::fabs(p);
      }
    }
    EXPECT_NEAR(got, want, 1e-5 * mag + 1e-6) << dtype_name(t);
  });
}

INSTANTIATE_TEST_SUITE_P(AllTypes, GgufBlockDecodeGgufPy, ::testing::ValuesIn(gguf_test::block_types()),
                         [](const ::testing::TestParamInfo<DType>& i) { return std::string(dtype_name(i.param)); });
INSTANTIATE_TEST_SUITE_P(AllTypes, GgufBlockDecode, ::testing::ValuesIn(gguf_test::block_types()),
                         [](const ::testing::TestParamInfo<DType>& i) { return std::string(dtype_name(i.param)); });

// The portable twins of the device intrinsics the decoders use.
TEST(GgufBlockIntrinsics, HostTwinsBehaveAsDocumented) {
  EXPECT_EQ(gguf::dp4a(static_cast<int>(0x80FF0102u), static_cast<int>(0x7F020304u), 5),
            5 + 2 * 4 + 1 * 3 + (-1) * 2 + (-128) * 127);
  EXPECT_EQ(gguf::vsub4(0x00102030u, 0x20202020u), 0xE0F00010u);
  EXPECT_EQ(gguf::byte_perm(0x33221100u, 0x77665544u, 0x7520u), 0x77552200u);
  for (uint32_t h = 0; h < 16; ++h) {
    uint32_t want = 0;
    for (int j = 0; j < 4; ++j) want |= ((h >> j) & 1u) << (8 * j);
    EXPECT_EQ(gguf::spread4(h), want);
  }
  const int8_t levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  for (uint32_t idx : {0x0F080700u, 0x01020304u, 0x0E0D0C0Bu, 0x09060A05u}) {
    const uint32_t got = gguf::lut16(idx, gguf::kIq4T0, gguf::kIq4T1, gguf::kIq4T2, gguf::kIq4T3);
    for (int j = 0; j < 4; ++j)
      EXPECT_EQ(static_cast<int8_t>(got >> (8 * j)), levels[(idx >> (8 * j)) & 15]) << std::hex << idx << " byte " << j;
  }
  EXPECT_EQ(gguf::q8_workspace_bytes(3, 512), 3u * 16u * 40u);
}

}  // namespace
}  // namespace eli
