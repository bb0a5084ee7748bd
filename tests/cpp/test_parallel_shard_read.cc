// tests/cpp/test_parallel_shard_read.cc: a tensor-parallel rank reads only its slice of a stored
// tensor (LinearPart::row_begin / LinearSpec::col_begin): for every GGUF block type of
// quant_types.gguf and the float types, a row slice and a column slice (whole blocks) equal the same
// slice of the whole tensor converted to f32; a row slice in the wanted dtype stays a zero-copy view
// of the mapped file at the slice's first row; a column slice that cuts a block is refused with
// kUnsupported naming the block size.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "eli/error.h"
#include "runtime/model/gguf.h"
#include "runtime/model/linear_method.h"
#include "runtime/model/weight_reader.h"

namespace eli {
namespace {

struct Fixture {
  std::shared_ptr<WeightSource> src{GgufFile::open(std::string(ELI_TEST_DATA_DIR) + "/gguf/quant_types.gguf")};
  WeightReader reader{src, [](const std::string& n) { return n.size() > 7 ? n.substr(0, n.size() - 7) : n; }};
};

// The whole tensor in f32 (the reference a slice must match).
std::vector<float> whole(const TensorInfo& t) {
  std::vector<float> v(static_cast<size_t>(t.shape[0] * t.shape[1]));
  tensor_rows_to_f32(t, t.shape[1], 0, t.shape[0], v.data());
  return v;
}

// Loads rows [r0, r1) x cols [c0, c1) of `name` through load_linear in f32.
LinearWeight load_slice(const Fixture& f, const std::string& name, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const TensorInfo& t = *f.src->find(name);
  LinearSpec spec;
  spec.name = name;
  LinearPart p{name, r1 - r0, 0};
  p.row_begin = r0;
  p.stored_rows = t.shape[0];
  spec.parts = {p};
  spec.cols = c1 - c0;
  spec.col_begin = c0;
  spec.stored_cols = t.shape[1];
  LinearLoadContext ctx;
  ctx.compute_dtype = DType::kF32;
  return load_linear(spec, f.reader, ctx);
}

void expect_slice(const Fixture& f, const std::string& name, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  SCOPED_TRACE(name + " rows " + std::to_string(r0) + ".." + std::to_string(r1) + " cols " + std::to_string(c0) +
               ".." + std::to_string(c1));
  const TensorInfo& t = *f.src->find(name);
  const std::vector<float> ref = whole(t);
  const LinearWeight w = load_slice(f, name, r0, r1, c0, c1);
  ASSERT_EQ(w.rows, r1 - r0);
  ASSERT_EQ(w.cols, c1 - c0);
  // The native GGUF method keeps the slice's blocks as stored; the dequantizing one gives f32.
  std::vector<float> blocks_f32;
  const float* got = static_cast<const float*>(w.ptr());
  if (w.format == WeightFormat::kGgufBlocks) {
    ASSERT_EQ(w.dtype, t.dtype);
    TensorInfo b;
    b.name = name;
    b.dtype = w.dtype;
    b.shape = {w.rows, w.cols};
    b.data = static_cast<const uint8_t*>(w.ptr());
    b.nbytes = static_cast<uint64_t>(w.rows * (w.cols / dtype_info(w.dtype).block_elems) * dtype_info(w.dtype).block_bytes);
    blocks_f32.resize(static_cast<size_t>(w.rows * w.cols));
    tensor_rows_to_f32(b, w.cols, 0, w.rows, blocks_f32.data());
    got = blocks_f32.data();
  } else {
    ASSERT_EQ(w.dtype, DType::kF32);
  }
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int64_t c = 0; c < w.cols; ++c) {
      ASSERT_EQ(got[r * w.cols + c], ref[static_cast<size_t>((r0 + r) * t.shape[1] + c0 + c)]) << r << "," << c;
    }
  }
}

TEST(ParallelShardRead, BlockTypesShardByWholeBlocks) {
  Fixture f;
  for (const char* name : {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"}) {
    const TensorInfo& t = *f.src->find(name);
    const int64_t block = dtype_info(t.dtype).block_elems, cols = t.shape[1];
    expect_slice(f, name, 1, 3, 0, cols);                  // a row shard
    expect_slice(f, name, 0, 3, block, cols);              // a column shard of whole blocks
    expect_slice(f, name, 2, 3, 0, block);
    try {
      load_slice(f, name, 0, 3, block / 2, cols);
      ADD_FAILURE() << name << ": a column shard cutting a block was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUnsupported) << e.what();
      EXPECT_NE(std::string(e.what()).find("blocks of " + std::to_string(block)), std::string::npos) << e.what();
    }
  }
}

TEST(ParallelShardRead, FloatTypesShardAnywhereAndRowSlicesStayViews) {
  Fixture f;
  // Shapes (rows, cols): f32 (5, 7), f16 (6, 16), bf16 (4, 16).
  expect_slice(f, "f32", 2, 5, 0, 7);
  expect_slice(f, "f32", 0, 5, 1, 4);
  expect_slice(f, "f16", 3, 6, 2, 13);
  expect_slice(f, "bf16", 0, 4, 1, 3);
  const TensorInfo& t = *f.src->find("f32");
  ASSERT_EQ(t.shape, (std::vector<int64_t>{5, 7}));
  const LinearWeight w = load_slice(f, "f32", 2, 5, 0, 7);
  EXPECT_TRUE(w.file_view);
  EXPECT_EQ(w.ptr(), t.data + 2 * 7 * sizeof(float)) << "a row slice is a view at its first row";
}

}  // namespace
}  // namespace eli
